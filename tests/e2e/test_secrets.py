"""Passwords never leave the config: a database URL's password (sweep.storage, tracking.uri)
is masked in MLflow params, tags, artifacts, run names, error messages and printed output;
`${oc.env:...}` keeps it out of the config and the command line altogether.

Here: through the `hyperlab` command; integration/test_secrets.py holds the rest."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from hyperlab.search import study
from support.command import hyperlab
from support.secrets import SECRET, STORAGE
from support.servers import Postgres


def test_cfg_job_prints_the_reference_not_the_password(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "--cfg",
        "job",
        "sweep.storage=${oc.env:HYPERLAB_STORAGE}",
        env={"HYPERLAB_STORAGE": STORAGE},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "${oc.env:HYPERLAB_STORAGE}" in r.stdout
    assert SECRET not in r.stdout + r.stderr


@pytest.mark.slow
def test_a_study_opens_its_storage_from_the_environment(tmp_path: Path) -> None:
    """End to end: a study whose storage comes from ${oc.env:...} is created in that file,
    and the run directories Hydra writes hold the reference, not the value."""
    journal = tmp_path / "elsewhere" / "journal.log"
    args = ["search=lr", "sweep.n_trials=1", "epochs=1", "dataset=moons", "progress=false"]
    r = hyperlab(
        tmp_path,
        *args,
        "sweep.storage=${oc.env:HYPERLAB_STORAGE}",
        env={"HYPERLAB_STORAGE": str(journal)},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert journal.is_file() and not (tmp_path / "outputs" / "optuna" / "journal.log").exists()
    (name,) = optuna.get_all_study_names(study.storage(str(journal)))
    s = optuna.load_study(study_name=name, storage=study.storage(str(journal)))
    assert [t.state.name for t in s.trials] == ["COMPLETE"]
    saved: list[Any] = [
        yaml.safe_load(f.read_text()) for f in (tmp_path / "outputs").rglob(".hydra/overrides.yaml")
    ]
    assert saved and all("sweep.storage=${oc.env:HYPERLAB_STORAGE}" in o for o in saved)


def assert_nowhere(secret: str, cwd: Path, r: subprocess.CompletedProcess[str]) -> list[Path]:
    """The password is in no file under `cwd` (outputs/: runs, multiruns, studies) and not
    in the terminal's output; returns the files looked at."""
    assert secret not in r.stdout + r.stderr, r.stdout + r.stderr
    files = [f for f in cwd.rglob("*") if f.is_file()]
    assert [f for f in files if secret.encode() in f.read_bytes()] == []
    return files


def test_a_run_refused_at_its_tracking_check_leaves_no_password(tmp_path: Path) -> None:
    """Hydra saved .hydra/{config,hydra,overrides}.yaml, masked, before the run was
    refused; the refused run's dir, which holds nothing else, is then removed."""
    uri = f"tracking.uri=mysql://bob:{SECRET}@127.0.0.1/mlflow"  # MySQLdb is not installed
    r = hyperlab(tmp_path, "epochs=1", "dataset=moons", uri)
    assert r.returncode == 2 and "MySQLdb" in r.stderr, r.stderr
    assert_nowhere(SECRET, tmp_path, r)
    assert not any((tmp_path / "outputs" / "runs").iterdir())


def test_a_multirun_refused_at_its_tracking_check_leaves_no_password(tmp_path: Path) -> None:
    uri = f"tracking.uri=mysql://bob:{SECRET}@127.0.0.1/mlflow"
    r = hyperlab(tmp_path, "-m", "epochs=1,2", "dataset=moons", uri)
    assert r.returncode == 2 and "MySQLdb" in r.stderr, r.stderr
    assert_nowhere(SECRET, tmp_path, r)


@pytest.mark.slow
def test_a_multirun_leaves_no_password_in_its_jobs_or_its_job_lines(tmp_path: Path) -> None:
    storage = f"sweep.storage=postgresql+psycopg://u:{SECRET}@127.0.0.1:9/db"
    r = hyperlab(tmp_path, "-m", "epochs=1,2", "dataset=moons", "tracking.enabled=false", storage)
    assert r.returncode == 0, r.stderr
    assert "#1 : epochs=2" in r.stdout and "u\\:***@127.0.0.1" in r.stdout, r.stdout
    files = assert_nowhere(SECRET, tmp_path, r)
    names = [f.relative_to(tmp_path / "outputs").as_posix() for f in files]
    assert sum(n.endswith(".hydra/hydra.yaml") for n in names) == 2
    assert any(n.endswith("multirun.yaml") for n in names)


@pytest.mark.slow
def test_a_study_leaves_no_password_in_its_workers_or_its_report(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Two workers (the joblib launcher) on a PostgreSQL storage whose URL holds a password
    (trust authentication ignores it)."""
    url = postgres.create_database("secrets").replace("postgres@", f"postgres:{SECRET}@")
    args = ["search=lr", "sweep.n_trials=2", "sweep.workers=2", "epochs=1", "dataset=moons"]
    r = hyperlab(tmp_path, *args, "tracking.enabled=false", f"sweep.storage={url}")
    assert r.returncode == 0, r.stderr
    assert "best: trial" in r.stdout
    files = assert_nowhere(SECRET, tmp_path, r)
    names = [f.relative_to(tmp_path / "outputs").as_posix() for f in files]
    assert sum(n.endswith(".hydra/overrides.yaml") for n in names) == 2  # one per worker
    assert any(n.endswith("summary.md") for n in names)
