"""Every replay line a study records runs as printed, and trains the trial's model again.

A line is `hyperlab ...` as a shell reads it: study settings (search, sampler, pruner,
sweep, hydra) are left out, every model setting kept, and values a shell would mangle are
quoted. Each shipped search space and each shipped sampler runs a tiny real study; its best
trial's line runs through bash in a fresh directory, exits 0 and scores what the trial did.
`task=retest` reads the same lines, so it works on those studies too.

Here: through the `hyperlab` command; unit/test_replay.py holds the rest."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from hyperlab.overrides import is_study_setting
from hyperlab.search.report import REPLAY_ATTR
from support.command import PBT_TINY, hyperlab
from support.paths import group_options
from support.records import study_in
from support.servers import BIN

TINY = ["epochs=1", "dataset=moons", "dataset.n_samples=200"]


UNTRACKED = [*TINY, "tracking.enabled=false"]


def run_study(cwd: Path, *args: str) -> optuna.Study:
    cwd.mkdir(exist_ok=True)
    r = hyperlab(cwd, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return study_in(cwd)


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The line as a user pastes it into a shell, with this venv's bin on PATH."""
    cwd.mkdir()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "COLUMNS": "200"}
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, capture_output=True, text=True, env=env, timeout=900
    )


def check_best_replays(s: optuna.Study, tmp_path: Path) -> str:
    """Run the best trial's line in a fresh directory: exit 0, the trial's value again. A
    multi-objective study's line is a front trial's; the single run it replays reports the
    first objective (the line, like every replay line, leaves the study's settings out)."""
    best = s.best_trials[0] if len(s.directions) > 1 else s.best_trial
    line = str(best.user_attrs[REPLAY_ATTR])
    assert line.startswith("hyperlab ")
    assert not [a for a in shlex.split(line)[1:] if is_study_setting(a) and a != "~search"]
    r = run_line(line, tmp_path / "replay")
    assert r.returncode == 0, f"{line}\n{r.stdout}{r.stderr}"
    found = re.search(r"objective: \w+ = ([-\d.]+)", r.stdout)
    assert found, r.stdout
    assert float(found.group(1)) == pytest.approx(best.values[0], abs=6e-5), line
    return line


# Each space with the default sampler, and each sampler on the one-parameter space.
CASES = [(space, "tpe") for space in group_options("search")] + [
    ("lr", sampler) for sampler in group_options("sampler") if sampler != "tpe"
]


@pytest.mark.slow
@pytest.mark.parametrize(("space", "sampler"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_every_space_and_sampler_records_a_line_that_replays(
    space: str, sampler: str, tmp_path: Path
) -> None:
    trials = 3 if sampler == "coarse_to_fine" else 1  # one trial a stage
    args = [f"search={space}", f"sampler={sampler}", f"sweep.n_trials={trials}", *UNTRACKED]
    s = run_study(tmp_path / "study", *args)
    check_best_replays(s, tmp_path)


@pytest.mark.slow
def test_a_grid_study_with_its_own_grid_replays_and_retests(tmp_path: Path) -> None:
    """`+search.params.lr.grid=2` once recorded a line that failed on search.name=None."""
    cwd = tmp_path / "study"
    args = ["search=lr", "sampler=grid", "+search.params.lr.grid=2", *UNTRACKED]
    s = run_study(cwd, *args)
    assert len(s.trials) == 2
    check_best_replays(s, tmp_path)
    r = hyperlab(cwd, "task=retest", f"study={s.study_name}", "top_k=2", "seeds=1", *UNTRACKED)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rank now" in r.stdout


@pytest.mark.slow
def test_a_coarse_to_fine_study_replays_and_retests(tmp_path: Path) -> None:
    """`sampler.budgets=[...]` once went into the line: a replay failed on `budgets` not
    in struct, unquoted brackets for the shell, and a FAILED retest run."""
    cwd = tmp_path / "study"
    budgets = "sampler.budgets=[0.4,0.3,0.3]"
    args = ["search=lr", "sampler=coarse_to_fine", budgets, "sweep.n_trials=3", *UNTRACKED]
    s = run_study(cwd, *args)
    assert len(s.trials) == 3
    line = check_best_replays(s, tmp_path)
    assert "budgets" not in line
    # The retest is tracked (its trials' runs are not: their lines say tracking.enabled=false)
    r = hyperlab(cwd, "task=retest", f"study={s.study_name}", "top_k=2", "seeds=1", *TINY)
    assert r.returncode == 0, r.stdout + r.stderr
    c = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
    (run,) = c.search_runs([e.experiment_id for e in c.search_experiments()])
    assert run.info.status == "FINISHED" and run.data.tags["hyperlab.retest_of_study"]


@pytest.mark.slow
def test_a_pbt_study_s_lines_replay_their_schedules_and_retest(tmp_path: Path) -> None:
    """A PBT trial's line sets its stages (the values that trained its weights): run in a
    shell, each trial's line scores the trial's value again; task=retest reads them too."""
    cwd = tmp_path / "study"
    s = run_study(cwd, *PBT_TINY, "tracking.enabled=false")
    staged = 0
    for t in s.trials:
        line = str(t.user_attrs[REPLAY_ATTR])
        staged += "'stages=[{epoch:" in line
        r = run_line(line, tmp_path / f"replay{t.number}")
        assert r.returncode == 0, f"{line}\n{r.stdout}{r.stderr}"
        found = re.search(r"objective: \w+ = ([-\d.]+)", r.stdout)
        assert found and float(found.group(1)) == pytest.approx(t.value, abs=6e-5), line
    copied = [len(t.user_attrs["pbt_schedule"]["stages"]) > 1 for t in s.trials]
    assert staged == sum(copied) >= 1  # a copy after epochs 2, 4 and 6
    r = hyperlab(cwd, "task=retest", f"study={s.study_name}", "top_k=2", "seeds=1", *UNTRACKED)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rank now" in r.stdout
