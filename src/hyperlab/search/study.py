"""Studies: their storage opened, what they are named, how workers claim trials, and the
retries of a storage that does not answer.

The default storage is an Optuna journal file under outputs/: append-only, so it survives
a crash, and locked, so several local workers share it. Any Optuna RDB URL
(postgresql://..., sqlite:///...) works as well and serves workers on several machines.
Whether a URL can name a storage at all is checked in hyperlab.stores, before it is opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hyperlab import stores
from hyperlab.errors import ConfigError, HyperlabError, first_line, masked

if TYPE_CHECKING:
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat

T = TypeVar("T")
FINISHED = ("COMPLETE", "PRUNED")
# Trials that hold a place in the budget: finished, or about to be.
TAKEN = (*FINISHED, "RUNNING", "WAITING")
HOST_ATTR, PID_ATTR = "hyperlab:host", "hyperlab:pid"
WORKER_ATTR = "hyperlab:worker"  # the sweep.worker number of the worker that claimed it
DEAD_WORKER = "its worker process died (killed?)"
STALE_WORKER = "its worker stopped sending heartbeats (killed, or its machine lost?)"
STORAGE_LOST = "its worker lost the study's storage"
STOPPED_WORKER = "its worker was stopped"  # by SIGTERM, SIGHUP or Ctrl-C
# Trials that failed for their worker, not for their hyperparameters: sweep.retry_failed
# tries them again.
WORKER_DEATHS = (DEAD_WORKER, STALE_WORKER, STORAGE_LOST, STOPPED_WORKER)
_opened: set[str] = set()  # database URLs this process has opened a storage on


def storage(url: str, heartbeat_seconds: int = 60) -> optuna.storages.BaseStorage:
    """The Optuna storage for `url`: a journal file path (default outputs/optuna/journal.log)
    or an RDB URL, which also gets a heartbeat so that a dead worker's trial is failed.

    A URL that cannot name a storage raises ConfigError at once, before anything is
    written: a directory, a file that is not a journal, an MLflow database, an unknown
    database kind, a driver that is not installed, a server never reached (first contact
    waits stores.CONNECT_TIMEOUT seconds at most). A server lost after it was reached raises
    the driver's own error, which the sweep's workers retry."""
    import optuna

    stores.check_storage(url)
    path = stores.journal_path(url)
    if path is not None:
        return _journal_storage(path, url)
    kwargs = {}
    if url.split(":", 1)[0].split("+")[0] in stores.DEFAULT_PORTS:
        # libpq's and the MySQL drivers' setting: a server that does not answer fails the
        # connection instead of hanging it (the sweep's workers retry it).
        timeout = int(stores.CONNECT_TIMEOUT)
        kwargs["engine_kwargs"] = {"connect_args": {"connect_timeout": timeout}}
    error = None
    try:
        with warnings.catch_warnings():  # "heartbeat_interval is experimental": not the user's
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat_seconds,
                grace_period=2 * heartbeat_seconds,
                **kwargs,  # type: ignore[arg-type]
            )
    except Exception as e:
        if url in _opened and transient(e):
            raise  # lost after it was opened: the caller may retry
        error = ConfigError(
            f"sweep.storage={masked(url)} cannot be opened: {first_line(e)}",
            stores.STORAGE_FIX,
        )
    if error:
        raise stores.unchained(error)
    _opened.add(url)
    return rdb


def _journal_storage(path: Path, url: str) -> optuna.storages.BaseStorage:
    """A journal file's storage, its damaged last line repaired first (see journal.py);
    a journal that cannot be written is opened for reading only, untouched."""
    from optuna.storages.journal import JournalStorage

    from hyperlab.search import journal

    # Absolute: Optuna's lock is a symlink to this path, and a relative one dangles, so
    # a lock left by a killed worker would never be seen as stale (it spins forever).
    path = path.resolve()
    if stores.writable(path):
        # Without room for the backup (a full disk), it is left as it is: reading needs no
        # repair, and an append repairs first or stops the worker with this same error.
        with contextlib.suppress(journal.JournalError):
            journal.repair_and_notify(path)
    try:
        return JournalStorage(journal.backend(path))
    except ValueError as e:  # not a journal past its first line, or a line broken inside
        bad = journal.first_bad_line(path)
        if bad is not None:
            raise journal.bad_line(path, bad) from None
        raise ConfigError(
            f"sweep.storage={url or stores.DEFAULT_JOURNAL} cannot be read as an Optuna journal "
            f"({type(e).__name__}: {e})",
            stores.STORAGE_FIX,
        ) from None


def transient(e: BaseException) -> bool:
    """Whether `e` is a lost or busy connection to the storage (a server down or
    restarting, SQLite's "database is locked"), worth retrying, rather than a wrong URL,
    schema or request; also when SQLAlchemy or Optuna wrapped the driver's error."""
    import sqlalchemy.exc

    kinds = (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.TimeoutError,
        sqlalchemy.exc.DisconnectionError,
        ConnectionError,
        TimeoutError,
    )
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, HyperlabError):  # already judged: e.g. an unreachable host
            return False
        if isinstance(seen, kinds) or type(seen).__name__ in ("OperationalError", "InterfaceError"):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def budget_lock(url: str) -> Iterator[None]:
    """Serializes "count the trials, then ask for one" among workers that share a storage:
    a file lock for a journal or SQLite file (workers on this machine), PostgreSQL's
    advisory lock for a PostgreSQL storage (workers on several machines)."""
    stores.check_storage(url)  # before the lock file or the lock's connection is made
    path = stores.journal_path(url)
    if path is None and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
    if path is None:
        if url.startswith(("postgresql", "postgres://")):
            from hyperlab.search.rdb_lock import advisory_lock

            with advisory_lock(url):
                yield
            return
        yield
        return
    lock = path.with_name(path.name + ".budget.lock")
    if not lock.parent.is_dir() and stores.journal_path(url) is not None:
        # check_storage() made it: it was deleted since, with the journal in it
        from hyperlab.search.journal import deleted

        raise deleted(path.resolve())
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs on this machine."""
    from hyperlab.search.launch import alive

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(0) finds a zombie too: a worker killed with -9 along with its parent stays one
    # until init reaps it, and its trials must be failed meanwhile (where /proc tells).
    return not Path(f"/proc/{pid}").exists() or alive(pid)


def _fail_lost(study: optuna.Study) -> None:
    """Fail RUNNING trials whose worker is gone, so that they neither count against the
    budget nor stay RUNNING forever: those of a process on this machine that no longer
    exists (killed), and those without a process id (see claim()). Only under the budget
    lock: outside it, a trial between ask() and its attributes would look half-claimed."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if PID_ATTR not in t.user_attrs:
            _fail(study, t._trial_id, f"{STORAGE_LOST} while it claimed the trial")
        elif t.user_attrs.get(HOST_ATTR) == host and not _alive(int(t.user_attrs[PID_ATTR])):
            _fail(study, t._trial_id, DEAD_WORKER)


def _fail(study: optuna.Study, trial_id: int, reason: str) -> None:
    """Fail a trial with its reason, unless it finished meanwhile."""
    import optuna
    from optuna.trial import TrialState

    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        study._storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state name."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def claim(
    study: optuna.Study, url: str, n_trials: int, retry_failed: int = 0, worker: int = 0
) -> optuna.Trial | None:
    """A new trial if the study still needs one, else None (claim_many for one)."""
    trials = claim_many(study, url, n_trials, 1, retry_failed, worker)
    return trials[0] if trials else None


def claim_many(
    study: optuna.Study, url: str, n_trials: int, count: int, retry_failed: int = 0, worker: int = 0
) -> list[optuna.Trial]:
    """Up to `count` new trials that the study still needs, under one hold of its lock
    (a population claims its members together), each marked with `worker`.

    `n_trials` counts the study's finished (complete or pruned) trials, whoever ran them;
    running and waiting trials count too, since they will finish. Failed trials do not:
    the study runs another in their place. First, under the same lock, the trials of
    workers that died are failed and, with `retry_failed` > 0, enqueued again.

    The trial's host and process id are written before the lock is released: a RUNNING
    trial without them, seen under the lock, is one whose worker lost the storage between
    asking for it and writing them, and it is failed; otherwise it would stay RUNNING, and
    hold a place in the budget, forever."""
    import optuna

    claimed: list[optuna.Trial] = []
    with budget_lock(url):
        _fail_stale(study)
        _fail_lost(study)
        trials = study.get_trials(deepcopy=False)
        enqueued = _enqueue_retries(study, trials, retry_failed) if retry_failed > 0 else 0
        # A WAITING trial (a retry) holds its place in the budget already: it is claimed
        # even when the budget is full, or it would wait forever.
        waiting = enqueued + sum(t.state.name == "WAITING" for t in trials)
        taken = sum(t.state.name in TAKEN for t in trials) + enqueued
        while len(claimed) < count:
            if not waiting and taken >= n_trials:
                break
            # A grid of at least n_trials points (setup_of) is exhausted only once the study
            # has that many trials (failed ones used up points too): is_exhausted walks every
            # point, millions on a large space, so it is asked only then.
            grid = study.sampler
            if (
                not waiting
                and isinstance(grid, optuna.samplers.GridSampler)
                and len(trials) + len(claimed) >= n_trials
                and grid.is_exhausted(study)
            ):
                break
            if waiting:
                waiting -= 1  # ask() takes it: it was counted already
            else:
                taken += 1
            try:
                trial = study.ask()
                trial.set_user_attr(HOST_ATTR, socket.gethostname())
                trial.set_user_attr(PID_ATTR, os.getpid())
                trial.set_user_attr(WORKER_ATTR, worker)
            except Exception:
                # Trials claimed already are kept: a retried claim would strand them RUNNING.
                # The next claim meets the error again, and fails one left without its pid.
                if claimed:
                    break
                raise
            claimed.append(trial)
    return claimed


def release_lost(study: optuna.Study, url: str, retry_failed: int = 0) -> None:
    """What claim() does first, without claiming: fail the trials of workers that are gone
    and, with `retry_failed`, enqueue them again. For a sweeper whose worker died."""
    with budget_lock(url):
        _fail_stale(study)
        _fail_lost(study)
        if retry_failed > 0:
            _enqueue_retries(study, study.get_trials(deepcopy=False), retry_failed)


def heartbeat_storage(study: optuna.Study) -> BaseHeartbeat | None:
    """The study's storage if it keeps heartbeats (an RDB with an interval), else None."""
    from optuna.storages._heartbeat import BaseHeartbeat

    s = study._storage
    return s if isinstance(s, BaseHeartbeat) and s.get_heartbeat_interval() else None


def _fail_stale(study: optuna.Study) -> None:
    """Fail RUNNING trials whose heartbeat is older than the grace period, with a reason
    (optuna.storages.fail_stale_trials fails them without one)."""
    heartbeat = heartbeat_storage(study)
    if heartbeat is None:
        return
    for trial_id in heartbeat._get_stale_trial_ids(study._study_id):
        _fail(study, trial_id, STALE_WORKER)


def _enqueue_retries(
    study: optuna.Study, trials: list[optuna.trial.FrozenTrial], max_retry: int
) -> int:
    """A WAITING copy of each trial that failed because its worker died, up to `max_retry`
    times per original trial; the next claim (study.ask) takes it. Recorded in Optuna's
    own system attributes (`failed_trial`, `retry_history`), as
    RetryHeartbeatStaleTrialCallback does, but without the dead worker's user attributes
    (its process id would get the new trial failed as dead)."""
    import optuna
    from optuna.trial import TrialState

    retried = {
        t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")
    }
    enqueued = 0
    for t in trials:
        reason = str(t.user_attrs.get("fail_reason", ""))
        if (
            t.state != TrialState.FAIL
            or t.number in retried
            or not t.params
            or not reason.startswith(WORKER_DEATHS)
        ):
            continue
        history = [*t.system_attrs.get("retry_history", []), t.number]
        if len(history) > max_retry:
            continue
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=t.params,
                distributions=t.distributions,
                user_attrs={"retry_of": t.number},
                system_attrs={"failed_trial": history[0], "retry_history": history},
            )
        )
        enqueued += 1
    return enqueued


# --- retries -------------------------------------------------------------------------------


class WorkerStopped(HyperlabError):
    """A worker stopped because the study's storage or the tracking store stayed
    unreachable. Picklable with its fix, since it crosses from a joblib worker process."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problem, self.fix))


def stopped_for(e: HyperlabError) -> WorkerStopped:
    """A worker's stop for a tracking store it could not write."""
    return WorkerStopped(
        e.problem, f"{e.fix}; then run the same command again: the study resumes where it is"
    )


@dataclass
class Retry:
    """Calls to the study's storage, retried with backoff while it does not answer.

    Waits 0.5, 1, 2 ... seconds (at most 30 between tries) for up to `seconds` in all,
    then raises WorkerStopped: a worker stops cleanly rather than spin or print a traceback.
    A journal or lock file that cannot be written (a full disk, a read-only or deleted
    directory) is not retried: it stops the worker at once, naming the file and the fix.
    Counts its retries, for the worker's summary."""

    url: str
    seconds: float
    retries: int = 0

    def __call__(self, what: str, fn: Callable[[], T]) -> T:
        from hyperlab.display import error_console, plain
        from hyperlab.retry import GaveUp, with_backoff
        from hyperlab.search.journal import JournalError

        def retried(e: BaseException) -> bool:
            if isinstance(e, OSError) and not transient(e):
                raise _unwritable(what, e) from None  # the budget lock's file, by the journal
            return transient(e)

        def retrying(e: BaseException, delay: float) -> None:
            self.retries += 1
            error_console.print(
                f"[yellow]storage:[/] {what} failed ({plain(first_line(e))}); "
                f"retrying in {delay:g} s",
                markup=True,
                highlight=False,
            )

        try:
            return with_backoff(fn, transient=retried, seconds=self.seconds, on_retry=retrying)
        except JournalError as e:
            raise WorkerStopped(e.problem, e.fix) from None
        except GaveUp as e:
            raise self.stopped(what, e.cause, e.waited) from None

    def stopped(self, what: str, e: BaseException, waited: float) -> WorkerStopped:
        return WorkerStopped(
            f"the study's storage {stores.where(self.url)} did "
            f"not answer for {waited:.0f} s ({what}: {first_line(e)})",
            "the trials it recorded are kept; once it is back, run the same command "
            "again to resume the study (sweep.retry_seconds sets how long workers wait)",
        )


def _unwritable(what: str, e: OSError) -> WorkerStopped:
    from hyperlab.search.journal import RESUME

    name = f" {e.filename}" if e.filename else ""
    return WorkerStopped(
        f"{what} failed: the file{name} could not be written ({e.strerror or e})",
        f"free space on its disk, or make its directory writable; {RESUME}",
    )
