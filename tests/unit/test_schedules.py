from __future__ import annotations

import math

import pytest

from hyperlab.schedules import Constant, Cosine, Exponential, InverseTime, Staircase


def test_inverse_time_matches_the_course_table() -> None:
    # The course: alpha0 = 0.2, decay_rate = 1 -> 0.1, 0.067, 0.05, 0.04 for epochs 1..4.
    s = InverseTime(decay_rate=1.0)
    assert [0.2 * s(e) for e in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2 / 3, 0.05, 0.04])


def test_exponential_is_the_course_form() -> None:
    # alpha = 0.95^epoch_num * alpha0
    s = Exponential(rate=0.95)
    assert [s(e) for e in (1, 2, 10)] == pytest.approx([0.95, 0.9025, 0.95**10])


def test_staircase_holds_interval_epochs_then_drops() -> None:
    s = Staircase(decay_rate=1.0, interval=5)
    got = [s(e) for e in (1, 5, 6, 10, 11, 16)]
    assert got == pytest.approx([1.0, 1.0, 0.5, 0.5, 1 / 3, 0.25])


def test_cosine_runs_from_one_at_the_first_epoch_to_min_factor() -> None:
    s = Cosine(epochs=10, min_factor=0.1)
    assert s(1) == pytest.approx(1.0)
    assert s(6) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(11) == pytest.approx(0.1)
    assert s(21) == pytest.approx(0.1)
    assert s(4) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 0.3)) / 2)


def test_constant() -> None:
    assert {Constant()(e) for e in range(1, 50)} == {1.0}
