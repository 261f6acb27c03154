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
# The course's remedies when dev and test do not look like the training data.
MISMATCH_ADVICE = (
    "make the training data more like dev/test: error analysis of how they differ, "
    "collect or synthesize training examples like them"
)


@dataclass(frozen=True)
class Reading:
    """Avoidable bias = train error - Bayes error; variance = dev error - train error, or,
    with a train-dev set, train-dev error - train error, and then data mismatch = dev
    error - train-dev error (None without a train-dev set)."""

    verdict: str
    avoidable_bias: float
    variance: float
    data_mismatch: float | None = None
    mismatched: bool = False  # data mismatch above the threshold

    @property
    def advice(self) -> str:
        if not self.mismatched:
            return ADVICE[self.verdict]
        first = self.verdict.removesuffix("data mismatch").removesuffix(" and ")
        return f"{ADVICE[first]}; then {MISMATCH_ADVICE}" if first else MISMATCH_ADVICE


def bias_variance(
    train_error: float,
    dev_error: float,
    bayes_error: float = 0.0,
    threshold: float = 0.05,
    train_dev_error: float | None = None,
) -> Reading:
    """Call the model high bias, high variance, both, or fine, and say whether dev and
    test data mismatch the training data where a train-dev error is given: a gap counts as
    high when it exceeds `threshold` (errors are fractions: 0.05 is 5 points)."""
    bias = train_error - bayes_error
    held = dev_error if train_dev_error is None else train_dev_error
    variance = held - train_error
    mismatch = None if train_dev_error is None else dev_error - train_dev_error
    # A gap of exactly the threshold (0.13 - 0.08 = 0.05000000000000004 in floats) is not high.
    high_bias, high_variance, mismatched = (
        gap is not None and round(gap - threshold, 9) > 0 for gap in (bias, variance, mismatch)
    )
    if high_bias and high_variance:
        verdict = "high bias and high variance"
    elif high_bias:
        verdict = "high bias"
    elif high_variance:
        verdict = "high variance"
    else:
        verdict = "fine"
    if mismatched:
        verdict = "data mismatch" if verdict == "fine" else f"{verdict} and data mismatch"
    return Reading(verdict, bias, variance, mismatch, mismatched)
