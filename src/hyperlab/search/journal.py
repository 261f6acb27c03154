"""Optuna journal files that survive a crash or a full disk mid-write.

Optuna's reader skips a last line cut short (or not JSON), but a writer that appends after
it glues its record onto that line, and from then on every read of the file fails: every
study in it is lost. So before anyone appends, under the journal's own lock, a damaged last
line is cut off (the file is copied beside it first, byte for byte, and a line says so).
A bad line in the middle is refused, never dropped: the records after it are the user's.

Writes that fail (a full disk, a read-only or deleted directory) raise JournalError, which
names the file and the fix, instead of an OSError from deep inside Optuna.

A stop signal (hyperlab.stops) never cuts a write or the lock around it: Optuna's symlink
lock, cut by an exception, releases a lock it may not hold (another writer's) and, cut
inside its release, unlinks a file already gone; the FileNotFoundError then hides the stop,
and the worker trains on. A stop inside a write is raised once the write is done.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from hyperlab import stops
from hyperlab.errors import ConfigError, HyperlabError

RESUME = "then run the same command again: the study resumes where it is"
_BLOCK = 1 << 16  # bytes read at a time, backwards, to find the last line


class JournalError(HyperlabError):
    """The study's journal file could not be written or read. Picklable with its fix, since
    it crosses from a joblib worker process."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problem, self.fix))


@dataclass(frozen=True)
class Repair:
    """A journal cut back to its last complete record."""

    path: Path
    backup: Path  # the damaged file, byte for byte
    kept: int  # complete records kept
    dropped: int  # bytes cut off the end

    def notice(self) -> str:
        return (
            f"journal: {self.path} ended in an incomplete or unreadable line ({self.dropped} "
            f"bytes, left by a crash or a full disk); cut back to its last complete record "
            f"(line {self.kept}), the damaged file is kept as {self.backup}"
        )


def is_record(line: bytes) -> bool:
    """Whether `line` is a complete journal record: a JSON object with an op_code, ending
    in a newline (Optuna's reader skips a line without one)."""
    if not line.endswith(b"\n"):
        return False
    try:
        record = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return False
    return isinstance(record, dict) and "op_code" in record


def repair(path: Path) -> Repair | None:
    """Cut a journal whose last line is incomplete or not a record back to its last
    complete record, after copying it beside itself (`<name>.broken-<time>`); None when
    the file is whole (then nothing is written). Under the journal's lock, so that the line
    of a writer appending right now is never taken for a broken one.

    Raises ConfigError when a line before the last is bad (nothing is changed), and
    JournalError when the file cannot be read, copied or cut."""
    path = Path(path).resolve()
    try:
        if _tail_is_whole(path):  # the usual case, seen without waiting for the lock
            return None
        with locked(path):
            if _tail_is_whole(path):  # it was a live writer's line, now complete
                return None
            return _repair_locked(path)
    except OSError as e:
        raise write_error(path, e, "repairing") from None


def _tail_is_whole(path: Path) -> bool:
    if not path.exists():
        return True
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        return size == 0 or is_record(_read_from(f, _last_line_start(f, size)))


def _repair_locked(path: Path) -> Repair:
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        cut = _last_line_start(f, size)
        f.seek(0)
        kept = _check_lines(path, f, cut)
    backup = _backup(path)
    try:
        os.truncate(path, cut)
        with path.open("rb+") as f:
            os.fsync(f.fileno())
    except OSError:
        backup.unlink(missing_ok=True)
        raise
    return Repair(path, backup, kept, size - cut)


def _last_line_start(f: BinaryIO, size: int) -> int:
    """The offset where the file's last line starts (the line after the last newline
    before the final byte)."""
    end = size - 1  # the final byte may be the last line's own newline
    while end > 0:
        start = max(0, end - _BLOCK)
        f.seek(start)
        found = f.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _read_from(f: BinaryIO, offset: int) -> bytes:
    f.seek(offset)
    return f.read()


def _check_lines(path: Path, f: BinaryIO, end: int) -> int:
    """The number of lines from the file's position to offset `end`; ConfigError naming
    the first that is not a record."""
    number = 0
    while f.tell() < end:
        number += 1
        if not is_record(f.readline()):
            raise bad_line(path, number)
    return number


def first_bad_line(path: Path) -> int | None:
    """The number of the first line of a journal, other than the last, that is not a
    complete record; None if there is none (Optuna's reader skips a bad last line)."""
    with Path(path).open("rb") as f:
        end = _last_line_start(f, os.fstat(f.fileno()).st_size)
        f.seek(0)
        number = 0
        while f.tell() < end:
            number += 1
            if not is_record(f.readline()):
                return number
    return None


def bad_line(path: Path, number: int) -> ConfigError:
    return ConfigError(
        f"the study journal {path} has a damaged line {number} in its middle (not a "
        "complete Optuna record), so Optuna cannot read it; nothing was changed",
        f"keep a copy, then keep only the lines before it (head -n {number - 1} {path} > "
        f"{path}.fixed, and use sweep.storage={path}.fixed): the records after it are lost "
        "that way, so restore the file from a backup if you have one",
    )


def _backup(path: Path) -> Path:
    """A byte-exact copy of `path` beside it, under a name no other file has."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        backup = path.with_name(f"{path.name}.broken-{stamp}" + (f"-{n}" if n else ""))
        try:
            out = backup.open("xb")
        except FileExistsError:
            continue
        try:
            with out, path.open("rb") as src:
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
        except OSError:
            backup.unlink(missing_ok=True)
            raise
        return backup
    raise FileExistsError(errno.EEXIST, "no free backup name", str(path))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the journal's lock: the one Optuna's JournalFileBackend takes around each
    append (a symlink `<path>.lock`; one left by a killed writer is broken after 30 s)."""
    lock = JournalFileSymlinkLock(str(path))
    with stops.held():
        lock.acquire()
        try:
            yield
        finally:
            lock.release()


def write_error(path: Path, e: OSError, doing: str = "writing") -> JournalError:
    """A JournalError for an OSError met on the journal `path`, naming the cause and fix."""
    what = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = f"free space on the disk of {path.parent} (or raise the file size limit), {RESUME}"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = f"make {path.parent} writable, or give sweep.storage= a journal elsewhere; {RESUME}"
    elif not path.parent.exists() or e.errno == errno.ENOENT:
        return deleted(path)
    else:
        fix = f"check the file and its disk, {RESUME}"
    where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
    return JournalError(
        f"the study journal {path} could not be {_past(doing)}: {what}{where} "
        f"({errno.errorcode.get(e.errno or 0, e.errno)})",
        fix,
    )


def _past(doing: str) -> str:
    return {"writing": "written", "reading": "read", "repairing": "checked or repaired"}[doing]


def deleted(path: Path) -> JournalError:
    return JournalError(
        f"the study journal {path} was deleted (or moved) while the study ran: the trials "
        "it recorded are not in that place any more, and this worker stopped rather than "
        "start a new journal there",
        "put the file back and run the same command again to resume the study, or run "
        "it again without the file to start the study anew",
    )


_opened: set[Path] = set()  # journals this process opened: one gone since was deleted


def backend(path: Path) -> GuardedJournal:
    """Optuna's journal file backend on `path` (see GuardedJournal). A journal this process
    opened before and that is gone now was deleted under the study: JournalError, rather
    than a new, empty journal in its place."""
    path = Path(path).resolve()
    if path in _opened and not path.exists():
        raise deleted(path)
    b = GuardedJournal(path)
    _opened.add(path)
    return b


class GuardedJournal(JournalFileBackend):
    """Optuna's journal file backend, which also repairs a damaged last line before each
    append (under the lock, see _Lock), refuses to read or write a file deleted or
    replaced since it was opened, and raises JournalError for an OSError."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._guard = _Lock(path)
        try:
            super().__init__(str(path), lock_obj=self._guard)
        except OSError as e:
            raise write_error(path, e, "reading") from None
        self._guard.inode = _identity(path)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        if _identity(self._path) != self._guard.inode:
            raise deleted(self._path)
        try:
            yield from super().read_logs(log_number_from)
        except OSError as e:
            raise write_error(self._path, e, "reading") from None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        try:
            with stops.held():
                if _unsynced is None:
                    super().append_logs(logs)
                else:
                    self._append_unsynced(logs)
        except OSError as e:
            raise write_error(self._path, e) from None

    def _append_unsynced(self, logs: list[dict[str, Any]]) -> None:
        """Optuna's append (under the lock, whole lines), without its fsync: synced_once."""
        assert _unsynced is not None
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        self._guard.acquire()
        try:
            with self._path.open("ab") as f:
                f.write(text.encode("utf-8"))
        finally:
            self._guard.release()
        _unsynced.add(self._path)


# Journals appended to without fsync inside synced_once(), to be synced when it ends.
_unsynced: set[Path] | None = None


@contextlib.contextmanager
def synced_once() -> Iterator[None]:
    """Journal appends inside are written at once, whole lines under the lock, so other
    workers read them and a killed process loses none, but reach the disk with one fsync
    when the block ends instead of one each.

    A worker's claim of K trials, their samples, and their tells are each a block: a trial
    costs about nine appends, and each fsync about a millisecond, more than a small stack
    spends training a trial. What a power cut could lose is the block in progress: trials
    that then run again on resume."""
    global _unsynced
    if _unsynced is not None:  # nested: the outer block syncs
        yield
        return
    _unsynced = set()
    try:
        yield
    finally:
        paths, _unsynced = _unsynced, None
        for path in paths:
            try:
                with stops.held():
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            except FileNotFoundError:  # deleted: the next read or write says so
                pass
            except OSError as e:
                raise write_error(path, e) from None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class _Lock(JournalFileSymlinkLock):
    """Optuna's symlink lock on the journal, which, once held, checks that the file is
    still the one opened and that its last line is whole, repairing it if not: a worker
    that died mid-append (a full disk) must not have the next record glued onto its line."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path
        self.inode: tuple[int, int] | None = None

    def acquire(self) -> bool:
        super().acquire()
        try:
            if _identity(self.path) != self.inode:
                raise deleted(self.path)
            if not _tail_is_whole(self.path):
                _notify(_repair_locked(self.path))
        except BaseException:
            self.release()
            raise
        return True


def _notify(r: Repair) -> None:
    from rich.markup import escape

    from hyperlab.display import error_console

    error_console.print(f"[yellow]{escape(r.notice())}[/]", soft_wrap=True)


def repair_and_notify(path: Path) -> Repair | None:
    """repair(path), printing one line on stderr when the journal was repaired."""
    r = repair(path)
    if r is not None:
        _notify(r)
    return r
