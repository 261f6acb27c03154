"""Faults a study meets on real machinery: a worker killed with -9 on PostgreSQL, the
database or the tracking server going away, SQLite under several local writers, and
trials that diverge, fail to load their data or cannot allocate their model."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from optuna.trial import TrialState

from hyperlab.search import study as st
from hyperlab.search.study import STALE_WORKER, STORAGE_LOST
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import NEVER_PRUNE, elsewhere, finish, start_hyperlab, wait_for
from support.records import check_runs_match_trials, only_study, read_study, runs_of
from support.servers import MlflowServer, Postgres, mlflow_server

pytestmark = pytest.mark.slow

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Trials long enough to be caught in the middle (a few seconds each).
LONG = [
    "search=lr",
    "sampler=log_uniform",
    "epochs=150",
    "dataset=moons",
    "dataset.n_samples=300",
    *NEVER_PRUNE,
]


def states(storage: str, name: str) -> list[TrialState]:
    return [t.state for t in read_study(storage, name).get_trials(deepcopy=False)]


def mid_trial(storage: str, name: str) -> Callable[[], bool]:
    """True once a trial completed and the last one is training (its epochs have begun,
    so its MLflow run is open)."""

    def check() -> bool:
        trials = read_study(storage, name).get_trials(deepcopy=False)
        return (
            any(t.state == TrialState.COMPLETE for t in trials)
            and trials[-1].state == TrialState.RUNNING
            and bool(trials[-1].intermediate_values)
        )

    return check


def finished(s: Any) -> list[Any]:
    return [t for t in s.get_trials(deepcopy=False) if t.state in FINISHED]


def no_traceback(stderr: str) -> None:
    """No traceback wall: the worker's last words are the problem and the fix."""
    assert "Traceback" not in stderr, stderr[-4000:]
    lines = stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert errors, stderr[-4000:]
    print("\n" + "\n".join(lines[errors[-1] : errors[-1] + 4]))


# --- (a) kill -9 -----------------------------------------------------------------------------


def test_kill_9_on_postgresql_fails_the_trial_by_heartbeat_and_retries_it(
    postgres: Postgres, tracking_server: MlflowServer, tmp_path: Path
) -> None:
    """A worker "on another machine" (another host name, so only its heartbeat tells that
    it died) is killed with -9 in the middle of a trial. The same command on this machine
    fails that trial once its heartbeat is 2 s old, runs its params again
    (sweep.retry_failed=1) and completes the study; the killed trial's MLflow run was
    closed as FAILED by its writer process."""
    url = postgres.create_database("kill9")
    args = [
        *LONG,
        "sweep.n_trials=4",
        "sweep.heartbeat_seconds=1",
        "sweep.retry_failed=1",
        f"sweep.storage={url}",
        "sweep.study=kill9",
        f"tracking.uri={tracking_server.uri}",
        "tracking.experiment=kill9",
    ]
    start = time.monotonic()
    proc = start_hyperlab(tmp_path / "machine1", *args, prefix=elsewhere("machine1"))
    wait_for(mid_trial(url, "kill9"), "a trial in the middle of training", proc)
    killed = read_study(url, "kill9").get_trials(deepcopy=False)[-1]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    code, _, err = finish(start_hyperlab(tmp_path / "machine2", *args))
    assert code == 0, err[-3000:]
    s = read_study(url, "kill9")
    trials = s.get_trials(deepcopy=False)
    dead = trials[killed.number]
    assert dead.state == TrialState.FAIL and dead.user_attrs["fail_reason"] == STALE_WORKER
    (again,) = [t for t in trials if t.system_attrs.get("retry_history") == [killed.number]]
    assert again.params == killed.params and again.state in FINISHED
    assert len(finished(s)) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    runs = runs_of(tracking_server.uri, "kill9")
    check_runs_match_trials(runs, trials)
    (run,) = [r for r in runs if r.data.tags.get("hyperlab.trial") == str(killed.number)]
    assert run.info.status == "FAILED"
    assert "killed" in run.data.tags["hyperlab.failure_reason"]
    print(
        f"\nkill -9 on PostgreSQL: trial {killed.number} failed by heartbeat, retried as "
        f"trial {again.number}; {len(trials)} trials, 0 runs lost, "
        f"{time.monotonic() - start:.0f} s"
    )


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_half_claimed_trial_is_failed_not_left_running(tmp_path: Path) -> None:
    """A worker that lost the storage between asking for a trial and writing its process id
    leaves a RUNNING trial no check could tie to a worker. The next claim fails it, so it
    neither stays RUNNING nor holds a place in the budget."""
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    s = optuna.create_study(study_name="half", storage=st.storage(url))
    orphan = s.ask()  # ... and the connection was lost before its attributes were written
    first = st.claim(s, url, 2)
    assert first is not None
    (failed,) = [t for t in s.get_trials() if t.number == orphan.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith(STORAGE_LOST)
    second = st.claim(s, url, 2)  # the orphan took no place in the budget
    assert second is not None and st.claim(s, url, 2) is None
    assert {t.state for t in s.get_trials() if t.number != orphan.number} == {TrialState.RUNNING}


# --- (b) a server goes away ------------------------------------------------------------------


def test_the_database_goes_away_then_the_same_command_resumes(
    postgres: Postgres, tmp_path: Path
) -> None:
    """PostgreSQL stops (a crash) in the middle of a study with two workers: they retry
    for sweep.retry_seconds, then stop with a message saying how to resume, no traceback.
    Every trial told to the study before is still there; the same command, once the
    database is back, completes the study."""
    url = postgres.create_database("outage")
    args = [
        *LONG,
        "sweep.n_trials=6",
        "sweep.workers=2",
        "sweep.retry_seconds=5",
        f"sweep.storage={url}",
        "sweep.study=outage",
    ]
    proc = start_hyperlab(tmp_path, *args)
    wait_for(lambda: states(url, "outage").count(TrialState.COMPLETE) >= 2, "two trials", proc)
    before = [t.number for t in finished(read_study(url, "outage"))]
    postgres.stop("immediate")
    try:
        code, _, err = finish(proc, timeout=300)
    finally:
        postgres.start()
    assert code == 2, err[-3000:]
    assert "did not answer for" in err and "run the same command again" in err
    assert "retrying in" in err
    no_traceback(err)
    s = read_study(url, "outage")
    assert set(before) <= {t.number for t in finished(s)}

    code, _, err = finish(start_hyperlab(tmp_path, *args))
    assert code == 0, err[-3000:]
    s = read_study(url, "outage")
    trials = s.get_trials(deepcopy=False)
    assert len(finished(s)) == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"].startswith((st.DEAD_WORKER, STORAGE_LOST)) for t in lost)
    runs = runs_of(f"sqlite:///{tmp_path}/outputs/mlflow.db", "hyperlab")
    assert "RUNNING" not in {r.info.status for r in runs}
    print(f"\ndatabase outage: {len(before)} trials kept, {len(lost)} failed by the outage")


def test_the_tracking_server_goes_away_then_the_same_command_resumes(tmp_path: Path) -> None:
    """The MLflow server stops in the middle of a study: the writer retries, the worker
    stops with a message and no traceback, the trials told to the study stay; with the
    server back, the same command completes the study, and no run is left RUNNING (one
    that could not be closed during the outage is closed then)."""
    env = {
        # MLflow's own HTTP retries would take minutes: one quick retry, then hyperlab's.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        "HYPERLAB_MLFLOW_RETRY_SECONDS": "4",
    }
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        args = [*LONG, "sweep.n_trials=5", f"tracking.uri={server.uri}"]
        proc = start_hyperlab(tmp_path / "work", *args, **env)
        journal = str(tmp_path / "work" / DEFAULT_JOURNAL)
        wait_for(
            lambda: [t.state for t in only_study(journal).trials].count(TrialState.COMPLETE) >= 2,
            "two trials",
            proc,
        )
        before = [t.number for t in finished(only_study(journal))]
        server.kill()
        code, out, err = finish(proc, timeout=300)
        assert code == 2, (before, out[-2000:], err[-3000:], server.log.read_text()[-3000:])
        assert "MLflow could not record" in err and "retrying in" in err
        no_traceback(err)
        assert set(before) <= {t.number for t in finished(only_study(journal))}

        server.start()
        code, _, err = finish(start_hyperlab(tmp_path / "work", *args, **env))
        assert code == 0, err[-3000:]
        s = only_study(journal)
        assert len(finished(s)) == 5
        runs = runs_of(server.uri, "hyperlab")
    assert "RUNNING" not in {r.info.status for r in runs}
    by_trial = {
        int(r.data.tags["hyperlab.trial"]): r for r in runs if "hyperlab.trial" in r.data.tags
    }
    for t in finished(s):
        run = by_trial[t.number]
        # FINISHED, or closed as FAILED afterwards: its end could not be written then.
        assert run.info.status == "FINISHED" or "tracking store" in run.data.tags.get(
            "hyperlab.failure_reason", ""
        ), (t.number, run.info.status, run.data.tags)
    print(f"\ntracking server outage: {len(before)} trials kept, {len(runs)} runs, none RUNNING")


# --- (c) SQLite under several writers ----------------------------------------------------------


def test_sqlite_study_and_mlflow_under_four_local_workers(tmp_path: Path) -> None:
    """100 one-epoch trials by four workers on an SQLite study, recorded in MLflow on
    SQLite: both databases see five writer processes at once (four trainers' MLflow
    writers, the sweeper's, and the workers' Optuna calls). No trial may fail for
    "database is locked"; how long it took and how many calls were retried is printed."""
    n = 100
    args = [
        "search=lr",
        "sampler=log_uniform",
        f"sweep.n_trials={n}",
        "sweep.workers=4",
        f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}",
        "epochs=1",
        "dataset=moons",
        "dataset.n_samples=200",
    ]
    start = time.monotonic()
    code, _, err = finish(start_hyperlab(tmp_path, *args))
    seconds = time.monotonic() - start
    assert code == 0, err[-3000:]
    s = only_study(f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = s.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n
    runs = runs_of(f"sqlite:///{tmp_path}/outputs/mlflow.db", "hyperlab")
    check_runs_match_trials(runs, trials)
    retries = err.count("retrying in")
    locked = err.count("database is locked")
    print(
        f"\nSQLite, 4 workers, {n} trials: {seconds:.0f} s, {retries} retried calls "
        f"({locked} 'database is locked'), 0 trials failed"
    )


# --- (d) trials that fail ----------------------------------------------------------------------


def faulty_space(config_dir: Path) -> None:
    """A search over values of which some break a trial: a data file that does not exist,
    a model too big to allocate, a learning rate at which gradient descent diverges."""
    (config_dir / "search").mkdir(parents=True)
    (config_dir / "search" / "faulty.yaml").write_text(
        textwrap.dedent(
            """\
            # @package _global_
            defaults:
              - override /hydra/sweeper: hyperlab
              - override /hydra/launcher: joblib
            tracking:
              curve: false
            hydra:
              mode: MULTIRUN
              launcher:
                n_jobs: ${sweep.workers}
            search:
              name: faulty
              params:
                dataset.path: {choices: [good.csv, missing.csv]}
                model.hidden_units: {choices: [16, 1000000000000]}
                lr: {choices: [0.01, 1000.0]}
            """
        )
    )


def test_diverged_unloadable_and_too_big_trials_fail_with_their_reason(tmp_path: Path) -> None:
    """Each failing trial is FAIL with its reason in `fail_reason` and in its MLflow run's
    tags (also when it failed before training began), and the study goes on to the end of
    its grid."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    rows = [f"{a:.5f},{b:.5f},{int(a * b > 0)}" for a, b in x]
    (tmp_path / "good.csv").write_text("x1,x2,label\n" + "\n".join(rows) + "\n")
    faulty_space(tmp_path / "conf")
    args = [
        "--config-dir",
        str(tmp_path / "conf"),
        "search=faulty",
        "sampler=grid",
        "dataset=csv",
        "dataset.path=good.csv",
        "optimizer=gd",
        "model.layers=1",
        "sweep.max_failure_rate=1",
        "epochs=5",
    ]
    code, _, err = finish(start_hyperlab(tmp_path, *args))
    assert code == 0, err[-3000:]
    s = only_study(str(tmp_path / DEFAULT_JOURNAL))
    trials = s.get_trials(deepcopy=False)
    assert len(trials) == 8  # the whole grid: no failure stopped the study
    for t in trials:
        reason = t.user_attrs.get("fail_reason", "")
        if t.params["dataset.path"] == "missing.csv":
            assert t.state == TrialState.FAIL and "missing.csv" in reason, reason
        elif t.params["model.hidden_units"] > 16:
            assert t.state == TrialState.FAIL and "hidden_units" in reason + str(t.params)
            assert "allocat" in reason or "memory" in reason, reason
        elif t.params["lr"] > 1:
            assert t.state == TrialState.FAIL and "diverged" in reason, reason
        else:
            assert t.state == TrialState.COMPLETE, reason
    runs = runs_of(f"sqlite:///{tmp_path}/outputs/mlflow.db", "hyperlab")
    check_runs_match_trials(runs, trials)
    for r in runs:
        if r.info.status == "FAILED":
            assert r.data.tags["hyperlab.outcome"] in ("failed", "diverged")
    print(
        "\n"
        + "\n".join(
            f"trial {t.number}: {t.state.name} {t.user_attrs.get('fail_reason', '')[:100]}"
            for t in trials
        )
    )
