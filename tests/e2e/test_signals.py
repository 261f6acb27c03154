"""Stops on real processes (slow): SIGTERM, SIGHUP and Ctrl-C to a study with two workers,
kill -9 of one worker, and SIGTERM to a single run. After each stop, no process of the
command's tree is left (every pid collected from /proc before the signal is checked), the
same command resumes the study to exactly sweep.n_trials, and no MLflow run is RUNNING.

And (fast) how hyperlab.stops turns a signal into an exception, once, and holds it while a
step must not be cut.

Here: through the `hyperlab` command; unit/test_signals.py holds the rest."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from hyperlab.search import study as st
from hyperlab.search.launch import alive, descendants
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import NEVER_PRUNE, finish, start_hyperlab, wait_for
from support.records import only_study, runs_of

N_TRIALS = 2


# Trials of some seconds each, so that both workers are caught training.
STUDY = [
    "search=lr",
    "sampler=log_uniform",
    "dataset=moons",
    "dataset.n_samples=300",
    "epochs=600",
    *NEVER_PRUNE,
    "sweep.workers=2",
    f"sweep.n_trials={N_TRIALS}",
]


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def journal(cwd: Path) -> str:
    return str(cwd / DEFAULT_JOURNAL)


def mlflow_runs(cwd: Path) -> list[Any]:
    return runs_of(f"sqlite:///{cwd}/outputs/mlflow.db", "hyperlab")


def tree(root: int) -> dict[int, str]:
    """Every process below `root` (children, grandchildren...), with its command line."""
    found: dict[int, str] = {}
    for pid in descendants(root):
        with contextlib.suppress(OSError):  # gone meanwhile
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def workers_of(processes: dict[int, str]) -> list[int]:
    return [pid for pid, cmd in processes.items() if "popen_loky_posix" in cmd]


def both_training(cwd: Path) -> bool:
    """Two trials are training (their epochs have begun, so their MLflow runs are open)."""
    trials = only_study(journal(cwd)).get_trials(deepcopy=False)
    return sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in trials) >= 2


def assert_all_gone(processes: dict[int, str], timeout: float = 60) -> None:
    """Every process of the stopped command's tree ends (no timing is asserted: the bound
    only keeps a failing test from hanging)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in processes):
        time.sleep(0.2)
    left = {p: cmd for p, cmd in processes.items() if alive(p)}
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"left running: {left}"


def resume_and_check(cwd: Path, *args: str) -> list[Any]:
    """The same command again: it finishes the study at exactly n_trials, and no trial or
    MLflow run is left RUNNING. Returns the trials."""
    code, _, err = finish(start_hyperlab(cwd, *args))
    assert code == 0, err[-3000:]
    trials = only_study(journal(cwd)).get_trials(deepcopy=False)
    assert sum(t.state in FINISHED for t in trials) == N_TRIALS
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    runs = mlflow_runs(cwd)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    return trials


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "code", "said", "resume"),
    [
        ("SIGTERM", 143, "SIGTERM", True),
        ("SIGHUP", 129, "SIGHUP", False),  # the same path as SIGTERM: its resume is too
        ("Ctrl-C", 130, "Ctrl-C (SIGINT)", True),
    ],
)
def test_a_stopped_study_stops_its_whole_tree_then_resumes(
    tmp_path: Path, how: str, code: int, said: str, resume: bool
) -> None:
    """SIGTERM or SIGHUP to the main process (as Slurm, Kubernetes, systemd or a closed
    terminal send them), or SIGINT to the process group (Ctrl-C), while both workers
    train: the workers stop, their trials are failed with the signal as the reason and
    their MLflow runs closed as KILLED, the study's parent run too; the command exits
    128 + the signal with one line that says what was stopped and how to resume, and no
    process of its tree is left. The same command then finishes the study."""
    proc = start_hyperlab(tmp_path, *STUDY)
    wait_for(lambda: both_training(tmp_path), "two trials training", proc, timeout=240)
    processes = tree(proc.pid)
    assert len(workers_of(processes)) == 2, processes
    writers = [p for p, cmd in processes.items() if "hyperlab.tracking.writer_process" in cmd]
    assert len(writers) == 3, processes  # the sweeper's and each worker's
    if how == "Ctrl-C":
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    else:
        os.kill(proc.pid, getattr(signal, how))
    returncode, _, err = finish(proc, timeout=300)
    assert returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert_all_gone(processes)
    trials = only_study(journal(tmp_path)).get_trials(deepcopy=False)
    states = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    # Both trials were training; one may have ended in the moment the signal took.
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) in (1, 2) and len(trials) == 2, states
    (line,) = [x for x in err.splitlines() if "stopped" in x]
    said_failed = f"sweep stopped by {said}: {len(stopped)} trial(s) in progress failed"
    assert line.startswith(said_failed), (line, states)
    assert "closed as KILLED" in line and "Run the same command again to resume" in line, line
    for t in stopped:
        assert t.user_attrs["fail_reason"] == f"{st.STOPPED_WORKER} ({said})"
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    runs = {r.data.tags.get("hyperlab.trial"): r for r in mlflow_runs(tmp_path)}
    for t in stopped:
        run = runs[str(t.number)]
        assert run.info.status == "KILLED", (t.number, run.info.status)
        assert run.data.tags["hyperlab.failure_reason"] == f"stopped by {said}"
    assert runs[None].info.status == "KILLED"  # the study's parent run

    if resume:
        trials = resume_and_check(tmp_path, *STUDY)
        assert len(trials) == N_TRIALS + len(stopped)
    print(f"\n{how}: {line}")


@pytest.mark.slow
def test_a_stopped_population_records_every_member_then_resumes(tmp_path: Path) -> None:
    """SIGTERM while one worker trains two trials as one stacked population
    (sweep.population=2): both trials fail with the signal as the reason, both MLflow runs
    and the study's close as KILLED, no process is left, and the same command finishes the
    study at exactly n_trials."""
    population = [a for a in STUDY if not a.startswith("sweep.workers=")]
    population += ["sweep.workers=1", "sweep.population=2"]
    proc = start_hyperlab(tmp_path, *population)
    wait_for(lambda: both_training(tmp_path), "two trials training", proc, timeout=240)
    processes = tree(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    returncode, _, err = finish(proc, timeout=300)
    assert returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert_all_gone(processes)
    trials = only_study(journal(tmp_path)).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert {t.user_attrs["fail_reason"] for t in trials} == {f"{st.STOPPED_WORKER} (SIGTERM)"}
    runs = {r.data.tags.get("hyperlab.trial"): r for r in mlflow_runs(tmp_path)}
    assert {runs[str(t.number)].info.status for t in trials} == {"KILLED"}
    assert runs[None].info.status == "KILLED"
    assert len(resume_and_check(tmp_path, *population)) == N_TRIALS + 2


def finish_watching(proc: Any, processes: dict[int, str], timeout: float) -> tuple[int, str]:
    """Wait for the command (its exit code and stderr), adding every process that appears
    in its tree meanwhile (a worker started in a dead one's place) to `processes`."""
    import subprocess

    deadline = time.monotonic() + timeout
    while True:
        for pid, cmd in tree(proc.pid).items():
            processes[pid] = cmd or processes.get(pid, "")  # a zombie's command line is empty
        try:
            _, err = proc.communicate(timeout=0.5)
            return proc.returncode, err
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                raise


@pytest.mark.slow
@pytest.mark.parametrize("retry_failed", [0, 1])
def test_kill_9_of_one_worker_leaves_the_other_training(tmp_path: Path, retry_failed: int) -> None:
    """kill -9 of one of two workers in the middle of a trial: the other worker's trial
    goes on and completes; the dead worker's trial is failed with its reason at once, and
    a new worker takes the dead one's place (or, with sweep.retry_failed=1, the trial is
    enqueued again and the other worker runs it). The command exits 0 with the study at
    exactly n_trials, the dead worker's MLflow run was closed as FAILED by its writer,
    none is RUNNING, and no process of the tree is left."""
    args = [*STUDY, f"sweep.retry_failed={retry_failed}"]
    proc = start_hyperlab(tmp_path, *args)
    wait_for(lambda: both_training(tmp_path), "two trials training", proc, timeout=240)
    processes = tree(proc.pid)
    victim, survivor = workers_of(processes)
    held = {
        int(t.user_attrs[st.PID_ATTR]): t.number
        for t in only_study(journal(tmp_path)).get_trials(deepcopy=False)
        if t.state == TrialState.RUNNING
    }
    os.kill(victim, signal.SIGKILL)
    code, err = finish_watching(proc, processes, timeout=600)
    assert code == 0, err[-3000:]
    died = f"worker process {victim} died (killed by SIGKILL): trial {held[victim]} failed"
    assert died in err, err[-3000:]
    replaced = "a new worker takes its place" in err
    assert replaced == (not retry_failed), err[-3000:]
    assert len(workers_of(processes)) == 2 + replaced, (processes, err)
    assert_all_gone(processes)

    trials = only_study(journal(tmp_path)).get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    dead = by_number[held[victim]]
    assert dead.state == TrialState.FAIL and dead.user_attrs["fail_reason"] == st.DEAD_WORKER
    assert by_number[held[survivor]].state == TrialState.COMPLETE  # it carried on
    again = [t for t in trials if t.system_attrs.get("retry_history") == [dead.number]]
    if retry_failed:
        assert [t.params for t in again] == [dead.params] and again[0].state in FINISHED
    else:
        assert again == []
    assert sum(t.state in FINISHED for t in trials) == N_TRIALS
    assert len(trials) == N_TRIALS + 1
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    runs = mlflow_runs(tmp_path)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    (run,) = [r for r in runs if r.data.tags.get("hyperlab.trial") == str(dead.number)]
    assert run.info.status == "FAILED" and "killed" in run.data.tags["hyperlab.failure_reason"]
    print(f"\nkill -9 (retry_failed={retry_failed}): {died}; {len(trials)} trials")


@pytest.mark.slow
def test_sigterm_to_a_single_run_records_it_as_killed(tmp_path: Path) -> None:
    """A single run (no study) stopped by SIGTERM in the middle of training: exit 143, a
    line naming its MLflow run, which is KILLED with the signal as the reason."""
    proc = start_hyperlab(tmp_path, "dataset=moons", "epochs=100000", "progress=false")

    def training() -> bool:
        # Read-only, by SQLite itself: an MlflowClient here would create MLflow's tables
        # while the run's writer does, and the two migrations can collide.
        db = tmp_path / "outputs" / "mlflow.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
            return bool(c.execute("SELECT count(*) FROM metrics").fetchone()[0])

    wait_for(training, "the run's first metrics", proc, timeout=240)
    processes = tree(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    code, _, err = finish(proc, timeout=120)
    assert code == 143, err[-3000:]
    (run,) = mlflow_runs(tmp_path)
    # This test's own reader may create MLflow's tables while the writer does: the writer
    # then says so once ("not usable yet") and retries. Any other line is a defect.
    lines = [ln for ln in err.strip().splitlines() if "is not usable yet" not in ln]
    assert lines == [f"stopped by SIGTERM: MLflow run {run.info.run_id} is recorded as KILLED"]
    assert run.info.status == "KILLED"
    assert run.data.tags["hyperlab.failure_reason"] == "stopped by SIGTERM"
    assert_all_gone(processes)


@pytest.mark.slow
def test_kill_9_of_a_population_s_whole_tree_then_resumes(tmp_path: Path) -> None:
    """kill -9 of the whole command (the sweeper, the worker training two trials as one
    stacked population, and every MLflow writer), as a machine crash or an OOM kill of
    the process group does: nothing is left running, and nothing could record the stop
    (both trials and their MLflow runs are left RUNNING). The same command then fails
    the two orphaned trials as their dead worker's, closes their runs as FAILED with a
    reason, and finishes the study at exactly n_trials with no run RUNNING."""
    population = [a for a in STUDY if not a.startswith("sweep.workers=")]
    population += ["sweep.workers=1", "sweep.population=2"]
    proc = start_hyperlab(tmp_path, *population)

    def members_recorded() -> bool:
        # Read-only, by SQLite itself (see test_sigterm_to_a_single_run...): the study's
        # parent run and both members' runs are in the store, RUNNING.
        db = tmp_path / "outputs" / "mlflow.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
            query = "SELECT count(*) FROM runs WHERE status = 'RUNNING'"
            return bool(c.execute(query).fetchone()[0] >= 3)

    wait_for(lambda: both_training(tmp_path), "two trials training", proc, timeout=240)
    wait_for(members_recorded, "the members' MLflow runs", proc, timeout=60)
    processes = tree(proc.pid)
    (worker,) = workers_of(processes)
    writers = [p for p, cmd in processes.items() if "hyperlab.tracking.writer_process" in cmd]
    assert len(writers) == 2, processes  # the sweeper's and the worker's
    everything = [proc.pid, *processes]
    # All at once: stopped first, so that none sees another die (a writer whose worker
    # died would close its runs; a sweeper whose worker died would fail its trials).
    for pid in everything:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    for pid in everything:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert_all_gone(processes)

    trials = only_study(journal(tmp_path)).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.RUNNING] * 2
    assert {t.user_attrs[st.PID_ATTR] for t in trials} == {worker}
    runs = {r.data.tags.get("hyperlab.trial"): r for r in mlflow_runs(tmp_path)}
    assert {runs[str(t.number)].info.status for t in trials} == {"RUNNING"}
    assert runs[None].info.status == "RUNNING"  # the study's parent run
    orphans = [t.number for t in trials]

    resumed = resume_and_check(tmp_path, *population)
    assert len(resumed) == N_TRIALS + 2
    by_number = {t.number: t for t in resumed}
    for n in orphans:
        assert by_number[n].state == TrialState.FAIL
        assert by_number[n].user_attrs["fail_reason"] == st.DEAD_WORKER
    runs = {r.data.tags.get("hyperlab.trial"): r for r in mlflow_runs(tmp_path)}
    for n in orphans:
        run = runs[str(n)]
        assert run.info.status == "FAILED", (n, run.info.status)
        assert st.DEAD_WORKER in run.data.tags["hyperlab.failure_reason"], (n, run.data.tags)
    assert runs[None].info.status == "FINISHED"
