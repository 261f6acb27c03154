"""Lesson presets (conf/experiment/): each composes to its lesson, every job it launches
builds, and a shortened version runs through the `hyperlab` command.

Here: the pieces on their own;
integration/test_presets.py and e2e/test_presets.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console

from hyperlab.search import report
from hyperlab.search.samplers import GridSampler
from support.paths import CONF
from support.presets import PRESETS


def test_every_preset_is_a_global_config() -> None:
    files = sorted((CONF / "experiment").glob("*.yaml"))
    assert set(PRESETS) <= {f.stem for f in files}
    for f in files:
        assert f.read_text().startswith("# @package _global_\n"), f.name
    for name in PRESETS:
        assert "# Lesson: " in (CONF / "experiment" / f"{name}.yaml").read_text(), name


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(25):
        t = s.ask()
        lr = t.suggest_float("lr", 1e-4, 1e-1, log=True)
        t.suggest_float("1-optimizer.beta", 1e-3, 1e-1, log=True)
        if i == 3:  # a failed trial tried its values too
            s.tell(t, state=TrialState.FAIL)
        else:
            s.tell(t, -abs(lr - 1e-2))
    return s


def test_report_counts_the_distinct_values_each_parameter_tried(tmp_path: Path) -> None:
    grid = {"lr": [1e-4, 1e-3, 1e-2, 3e-2, 1e-1], "1-optimizer.beta": [1e-3, 3e-3, 1e-2, 3e-2, 0.1]}
    gridded = report.build(_study(GridSampler(grid, seed=0)), None)
    assert gridded.distinct == {"lr": 5, "optimizer.beta": 5}  # the key a user overrides
    assert gridded.sampled == 25
    randomly = report.build(_study(optuna.samplers.RandomSampler(seed=0)), None)
    assert randomly.distinct == {"lr": 25, "optimizer.beta": 25}

    md = report.markdown(gridded)
    assert "| parameter | distinct values tried (in 25 trials) |" in md
    assert "| lr | 5 |" in md and "| optimizer.beta | 5 |" in md
    console = Console(record=True, width=200)
    report.show(randomly, console)
    assert "distinct values tried: lr 25, optimizer.beta 25 (in 25 trials)" in console.export_text()


def test_report_of_an_empty_study_has_no_distinct_values() -> None:
    rep = report.build(optuna.create_study(), None)
    assert rep.distinct == {} and rep.sampled == 0
    assert "distinct" not in report.markdown(rep)
