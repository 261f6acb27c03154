"""Seed repeats: a configuration judged by its mean (or a pessimistic bound) over seeds.

Here: through the `hyperlab` command;
unit/test_repeats.py and integration/test_repeats.py hold the rest."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from support.command import QUICK, hyperlab
from support.records import study_in


@pytest.mark.slow
def test_in_a_study_the_objective_is_the_bound_over_seeds(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "search=lr",
        "sampler=log_uniform",
        *QUICK,
        "sweep.n_trials=2",
        "repeats=2",
        "objective.over_seeds=bound",
        "objective.z=1.5",
    )
    assert r.returncode == 0, r.stderr
    for t in study_in(tmp_path).trials:
        values = list(t.user_attrs["per_seed"].values())
        assert len(values) == 2
        bound = statistics.fmean(values) - 1.5 * statistics.stdev(values) / math.sqrt(2)
        assert t.value == pytest.approx(bound)
