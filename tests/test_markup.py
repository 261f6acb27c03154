"""User text is printed as written: rich reads `[...]` as markup, so a path, a study name or
a categorical value holding brackets lost them (`[final]`), crashed the command with a
MarkupError (`[/red]`, `x[/bold]y`), or printed as nothing (a region `[rmsprop]`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from hyperlab import display
from hyperlab.display import exit_with
from hyperlab.errors import DataError
from hyperlab.search import report
from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL

HYPERLAB = str(Path(sys.executable).parent / "hyperlab")
TINY = ["epochs=1", "dataset=moons", "dataset.n_samples=200"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def hyperlab(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [HYPERLAB, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=900
    )


def recorder() -> Console:
    return Console(record=True, width=250, highlight=False)


def test_plain_keeps_brackets() -> None:
    c = recorder()
    for text in ("x[final]", "a[/red].csv", "x[/bold]y", "[rmsprop]", "[bold]x[/]", "\\[a]"):
        c.print(f"[bold]shown:[/] {display.plain(text)}")
        assert c.export_text().strip() == f"shown: {text}"


def test_an_error_shows_its_problem_and_fix_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    c = recorder()
    monkeypatch.setattr(display, "error_console", c)
    with pytest.raises(SystemExit) as e:
        exit_with(DataError("no file /d/x[final]/a[/red].csv", "write [bold] or x[/bold]y"))
    assert e.value.code == 2
    assert c.export_text().splitlines() == [
        "error: no file /d/x[final]/a[/red].csv",
        "  fix: write [bold] or x[/bold]y",
    ]


def test_a_report_shows_names_and_values_as_written() -> None:
    s = optuna.create_study(study_name="x[/bold]y", direction="maximize")
    dist = optuna.distributions.CategoricalDistribution(["[rmsprop]", "[/red]"])
    for value, choice in ((0.5, "[rmsprop]"), (0.7, "[/red]")):
        s.add_trial(
            optuna.trial.create_trial(
                params={"optimizer": choice},
                distributions={"optimizer": dist},
                value=value,
                user_attrs={report.REPLAY_ATTR: f"hyperlab optimizer={choice}"},
            )
        )
    c = recorder()
    report.show(report.build(s, None), c)
    out = c.export_text()
    assert "study x[/bold]y (maximize)" in out
    assert "replay: hyperlab optimizer=[/red]" in out
    assert re.search(r"1 .*0\.7000 .*\[/red\]", out) and re.search(
        r"0 .*0\.5000 .*\[rmsprop\]", out
    )


def test_a_data_path_with_brackets_is_named_whole_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "x[final]" / "a[/red].csv"
    r = hyperlab(tmp_path, "dataset=csv", f"dataset.path='{path}'", "tracking.enabled=false")
    assert r.returncode == 2, r.stderr
    assert str(path) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "MarkupError" not in r.stderr


@pytest.mark.slow
def test_a_study_named_with_markup_runs(tmp_path: Path) -> None:
    """It crashed after creating the study, leaving an empty study behind."""
    args = ["search=lr", "sweep.study='x[/bold]y'", "sweep.n_trials=1", *TINY]
    r = hyperlab(tmp_path, *args, "tracking.enabled=false")
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
    r = hyperlab(tmp_path, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"coarse to fine region\.1\.optimizer: \[(momentum|rmsprop|adam)\]", r.stdout)
