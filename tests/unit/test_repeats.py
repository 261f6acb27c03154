"""Seed repeats: a configuration judged by its mean (or a pessimistic bound) over seeds.

Here: the pieces on their own;
integration/test_repeats.py and e2e/test_repeats.py hold the rest."""

from __future__ import annotations

import math
import statistics

import pytest

from hyperlab.repeats import spread


def test_spread_mean_std_and_the_pessimistic_bound() -> None:
    values = [0.90, 0.80, 0.85]
    mean, std = statistics.fmean(values), statistics.stdev(values)
    up = spread([0, 1, 2], values, direction="maximize", over_seeds="bound", z=2.0)
    assert (up.mean, up.std) == (pytest.approx(mean), pytest.approx(std))
    assert up.objective == pytest.approx(mean - 2.0 * std / math.sqrt(3))
    down = spread([0, 1, 2], values, direction="minimize", over_seeds="bound", z=2.0)
    assert down.objective == pytest.approx(mean + 2.0 * std / math.sqrt(3))
    assert spread([0, 1, 2], values).objective == pytest.approx(mean)
    assert spread([0], [0.7]).std == 0.0


def test_a_diverged_seed_makes_the_configuration_nan() -> None:
    assert math.isnan(spread([0, 1], [0.9, math.nan]).objective)


def test_a_steady_configuration_beats_a_lucky_one_on_the_bound() -> None:
    lucky = spread([0, 1, 2], [0.99, 0.70, 0.75], over_seeds="bound")
    steady = spread([0, 1, 2], [0.82, 0.81, 0.83], over_seeds="bound")
    assert max(lucky.values) > max(steady.values) and steady.objective > lucky.objective
