"""User text is printed as written: rich reads `[...]` as markup, so a path, a study name or
a categorical value holding brackets lost them (`[final]`), crashed the command with a
MarkupError (`[/red]`, `x[/bold]y`), or printed as nothing (a region `[rmsprop]`).

Here: through the `hyperlab` command; unit/test_markup.py holds the rest."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import hyperlab

TINY = ["epochs=1", "dataset=moons", "dataset.n_samples=200"]


optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_data_path_with_brackets_is_named_whole_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "x[final]" / "a[/red].csv"
    r = hyperlab(
        tmp_path, "dataset=csv", f"dataset.path='{path}'", "tracking.enabled=false", columns=250
    )
    assert r.returncode == 2, r.stderr
    assert str(path) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "MarkupError" not in r.stderr


@pytest.mark.slow
def test_a_study_named_with_markup_runs(tmp_path: Path) -> None:
    """It crashed after creating the study, leaving an empty study behind."""
    args = ["search=lr", "sweep.study='x[/bold]y'", "sweep.n_trials=1", *TINY]
    r = hyperlab(tmp_path, *args, "tracking.enabled=false", columns=250)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "study x[/bold]y in" in r.stdout and "study x[/bold]y (maximize)" in r.stdout
    storage = st.storage(str(tmp_path / DEFAULT_JOURNAL))
    s = optuna.load_study(study_name="x[/bold]y", storage=storage)
    assert [t.state.name for t in s.trials] == ["COMPLETE"]


@pytest.mark.slow
def test_a_coarse_to_fine_region_of_one_choice_is_printed(tmp_path: Path) -> None:
    """Stage 1 keeps the best quarter of stage 0's two trials: one optimizer, shown in
    brackets (`[adam]`), which rich read as a style and printed as nothing."""
    args = ["search=optimizers", "sampler=coarse_to_fine", "sweep.n_trials=4", *TINY]
    r = hyperlab(tmp_path, *args, columns=250)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"coarse to fine region\.1\.optimizer: \[(momentum|rmsprop|adam)\]", r.stdout)
