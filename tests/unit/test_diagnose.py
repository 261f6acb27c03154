from __future__ import annotations

import pytest

from hyperlab.diagnose import bias_variance


@pytest.mark.parametrize(
    ("train", "dev", "verdict"),
    [
        # The course's cat classifier, with Bayes error ~0.
        (0.01, 0.11, "high variance"),
        (0.15, 0.16, "high bias"),
        (0.15, 0.30, "high bias and high variance"),
        (0.005, 0.01, "fine"),
    ],
)
def test_the_course_examples(train: float, dev: float, verdict: str) -> None:
    reading = bias_variance(train, dev, bayes_error=0.0, threshold=0.05)
    assert reading.verdict == verdict
    assert reading.avoidable_bias == pytest.approx(train)
    assert reading.variance == pytest.approx(dev - train)


def test_bayes_error_changes_the_reading() -> None:
    # 15% train error is no bias problem when the best possible error is 14% (blurry images).
    assert bias_variance(0.15, 0.16, bayes_error=0.14).verdict == "fine"


def test_advice_names_the_next_step() -> None:
    assert "bigger network" in bias_variance(0.2, 0.21).advice
    assert "regularization" in bias_variance(0.0, 0.2).advice


def test_a_gap_of_exactly_the_threshold_is_not_high() -> None:
    # 0.13 - 0.08 = 0.05000000000000004
    assert bias_variance(0.08, 0.13, bayes_error=0.05, threshold=0.05).verdict == "fine"
    assert bias_variance(0.08, 0.1301, 0.05, threshold=0.05).verdict == "high variance"


@pytest.mark.parametrize(
    ("train", "train_dev", "dev", "verdict"),
    [
        # The course's examples with a train-dev set, Bayes error ~0.
        (0.01, 0.09, 0.10, "high variance"),
        (0.01, 0.015, 0.10, "data mismatch"),
        (0.10, 0.11, 0.12, "high bias"),
        (0.10, 0.11, 0.20, "high bias and data mismatch"),
    ],
)
def test_a_train_dev_set_tells_variance_from_data_mismatch(
    train: float, train_dev: float, dev: float, verdict: str
) -> None:
    reading = bias_variance(train, dev, 0.0, 0.05, train_dev_error=train_dev)
    assert reading.verdict == verdict
    assert reading.avoidable_bias == pytest.approx(train)
    assert reading.variance == pytest.approx(train_dev - train)
    assert reading.data_mismatch == pytest.approx(dev - train_dev)


def test_data_mismatch_advice_follows_the_bias_and_variance_advice() -> None:
    mismatch = bias_variance(0.01, 0.10, train_dev_error=0.015)
    assert mismatch.advice.startswith("make the training data more like dev/test")
    both = bias_variance(0.10, 0.20, train_dev_error=0.11)
    assert (
        both.advice.startswith("bigger network") and "; then make the training data" in both.advice
    )
    assert bias_variance(0.01, 0.10).data_mismatch is None  # no train-dev set: not measured
