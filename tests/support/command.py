"""The `hyperlab` command as a user runs it: in the foreground (hyperlab()), or in the
background in a session of its own (start_hyperlab(), finish(), wait_for())."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.servers import BIN, unavailable

HYPERLAB = str(BIN / "hyperlab")

# A study small enough to run in seconds.
QUICK = ["epochs=3", "dataset=moons", "dataset.n_samples=300"]
# A PBT study of one population of 4 that copies after epochs 2, 4 and 6, in seconds.
PBT_TINY = [
    "search=lr_beta",
    "dataset=moons",
    "dataset.n_samples=300",
    "model.hidden_units=[10,5]",
    "epochs=8",
    "sweep.schedule=pbt",
    "sweep.population=4",
    "sweep.n_trials=4",
    "pbt.interval=2",
]
# A pruner that never prunes: trials report every epoch (without a pruner they report
# nothing), so that a test can tell when a trial is training.
NEVER_PRUNE = ["pruner=median", "pruner.n_startup_trials=100000"]


def hyperlab_env(columns: int = 200, **extra: str) -> dict[str, str]:
    """The environment of a test's hyperlab: wide lines (rich wraps at COLUMNS), one
    thread per process."""
    return {**os.environ, "COLUMNS": str(columns), "OMP_NUM_THREADS": "1", **extra}


def hyperlab(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    module: bool = False,
    columns: int = 200,
    timeout: float = 900,
    fsize: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """`hyperlab ARGS` in `cwd` (`python -m hyperlab ARGS` with module=True), its output
    captured; `env` is added to this process's environment, and `fsize` caps the size of
    the files it writes (EFBIG beyond)."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    cmd = [sys.executable, "-m", "hyperlab", *args] if module else [HYPERLAB, *args]
    return subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        env=hyperlab_env(columns, **(env or {})),
        timeout=timeout,
        preexec_fn=limit if fsize is not None else None,
    )


def start_hyperlab(
    cwd: Path, *args: str, prefix: tuple[str, ...] = (), **env: str
) -> subprocess.Popen[str]:
    """`hyperlab ARGS` in the background, in a session of its own (killpg ends it all);
    `prefix` runs it through another command (see elsewhere())."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*prefix, HYPERLAB, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hyperlab_env(**env),
        start_new_session=True,
    )


def elsewhere(hostname: str) -> tuple[str, ...]:
    """A command prefix that runs a program under another host name (a UTS namespace of
    its own), so that hyperlab takes it for a worker on another machine: its trials can
    then be failed by their heartbeat only, not by their process id."""
    try:
        probe = subprocess.run(
            ["unshare", "--uts", "sh", "-c", f"hostname {hostname}"],
            capture_output=True,
            text=True,
        )
        problem = probe.stderr.strip() if probe.returncode else ""
    except OSError as e:
        problem = str(e)
    if problem:
        unavailable(f"cannot run a process under another host name: {problem}")
    return ("unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$0" "$@"')


def finish(proc: subprocess.Popen[str], timeout: float = 900) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run_all(cwds: list[Path], *args: str, **env: str) -> list[tuple[int, str, str]]:
    """The same `hyperlab ARGS` started at once in each of `cwds`, as on several machines;
    returns each one's (exit code, stdout, stderr)."""
    procs = [start_hyperlab(cwd, *args, **env) for cwd in cwds]
    return [finish(p) for p in procs]


def wait_for(check: Callable[[], bool], what: str, proc: Any, timeout: float = 300) -> None:
    """Poll `check()` (errors count as "not yet") while the hyperlab process runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # the study or its tables do not exist yet
            pass
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"hyperlab exited ({proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")
