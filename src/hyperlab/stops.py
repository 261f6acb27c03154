"""Stops: SIGTERM, SIGHUP and Ctrl-C turned into exceptions that close what is open.

Slurm, Kubernetes and systemd end a job with SIGTERM (and a closed terminal sends SIGHUP),
whose default action ends a process on the spot: no `finally` runs, an MLflow run stays
RUNNING, a trial holds its place in the study. With `install()`, the first of these signals
raises instead, in the main thread: KeyboardInterrupt for SIGINT, as Python does, and
`Stopped` for the others. Both are BaseExceptions, so `except Exception` does not swallow
them, and the runner closes its MLflow run as KILLED on the way out.

One stop per process: a second signal while the first is being handled (Ctrl-C pressed
twice, or the sweeper passing SIGTERM on to a worker that the terminal's SIGINT already
reached) is ignored, so that the cleanup is not cut short. The sweeper bounds how long it
waits for that cleanup.

Some steps must not be cut in the middle (a request half written to the MLflow writer, a
trial claimed but not yet marked with its process id): inside `held()`, a signal is kept
and raised when the step is over.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """The process was told to stop by `signum` (SIGTERM or SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


STOPS = (KeyboardInterrupt, Stopped)


def signal_of(e: BaseException) -> int:
    return e.signum if isinstance(e, Stopped) else int(signal.SIGINT)


def describe(e: BaseException) -> str:
    """How the process was stopped: `SIGTERM`, `SIGHUP`, `Ctrl-C (SIGINT)`."""
    if isinstance(e, Stopped):
        return signal.Signals(e.signum).name
    return "Ctrl-C (SIGINT)"


def exit_code(e: BaseException) -> int:
    """The shell's code for a process ended by the signal: 128 + its number."""
    return 128 + signal_of(e)


class _State:
    received: int | None = None  # the signal of this process's stop, once one came
    depth = 0  # nesting of held() blocks
    pending: BaseException | None = None  # a stop that came inside held()


def _stop_for(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Stopped(signum)


def _handler(signum: int, frame: FrameType | None) -> None:
    if _State.received is not None:
        return  # one stop per process: the first one's cleanup is under way
    _State.received = signum
    stop = _stop_for(signum)
    if _State.depth:
        _State.pending = stop
        return
    raise stop


def install() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into exceptions in this process (main thread only;
    elsewhere it does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _State.received, _State.pending = None, None
    for s in SIGNALS:
        signal.signal(s, _handler)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """install() for the block; the previous handlers are restored after it (a loky worker
    process outlives its job: once idle, it may be ended by a signal as any process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    install()
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        _State.received, _State.pending = None, None  # the next job's stop is its own


def received() -> int | None:
    """The signal that stopped this process, if one came."""
    return _State.received


@contextlib.contextmanager
def held(until_checked: bool = False) -> Iterator[None]:
    """A step that a stop must not cut: a signal inside it is kept, and raised when the
    outermost held() block ends; with `until_checked`, only when take() or check() asks."""
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
    if not until_checked and not _State.depth:
        check()


def take() -> BaseException | None:
    """The stop that came inside held(), if any (it is then no longer pending)."""
    stop, _State.pending = _State.pending, None
    return stop


def since() -> BaseException | None:
    """The stop for the signal this process received, if one came, whether or not it is
    pending: a library's `except BaseException` may have swallowed the one raised (a loop
    that must not go on after a stop asks this, not take())."""
    return None if _State.received is None else _stop_for(_State.received)


def check() -> None:
    """Raise the stop that came inside held(), if any."""
    stop = take()
    if stop is not None:
        raise stop
