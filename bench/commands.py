"""The `hyperlab` command as users run it: studies in fresh directories, read back from their
journal; worker idle time; wall times and import profiles of single commands."""

from __future__ import annotations

import datetime
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL

HYPERLAB = str(Path(sys.executable).parent / "hyperlab")
BENCH = Path(__file__).resolve().parent
ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


class CommandFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Timed:
    """A finished command: wall time, CPU time (user + system, of the command and the child
    processes it waited for: workers, the MLflow writer), and its output."""

    wall: float
    cpu: float
    stdout: str
    stderr: str
    peak_mib: float = float("nan")  # the largest process's peak RSS (with peak=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Runs a command and prints, last on stderr, the peak RSS (KiB) of the largest process of
# its tree: RUSAGE_CHILDREN's maxrss is the maximum over the descendants waited for, and
# this process is fresh, so no earlier command's peak is in it.
_PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_command(cmd: list[str], cwd: Path, timeout: float = 3600, peak: bool = False) -> Timed:
    """Run `cmd` in `cwd` and time it (with `peak`, measure its peak RSS too). Raises
    CommandFailed on a non-zero exit."""
    full = [sys.executable, "-c", _PEAK, *cmd] if peak else cmd
    cpu, start = _children_cpu(), time.perf_counter()
    r = subprocess.run(full, cwd=cwd, capture_output=True, text=True, env=ENV, timeout=timeout)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if r.returncode != 0:
        raise CommandFailed(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    peak_mib = float("nan")
    if peak:
        err, _, last = r.stderr.rstrip("\n").rpartition("\n")
        peak_mib = int(last) / 1024
        return Timed(wall, cpu, r.stdout, err, peak_mib)
    return Timed(wall, cpu, r.stdout, r.stderr)


def fresh_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"hyperlab-bench-{prefix}-"))


@dataclass
class StudyRun:
    """A `hyperlab` study command: its wall time (start-up included) and its trials."""

    args: list[str]
    wall: float
    cpu: float
    trials: list[optuna.trial.FrozenTrial]
    peak_mib: float = float("nan")

    @property
    def command(self) -> str:
        return "hyperlab " + " ".join(self.args)

    def finished(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if t.datetime_start and t.datetime_complete]

    @property
    def epochs(self) -> int:
        """Epochs trained: with a pruner, every trial reports the objective once per
        epoch; without one it reports nothing, and a complete trial trained them all."""
        return sum(trained_epochs(t, self.args) for t in self.trials)

    @property
    def best(self) -> float | None:
        values = [t.value for t in self.trials if t.value is not None]
        return max(values) if values else None

    def states(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for t in self.trials:
            out[t.state.name] += 1
        return dict(out)

    @property
    def span(self) -> float:
        """First trial start to last trial end: the study without process start-up."""
        ts = self.finished()
        start = min(t.datetime_start for t in ts if t.datetime_start)
        end = max(t.datetime_complete for t in ts if t.datetime_complete)
        return (end - start).total_seconds()

    def median_attr(self, key: str) -> float:
        """Median over trials of one of the runner's timings (build, fit, finish)."""
        xs = [t.user_attrs["seconds"][key] for t in self.trials if "seconds" in t.user_attrs]
        return statistics.median(xs) if xs else float("nan")

    def ask_to_tell(self) -> float:
        return statistics.median(
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in self.finished()
            if t.datetime_complete and t.datetime_start
        )


def trained_epochs(t: optuna.trial.FrozenTrial, args: list[str]) -> int:
    """The epochs a trial of a study run with `args` trained."""
    if t.intermediate_values or t.state != optuna.trial.TrialState.COMPLETE:
        return len(t.intermediate_values)
    return next(int(a.split("=", 1)[1]) for a in args if a.startswith("epochs="))


def study(
    args: list[str], prefix: str, keep: bool = False, peak: bool = False, store: Path | None = None
) -> StudyRun:
    """Run `hyperlab *args` in a fresh directory and read its study back from the journal.
    With `store`, a copy of that MLflow database is the directory's outputs/mlflow.db."""
    cwd = fresh_dir(prefix)
    if store is not None:
        (cwd / "outputs").mkdir()
        shutil.copy(store, cwd / "outputs" / "mlflow.db")
    try:
        timed = run_command([HYPERLAB, *args], cwd, peak=peak)
        storage = st.storage(str(cwd / DEFAULT_JOURNAL))
        (summary,) = optuna.get_all_study_summaries(storage)
        s = optuna.load_study(study_name=summary.study_name, storage=storage)
        return StudyRun(args, timed.wall, timed.cpu, s.trials, timed.peak_mib)
    finally:
        if not keep:
            shutil.rmtree(cwd, ignore_errors=True)


def floor_study(trials: int, epochs: int) -> tuple[Timed, list[float]]:
    """bench/floor_study.py in a fresh process: its timing and per-trial wall times."""
    cmd = [
        sys.executable,
        str(BENCH / "floor_study.py"),
        f"--trials={trials}",
        f"--epochs={epochs}",
    ]
    cwd = fresh_dir("floor")
    try:
        timed = run_command(cmd, cwd)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    return timed, list(json.loads(timed.stdout.strip().splitlines()[-1])["trial_seconds"])


# --- parallel workers -----------------------------------------------------------------------


def per_minute(trials: list[optuna.trial.FrozenTrial]) -> float:
    """Steady-state rate: trials started after each worker's first one ended (that one
    waits for its process to warm up), over the time from then to the last end."""
    spans = [
        (t.datetime_start, t.datetime_complete, t.user_attrs[st.PID_ATTR])
        for t in trials
        if t.datetime_start is not None and t.datetime_complete is not None
    ]
    first_end: dict[int, datetime.datetime] = {}
    for _, end, pid in spans:
        first_end[pid] = min(end, first_end.get(pid, end))
    start = max(first_end.values())
    later = [(b, e) for b, e, _ in spans if b >= start]
    if not later:
        # Too few trials for a steady state: every one started while a worker warmed up.
        return float("nan")
    end = max(e for _, e in later)
    return len(later) / ((end - start).total_seconds() / 60)


@dataclass
class Workers:
    """How a study's workers spent its span (first trial start to last trial end)."""

    workers: int
    span: float
    busy: float  # summed over workers: time inside trials
    gaps: float  # summed: a trial's end to the same worker's next start
    head: float  # summed: the first trial's start to the worker's first start
    tail: float  # summed: the worker's last end to the study's last end
    median_gap: float
    trials_per_min: float  # steady state, as per_minute() counts it
    epochs_per_min: float  # same window

    @property
    def idle_fraction(self) -> float:
        """Gaps and tail over the workers' time in the span (the head is process start-up
        of the later worker, not waiting)."""
        return (self.gaps + self.tail) / (self.workers * self.span)


def workers_of(run: StudyRun) -> Workers:
    by_pid: dict[int, list[tuple[datetime.datetime, datetime.datetime]]] = defaultdict(list)
    epochs: dict[tuple[int, datetime.datetime], int] = {}
    for t in run.finished():
        assert t.datetime_start and t.datetime_complete
        pid = int(t.user_attrs[st.PID_ATTR])
        by_pid[pid].append((t.datetime_start, t.datetime_complete))
        epochs[(pid, t.datetime_start)] = trained_epochs(t, run.args)
    first = min(b for spans in by_pid.values() for b, _ in spans)
    last = max(e for spans in by_pid.values() for _, e in spans)
    busy = gaps = head = tail = 0.0
    all_gaps: list[float] = []
    for spans in by_pid.values():
        spans.sort()
        busy += sum((e - b).total_seconds() for b, e in spans)
        gs = [(b2 - e1).total_seconds() for (_, e1), (b2, _) in itertools.pairwise(spans)]
        gaps += sum(gs)
        all_gaps += gs
        head += (spans[0][0] - first).total_seconds()
        tail += (last - spans[-1][1]).total_seconds()
    # The steady window: from when every worker has finished its first trial.
    steady = max(min(e for _, e in spans) for spans in by_pid.values())
    window = (last - steady).total_seconds()
    steady_epochs = sum(n for (_, b), n in epochs.items() if b >= steady)
    return Workers(
        workers=len(by_pid),
        span=(last - first).total_seconds(),
        busy=busy,
        gaps=gaps,
        head=head,
        tail=tail,
        median_gap=statistics.median(all_gaps) if all_gaps else 0.0,
        trials_per_min=per_minute(run.finished()) if window > 0 else float("nan"),
        epochs_per_min=steady_epochs / (window / 60) if window > 0 else float("nan"),
    )


# --- start-up -------------------------------------------------------------------------------


def timings(args: list[str], cwd: Path, reps: int) -> list[tuple[float, float]]:
    """(wall, CPU) of `hyperlab *args`, reps times."""
    return [(t.wall, t.cpu) for t in (run_command([HYPERLAB, *args], cwd) for _ in range(reps))]


def import_profile(args: list[str], cwd: Path) -> dict[str, Any]:
    """`python -X importtime` of the command: the total; the self time summed per root
    package (torch, hydra, mlflow...); and the top-level imports by cumulative time (those
    made at start-up, and those made lazily while running, such as the data set's
    scikit-learn module or torch._dynamo, which torch imports when an optimizer is built)."""
    err = run_command([sys.executable, "-X", "importtime", HYPERLAB, *args], cwd).stderr
    per_root: dict[str, float] = defaultdict(float)
    top_level: list[tuple[str, float]] = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        per_root[name.strip().split(".")[0]] += int(own) / 1e6
        if not name.startswith("  "):  # depth 0: at start-up, or lazily at run time
            top_level.append((name.strip(), int(cumulative) / 1e6))
    return {
        "total": sum(per_root.values()),
        "by_package": sorted(per_root.items(), key=lambda kv: -kv[1]),
        "top_level": sorted(top_level, key=lambda kv: -kv[1]),
    }


def empty_store(directory: Path) -> Path:
    """An MLflow SQLite database with its tables created (seconds of migrations that a
    fresh outputs/ pays once) and nothing in it: what a user's outputs/ holds after their
    first command."""
    from mlflow import MlflowClient

    path = directory / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path
