"""The bias/variance reading of a trained model, as the course teaches it."""

from __future__ import annotations

from dataclasses import dataclass

ADVICE = {
    "high bias": "bigger network (more hidden units or layers), train longer, "
    "or try another architecture",
    "high variance": "more data, regularization (L2, dropout), or another architecture",
    "high bias and high variance": "fix the bias first (bigger network, train longer), "
    "then the variance (more data, regularization)",
    "fine": "low bias and low variance: done (check the test error)",
}


@dataclass(frozen=True)
class Reading:
    """Avoidable bias = train error - Bayes error; variance = dev error - train error."""

    verdict: str
    avoidable_bias: float
    variance: float

    @property
    def advice(self) -> str:
        return ADVICE[self.verdict]


def bias_variance(
    train_error: float, dev_error: float, bayes_error: float = 0.0, threshold: float = 0.05
) -> Reading:
    """Call the model high bias, high variance, both, or fine: a gap counts as high when it
    exceeds `threshold` (errors are fractions: 0.05 is 5 points)."""
    bias = train_error - bayes_error
    variance = dev_error - train_error
    # A gap of exactly the threshold (0.13 - 0.08 = 0.05000000000000004 in floats) is not high.
    high_bias, high_variance = (round(gap - threshold, 9) > 0 for gap in (bias, variance))
    if high_bias and high_variance:
        verdict = "high bias and high variance"
    elif high_bias:
        verdict = "high bias"
    elif high_variance:
        verdict = "high variance"
    else:
        verdict = "fine"
    return Reading(verdict, bias, variance)
