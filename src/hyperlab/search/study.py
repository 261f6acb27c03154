"""Studies: where they are stored, what they are named, and how workers claim trials.

The default storage is an Optuna journal file under outputs/: append-only, so it survives
a crash, and locked, so several local workers share it. Any Optuna RDB URL
(postgresql://..., sqlite:///...) works as well and serves workers on several machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hyperlab.errors import ConfigError

if TYPE_CHECKING:
    import optuna

DEFAULT_JOURNAL = "outputs/optuna/journal.log"
FINISHED = ("COMPLETE", "PRUNED")
HOST_ATTR, PID_ATTR = "hyperlab:host", "hyperlab:pid"
DEAD_WORKER = "its worker process died (killed?)"


def journal_path(url: str) -> Path | None:
    """The journal file a storage URL names (a path, or empty for the default), else None."""
    if not url:
        return Path(DEFAULT_JOURNAL)
    if "://" in url:
        return None
    return Path(url)


def storage(url: str, heartbeat_seconds: int = 60) -> optuna.storages.BaseStorage:
    """The Optuna storage for `url`: a journal file path (default outputs/optuna/journal.log)
    or an RDB URL, which also gets a heartbeat so that a dead worker's trial is failed."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Absolute: Optuna's lock is a symlink to this path, and a relative one dangles, so
        # a lock left by a killed worker would never be seen as stale (it spins forever).
        return JournalStorage(JournalFileBackend(str(path.resolve())))
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat_seconds, grace_period=2 * heartbeat_seconds
        )
    except Exception as e:
        raise ConfigError(
            f"sweep.storage={masked(url)} cannot be opened: {type(e).__name__}: {e}",
            "give a journal file path or a reachable database URL "
            "(postgresql://user@host/db, sqlite:///path.db)",
        ) from None


def masked(url: str) -> str:
    """The URL with any password replaced by ***."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def study_name(search: str, overrides: Sequence[str]) -> str:
    """A name fixed by what defines the study: the search space and the overrides that
    change the trials (sampler, pruner, data, model...), not how many trials or workers run.
    The same command, run again, resumes the same study."""
    defining = sorted(
        o
        for o in overrides
        if not o.lstrip("+~").startswith(("sweep.", "hydra.", "hydra/", "search=", "progress="))
    )
    digest = hashlib.sha1("\n".join(defining).encode()).hexdigest()[:8]
    return f"{search}-{digest}"


@contextlib.contextmanager
def budget_lock(url: str) -> Iterator[None]:
    """Serializes "count the trials, then ask for one" among workers on this machine that
    share a file storage; an RDB serves workers on several machines, where the trial
    numbers settle any race (see claim())."""
    path = journal_path(url)
    if path is None and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
    if path is None:
        yield
        return
    lock = path.with_name(path.name + ".budget.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker process on this machine no longer exists (killed),
    so they neither count against the budget nor stay RUNNING forever. On an RDB, Optuna's
    heartbeat does the same for workers on other machines."""
    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = int(t.user_attrs.get(PID_ATTR, 0))
        if t.user_attrs.get(HOST_ATTR) == host and pid and not _alive(pid):
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study._storage.set_trial_user_attr(t._trial_id, "fail_reason", DEAD_WORKER)
                study.tell(t.number, state=TrialState.FAIL)
                failed.append(t.number)
    return failed


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state name."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def claim(study: optuna.Study, url: str, n_trials: int) -> optuna.Trial | None:
    """A new trial if the study still needs one, else None.

    `n_trials` counts the study's finished (complete or pruned) trials, whoever ran them;
    running trials count too, since they will finish. Failed trials do not: the study
    runs another in their place."""
    import optuna

    with budget_lock(url):
        fail_dead_trials(study)
        grid = study.sampler
        if isinstance(grid, optuna.samplers.GridSampler) and grid.is_exhausted(study):
            return None
        c = counts(study)
        if sum(c.get(s, 0) for s in (*FINISHED, "RUNNING", "WAITING")) >= n_trials:
            return None
        trial = study.ask()
    trial.set_user_attr(HOST_ATTR, socket.gethostname())
    trial.set_user_attr(PID_ATTR, os.getpid())
    return trial
