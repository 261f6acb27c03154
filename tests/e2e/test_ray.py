"""A study whose workers Hydra's Ray launcher starts, on a local Ray instance.

The sweeper hands the configured launcher its worker jobs; with `hydra/launcher=ray` on the
command line (which replaces the joblib launcher the search space selects), Ray runs the
two workers as tasks, and they share one study in PostgreSQL and one MLflow parent run.

Needs the `ray` extra (hydra-ray-launcher and ray); without it the test is skipped, except
under CI (CI=true), where it fails: .ci/run installs it, so a skip there would hide a
broken setup.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from support.command import finish, start_hyperlab

if TYPE_CHECKING:
    from support.servers import Postgres

pytestmark = pytest.mark.slow

N_TRIALS = 6
# A fresh local instance (not one `ray start` left running), sized for this study, with no
# dashboard: it would start a web server and agents that the test does not need.
RAY_LOCAL = [
    "++hydra.launcher.ray.init.address=local",
    "++hydra.launcher.ray.init.num_cpus=2",
    "++hydra.launcher.ray.init.include_dashboard=false",
]


@pytest.fixture
def ray_launcher() -> None:
    """Skips (or under CI fails) the test before any server starts when Ray is missing."""
    missing = [
        m
        for m in ("ray", "hydra_plugins.hydra_ray_launcher")
        if importlib.util.find_spec(m) is None
    ]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not importable (pip install -e '.[ray]')"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"under CI the Ray launcher must be installed: {reason}")
    pytest.skip(reason)


def test_a_study_whose_workers_ray_starts(
    ray_launcher: None, postgres: Postgres, tmp_path: Path
) -> None:
    storage = postgres.create_database("ray_study")
    args = [
        "search=lr",  # selects the joblib launcher: the command line must win
        "hydra/launcher=ray",
        *RAY_LOCAL,
        "sweep.workers=2",
        f"sweep.n_trials={N_TRIALS}",
        f"sweep.storage='{storage}'",
        "epochs=2",
        "dataset=moons",
        "dataset.n_samples=300",
    ]
    start = time.monotonic()
    code, out, err = finish(start_hyperlab(tmp_path, *args))
    seconds = time.monotonic() - start
    print(f"\nthe Ray study took {seconds:.1f} s")
    assert code == 0, out[-3000:] + err[-5000:]
    log = out + err
    assert "Ray Launcher is launching 2 jobs" in log, log[-3000:]
    assert "Joblib.Parallel" not in log

    # The study: exactly n_trials trials, all complete, each a different point.
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert [t.number for t in trials] == list(range(N_TRIALS))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({t.params["lr"] for t in trials}) == N_TRIALS  # workers sample apart

    # MLflow: one parent run (the study) with one child run per trial, none twice.
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert parent.info.run_name == f"study {summary.study_name}"
    assert parent.info.status == "FINISHED"
    assert parent.data.params["workers"] == "2"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(int(c.data.tags["hyperlab.trial"]) for c in children) == list(range(N_TRIALS))
    assert {c.info.status for c in children} == {"FINISHED"}

    # Both worker jobs ran (Hydra wrote each one's job directory).
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").iterdir()
    assert (sweep_dir / "0" / ".hydra").is_dir() and (sweep_dir / "1" / ".hydra").is_dir()
