"""Worker processes on this machine: the joblib launcher's jobs, each in a process of its own
that the sweeper can stop as a tree.

Hydra's joblib launcher runs every job in one loky pool. When one worker process dies (kill
-9, the kernel's out-of-memory killer), loky marks the whole pool broken and kills the other
workers with SIGKILL, their MLflow writer processes with them: the surviving workers'
trials are lost and their runs stay RUNNING. And when the sweeper itself is stopped by
SIGTERM, nothing tells the pool: its workers go on training with no parent.

So the sweeper runs the same jobs (the launcher's own execute_job, with its context) in
one loky executor per worker. A dead worker breaks only its own executor; the sweeper fails
its trial and starts another worker in its place while the study needs trials. On a stop,
the sweeper passes SIGTERM on to each worker, which closes its trial and its MLflow run
(see hyperlab.stops), waits for them for a bounded time, then kills what is left, down to
the writer processes.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperlab import stops

STOP_SECONDS = 30.0  # how long stopped workers get to close their trials and MLflow runs
WRITER_SECONDS = 15.0  # then how long their writers get to write what is left
# Hydra's joblib launcher logs its jobs under this name: the same lines, the same filters.
log = logging.getLogger("hydra_plugins.hydra_joblib_launcher._core")


def is_joblib(launcher: Any) -> bool:
    return type(launcher).__name__ == "JoblibLauncher" and hasattr(launcher, "joblib")


@dataclass
class Death:
    """A worker process that died while it ran its job."""

    pid: int
    exitcode: int | None

    def describe(self) -> str:
        code = self.exitcode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}" if code is not None else "ended"


@dataclass
class _Slot:
    idx: int
    executor: Any
    future: Future[Any]
    process: Any

    @property
    def pid(self) -> int:
        return int(self.process.pid)


@dataclass
class Workers:
    """The jobs of one launch, one loky executor (one process) each."""

    launcher: Any
    running: list[_Slot] = field(default_factory=list)
    deaths: list[Death] = field(default_factory=list)

    def run(
        self, jobs: Sequence[Sequence[str]], replace: Callable[[Death], list[str] | None]
    ) -> list[Any]:
        """Run `jobs` (at most n_jobs at once); return their JobReturns in order. A worker
        that dies is reported to `replace`, which returns the overrides of a worker to
        start in its place, or None. A stop (SIGTERM, Ctrl-C) or another error stops every
        worker before it is raised."""
        from hydra.core.utils import configure_log, filter_overrides, setup_globals

        setup_globals()
        config = self.launcher.config
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        limit = _n_jobs(self.launcher.joblib.get("n_jobs"), len(jobs))
        log.debug(f"Joblib launcher: {len(jobs)} workers, each in a process of its own")
        log.debug(f"Launching jobs, sweep output dir : {config.hydra.sweep.dir}")
        for idx, overrides in enumerate(jobs):
            log.debug("\t#{} : {}".format(idx, " ".join(filter_overrides(overrides))))
        queue = collections.deque(enumerate(jobs))
        returns: dict[int, Any] = {}
        try:
            while queue or self.running:
                while queue and len(self.running) < limit:
                    self._start(*queue.popleft(), limit)
                done, _ = wait([s.future for s in self.running], return_when=FIRST_COMPLETED)
                for slot in [s for s in self.running if s.future in done]:
                    self.running.remove(slot)
                    slot.executor.shutdown(wait=False)
                    try:
                        returns[slot.idx] = slot.future.result()
                    except _broken() as e:  # the worker process died: the others go on
                        death = Death(slot.pid, slot.process.exitcode)
                        if death.exitcode is None:
                            death.exitcode = _exit_code_of(e)
                        self.deaths.append(death)
                        again = replace(death)
                        if again is not None:
                            log.debug(f"\t#{len(jobs) + len(self.deaths) - 1} : {' '.join(again)}")
                            queue.append((len(jobs) + len(self.deaths) - 1, again))
        except BaseException:
            self.stop()
            raise
        return [returns[i] for i in sorted(returns)]

    def _start(self, idx: int, overrides: Sequence[str], n_jobs: int) -> None:
        from hydra.core.singleton import Singleton
        from hydra_plugins.hydra_joblib_launcher._core import execute_job
        from joblib.externals.loky import ProcessPoolExecutor

        launcher = self.launcher
        with stops.held():  # a worker started is one stop() knows of
            executor = ProcessPoolExecutor(max_workers=1, env=_thread_env(n_jobs))
            future = executor.submit(
                execute_job,
                idx,
                list(overrides),
                launcher.hydra_context,
                launcher.config,
                launcher.task_function,
                Singleton.get_state(),
            )
            (process,) = executor._processes.values()  # started by submit()
            self.running.append(_Slot(idx, executor, future, process))

    def stop(self, seconds: float = STOP_SECONDS, writer_seconds: float = WRITER_SECONDS) -> None:
        """Stop every worker and what it started: the signal this process was stopped by
        (SIGTERM if none), so that each closes its trial and its MLflow run, with that
        signal as the reason; after `seconds`, SIGKILL. Their writer processes then close
        what is still open (they end when their worker's pipe closes); after
        `writer_seconds` more, they are killed too."""
        slots, self.running = self.running, []
        tree = {p for s in slots for p in [s.pid, *descendants(s.pid)]}
        signum = stops.received() or signal.SIGTERM
        for s in slots:
            with contextlib.suppress(ProcessLookupError):
                os.kill(s.pid, signum)
        wait([s.future for s in slots], timeout=seconds)
        for s in slots:  # an idle worker ends on the executor's sentinel
            s.executor.shutdown(wait=False)
        _wait_gone([s.pid for s in slots], 5.0)
        tree |= {p for s in slots if alive(s.pid) for p in descendants(s.pid)}
        for s in slots:
            with contextlib.suppress(ProcessLookupError):
                if alive(s.pid):
                    os.kill(s.pid, signal.SIGKILL)
        _wait_gone(sorted(tree), writer_seconds)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def _broken() -> tuple[type[BaseException], ...]:
    from joblib.externals.loky.process_executor import BrokenProcessPool

    return (BrokenProcessPool,)


def _exit_code_of(e: BaseException) -> int | None:
    """The exit code loky's TerminatedWorkerError names: `{SIGKILL(-9)}`."""
    import re

    found = re.search(r"\((-?\d+)\)", str(e))
    return int(found.group(1)) if found else None


def _n_jobs(n_jobs: Any, jobs: int) -> int:
    """joblib's n_jobs as a count: -1 is every CPU, -2 all but one, None one."""
    if n_jobs is None:
        return 1
    n = int(n_jobs)
    if n < 0:
        n = max((os.cpu_count() or 1) + 1 + n, 1)
    return max(min(n, jobs), 1)


def _thread_env(n_jobs: int) -> dict[str, str]:
    """What joblib gives its workers: thread pools (OpenMP, MKL, OpenBLAS) sized to share
    the CPUs, unless the environment sets them."""
    from joblib._parallel_backends import LokyBackend

    n = str(max((os.cpu_count() or 1) // n_jobs, 1))
    return {var: os.environ.get(var, n) for var in LokyBackend.MAX_NUM_THREADS_VARS}


# --- processes, read from /proc (no psutil) ---------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text[text.rindex(")") + 2 :].split()[:2]
    return state, int(ppid)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """The processes below `pid`: its children, theirs, and so on."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _wait_gone(pids: Sequence[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
