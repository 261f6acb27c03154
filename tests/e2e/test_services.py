"""hyperlab against real servers, as a team runs it: one PostgreSQL study shared by
several `hyperlab` processes, an MLflow tracking server, optuna-dashboard."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import run_all
from support.records import check_runs_match_trials, only_study, read_study, runs_of
from support.servers import MlflowServer, Postgres, dashboard, http_json

pytestmark = pytest.mark.slow

N_TRIALS = 12
WORKERS = 4
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class SharedStudy:
    url: str
    name: str
    results: list[tuple[int, str, str]]
    seconds: float


def check_exactly_n(s: Any, n: int) -> None:
    """n finished trials, numbered 0.. without a gap or a duplicate, none left running."""
    trials = s.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))), numbers
    assert len([t for t in trials if t.state in FINISHED]) == n
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.fixture(scope="module")
def pg_study(
    postgres: Postgres, tracking_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> SharedStudy:
    """Four `hyperlab` processes started at once on one PostgreSQL study (as on four
    machines: each in its own directory), tracked on the MLflow server. Plain gradient
    descent at rates up to 1e3 diverges now and then, and the median pruner stops the weak
    trials: every outcome occurs."""
    url = postgres.create_database("four_workers")
    args = [
        "search=lr",
        "search.params.lr.high=1e3",
        "optimizer=gd",
        "sampler=log_uniform",
        "pruner=median",
        "pruner.n_startup_trials=2",
        "pruner.n_warmup_steps=1",
        "sweep.max_failure_rate=1",
        f"sweep.n_trials={N_TRIALS}",
        # As the README advises: the URL (a password in real life) from the environment.
        "sweep.storage=${oc.env:HYPERLAB_STORAGE}",
        "sweep.study=four",
        f"tracking.uri={tracking_server.uri}",
        "tracking.experiment=four-workers",
        "epochs=4",
        "dataset=moons",
        "dataset.n_samples=300",
    ]
    root = tmp_path_factory.mktemp("four")
    start = time.monotonic()
    machines = [root / f"machine{i}" for i in range(WORKERS)]
    results = run_all(machines, *args, HYPERLAB_STORAGE=url)
    seconds = time.monotonic() - start
    for code, _, err in results:
        assert code == 0, err[-3000:]
    return SharedStudy(url, "four", results, seconds)


def test_four_processes_finish_exactly_n_trials_on_postgresql(pg_study: SharedStudy) -> None:
    s = read_study(pg_study.url, pg_study.name)
    check_exactly_n(s, N_TRIALS)
    trials = s.get_trials(deepcopy=False)
    pids = Counter(t.user_attrs[st.PID_ATTR] for t in trials)
    states = Counter(t.state.name for t in trials)
    print(f"\n{WORKERS} processes, {len(trials)} trials {dict(states)} in {pg_study.seconds:.0f} s")
    print(f"trials per process: {sorted(pids.values())}")
    assert len(pids) >= 2, "the processes did not share the study"
    assert TrialState.COMPLETE.name in states
    # Each process seeded its sampler differently (a worker id from the study): no two
    # trials sampled the same rate.
    rates = [t.params["lr"] for t in trials]
    assert len(set(rates)) == len(rates)


def test_the_tracking_server_holds_one_run_per_trial_under_one_parent(
    pg_study: SharedStudy, tracking_server: MlflowServer
) -> None:
    trials = read_study(pg_study.url, pg_study.name).get_trials(deepcopy=False)
    runs = runs_of(tracking_server.uri, "four-workers")
    check_runs_match_trials(runs, trials)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["storage"] == pg_study.url  # resolved (no password to mask)
    assert "${oc.env:HYPERLAB_STORAGE}" in parent.data.tags["hyperlab.command"]
    assert "best_value" in parent.data.metrics
    pruned = [r for r in runs if r.info.status == "KILLED"]
    assert all(r.data.tags["hyperlab.outcome"] == "pruned" for r in pruned)


def test_optuna_dashboard_serves_the_postgresql_study(pg_study: SharedStudy) -> None:
    s = read_study(pg_study.url, pg_study.name)
    with dashboard(pg_study.url) as base:
        summaries = http_json(f"{base}/api/studies")["study_summaries"]
        (summary,) = [x for x in summaries if x["study_name"] == pg_study.name]
        detail = http_json(f"{base}/api/studies/{summary['study_id']}")
    served = {t["number"]: t["state"].upper() for t in detail["trials"]}
    assert served == {t.number: t.state.name for t in s.get_trials(deepcopy=False)}
    assert detail["best_trials"][0]["number"] == s.best_trial.number


def test_two_processes_train_populations_on_postgresql_recorded_in_postgresql(
    postgres: Postgres, tmp_path: Path
) -> None:
    """sweep.population on a PostgreSQL study, tracked in an MLflow store on PostgreSQL:
    each stack's runs are created and ended in one transaction (tracking.rows), with the
    params, tags and config artifacts of a trial trained alone."""
    study_url = postgres.create_database("population_study")
    mlflow_url = postgres.create_database("population_mlflow")
    args = [
        "search=lr_beta",
        "sampler=random",
        "pruner=none",
        "dataset=moons",
        "dataset.n_samples=300",
        "epochs=3",
        "sweep.n_trials=16",
        "sweep.population=4",
        f"sweep.storage={study_url}",
        "sweep.study=population",
        f"tracking.uri={mlflow_url}",
        "tracking.experiment=population",
        f"tracking.artifacts={tmp_path / 'artifacts'}",
    ]
    results = run_all([tmp_path / "a", tmp_path / "b"], *args)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    s = read_study(study_url, "population")
    check_exactly_n(s, 16)
    trials = s.get_trials(deepcopy=False)
    assert len({t.user_attrs[st.PID_ATTR] for t in trials}) == 2, "one process took them all"
    runs = runs_of(mlflow_url, "population")
    check_runs_match_trials(runs, trials)
    client = MlflowClient(mlflow_url)
    by_trial = {
        int(r.data.tags["hyperlab.trial"]): r for r in runs if "hyperlab.trial" in r.data.tags
    }
    for t in trials:
        run = by_trial[t.number]
        assert "members)" in run.data.tags["hyperlab.population"]
        assert float(run.data.params["lr"]) == pytest.approx(t.params["lr"])
        assert run.data.metrics["dev_acc"] == pytest.approx(t.value)
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
            "config.yaml",
            "overrides.yaml",
        }


def test_four_processes_share_the_default_journal(tmp_path: Path) -> None:
    """The same command four times at once in one directory: one journal file, one study,
    one MLflow SQLite store written by four writer processes."""
    args = ["search=lr", "sampler=log_uniform", f"sweep.n_trials={N_TRIALS}"]
    args += ["epochs=2", "dataset=moons", "dataset.n_samples=300"]
    start = time.monotonic()
    results = run_all([tmp_path] * WORKERS, *args)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    s = only_study(str(tmp_path / DEFAULT_JOURNAL))
    check_exactly_n(s, N_TRIALS)
    trials = s.get_trials(deepcopy=False)
    print(
        f"\n{WORKERS} processes on the journal: {len(trials)} trials in "
        f"{time.monotonic() - start:.0f} s"
    )
    runs = runs_of(f"sqlite:///{tmp_path}/outputs/mlflow.db", "hyperlab")
    check_runs_match_trials(runs, trials)


def test_the_advisory_lock_excludes_others_and_outlives_a_server_restart(
    postgres: Postgres,
) -> None:
    """The budget lock of a PostgreSQL storage: another session cannot take it while a
    worker holds it; a worker that dies (its session closes) releases it; and a worker's
    pooled lock connection, dead after the server restarted, is replaced, not an error."""
    import psycopg

    from hyperlab.search.rdb_lock import KEY, advisory_lock

    url = postgres.create_database("lock")
    plain = url.replace("postgresql+psycopg://", "postgresql://")

    def free() -> bool:  # another session takes the lock at once, and gives it back
        with psycopg.connect(plain, autocommit=True) as other:
            taken = other.execute("SELECT pg_try_advisory_lock(%s)", (KEY,)).fetchone()
            if taken and taken[0]:
                other.execute("SELECT pg_advisory_unlock(%s)", (KEY,))
            return bool(taken and taken[0])

    with advisory_lock(url):
        assert not free()
    assert free()

    dying = psycopg.connect(plain, autocommit=True)
    dying.execute("SELECT pg_advisory_lock(%s)", (KEY,))
    assert not free()
    dying.close()  # as a killed worker's connection
    assert free()

    postgres.stop()
    postgres.start()
    with advisory_lock(url):  # the pooled connection died with the server
        assert not free()
    assert free()
