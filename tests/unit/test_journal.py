"""Journal files that a crash, a full disk or a deleted directory leave behind: a damaged
last line is cut back to the last complete record (a byte-exact backup kept beside it),
a damaged line in the middle is refused, and a write that fails stops the worker with the
file and the fix, never a traceback; what was told to the study before is all kept.

Here: the pieces on their own; e2e/test_journal.py holds the rest."""

from __future__ import annotations

import json
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileSymlinkLock, JournalStorage

from hyperlab import stops
from hyperlab.errors import ConfigError
from hyperlab.search import journal
from hyperlab.search import study as st
from support.records import backups


def record(n: int) -> bytes:
    return json.dumps({"op_code": 0, "worker_id": "w", "n": n}).encode() + b"\n"


GOOD = record(1) + record(2) + record(3)


@pytest.mark.parametrize("content", [GOOD, b""], ids=["records", "empty"])
def test_a_whole_journal_is_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "journal.log"
    path.write_bytes(content)
    assert journal.repair(path) is None
    assert path.read_bytes() == content
    assert backups(path) == []


@pytest.mark.parametrize(
    "tail",
    [
        record(4)[:-15],  # cut short: no newline
        record(4)[:-1],  # a whole record but its newline: Optuna never read it
        b"this is not json\n",  # a whole line, not JSON
        b"[1, 2]\n",  # JSON, but not a record
        b"\xff\xfe\n",  # not even UTF-8
    ],
    ids=["cut-short", "no-newline", "not-json", "not-a-record", "not-utf8"],
)
def test_a_damaged_last_line_is_cut_off_and_kept_in_a_backup(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "journal.log"
    path.write_bytes(GOOD + tail)
    r = journal.repair(path)
    assert r is not None
    assert path.read_bytes() == GOOD
    assert backups(path) == [r.backup]
    assert r.backup.read_bytes() == GOOD + tail
    assert (r.kept, r.dropped) == (3, len(tail))
    assert str(path.resolve()) in r.notice() and str(r.backup) in r.notice()
    assert journal.repair(path) is None  # now whole


def test_a_journal_of_one_cut_short_line_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    path.write_bytes(record(1)[:10])
    r = journal.repair(path)
    assert r is not None and path.read_bytes() == b"" and r.kept == 0


def test_a_long_last_line_is_found(tmp_path: Path) -> None:
    """The last line is searched for backwards, a block at a time."""
    path = tmp_path / "journal.log"
    long = json.dumps({"op_code": 5, "value": "x" * 200_000}).encode() + b"\n"
    path.write_bytes(GOOD + long + long[:150_000])
    r = journal.repair(path)
    assert r is not None and path.read_bytes() == GOOD + long and r.kept == 4


def optuna_lines(tmp_path: Path) -> list[bytes]:
    """The lines of a real journal: a study with two trials, written by Optuna alone."""
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "optuna.log"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))))
    for x in (1.0, 2.0):
        s.tell(s.ask(), x)
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("cut", [False, True], ids=["whole-last", "cut-last"])
def test_a_damaged_line_in_the_middle_is_refused_and_nothing_changes(
    tmp_path: Path, cut: bool
) -> None:
    lines = optuna_lines(tmp_path)
    path = tmp_path / "journal.log"
    content = b"".join([lines[0], b"garbage\n", *lines[1:]])
    if cut:
        content = content[:-9]
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"damaged line 2 in its middle") as e:
        if cut:
            journal.repair(path)
        else:  # the tail is whole: the repair has nothing to do, Optuna's reader meets it
            assert journal.repair(path) is None
            st.storage(str(path))
    assert str(path.resolve()) in e.value.problem and "head -n 1" in e.value.fix
    assert path.read_bytes() == content
    assert backups(path) == []
    assert journal.first_bad_line(path) == 2


def test_a_live_writers_line_is_not_taken_for_a_broken_one(tmp_path: Path) -> None:
    """A writer holding Optuna's lock is mid-append: the repair waits for the lock, then
    finds the line whole and leaves the file alone."""
    path = tmp_path / "journal.log"
    path.write_bytes(GOOD)
    lock = JournalFileSymlinkLock(str(path.resolve()))
    lock.acquire()
    with path.open("ab") as f:
        f.write(record(4)[:12])
        f.flush()
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(journal.repair(path)))
        t.start()
        time.sleep(0.5)  # the repair is now waiting for the lock (were it not, it would cut)
        f.write(record(4)[12:])
    lock.release()
    t.join()
    assert result == [None]
    assert path.read_bytes() == GOOD + record(4)
    assert backups(path) == []


def new_study(path: Path) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(study_name="s", storage=st.storage(str(path)))
    for x in (1.0, 2.0):
        t = s.ask()
        s.tell(t, x)
    return s


def test_storage_repairs_a_cut_journal_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.log"
    new_study(path)
    before = path.read_bytes()
    path.write_bytes(before + b'{"op_code":4,"worker_id":"x","tri')
    s = optuna.load_study(study_name="s", storage=st.storage(str(path)))
    assert "cut back to its last complete record" in capsys.readouterr().err
    assert path.read_bytes() == before
    s.tell(s.ask(), 3.0)  # appends after the repair are read back
    assert [t.value for t in st.storage(str(path)).get_all_trials(s._study_id)] == [1, 2, 3]


def test_an_append_after_a_line_cut_meanwhile_repairs_it_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another worker died mid-append while this one had the study open."""
    path = tmp_path / "journal.log"
    s = new_study(path)
    with path.open("ab") as f:
        f.write(b'{"op_code":4,"wor')
    s.tell(s.ask(), 3.0)
    assert "cut back" in capsys.readouterr().err
    fresh = optuna.load_study(study_name="s", storage=JournalStorage(journal.backend(path)))
    assert [t.value for t in fresh.trials] == [1.0, 2.0, 3.0]
    assert len(backups(path)) == 1


def test_a_journal_deleted_under_the_study_is_not_started_anew(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    s = new_study(path)
    path.unlink()
    with pytest.raises(journal.JournalError, match="was deleted") as e:
        s.tell(s.ask(), 3.0)
    assert "run the same command again" in e.value.fix
    with pytest.raises(journal.JournalError, match="was deleted"):
        st.storage(str(path))
    assert not path.exists()


def test_a_write_error_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    e = journal.write_error(path, OSError(28, os.strerror(28), str(path)))
    assert str(path) in e.problem and "No space left on device (ENOSPC)" in e.problem
    assert e.fix.startswith("free space") and "run the same command again" in e.fix
    again = pickle.loads(pickle.dumps(e))  # it crosses from a joblib worker
    assert isinstance(again, journal.JournalError) and again.fix == e.fix


@pytest.mark.parametrize("cut_in", ["symlink", "unlink"], ids=["taking the lock", "releasing it"])
def test_a_stop_inside_a_write_is_raised_once_the_write_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_in: str
) -> None:
    """SIGTERM while Optuna takes or releases the journal's lock (it came right after the
    lock's unlink in a CI run): unheld, Optuna's release unlinks the gone file again and the
    FileNotFoundError hid the stop, so the worker trained on. Held, the record is written,
    the lock is free, and the stop is raised after."""
    path = tmp_path / "journal.log"
    backend = journal.backend(path)
    real = getattr(os, cut_in)

    def then_signal(*args: object) -> None:
        real(*args)
        monkeypatch.setattr(os, cut_in, real)  # once
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, cut_in, then_signal)
    with stops.installed(), pytest.raises(stops.Stopped):
        backend.append_logs([{"op_code": 0, "worker_id": "w"}])
    assert path.read_bytes() == b'{"op_code":0,"worker_id":"w"}\n'
    assert not Path(f"{path}.lock").exists()


def test_appends_in_a_synced_block_are_read_at_once_and_synced_once_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's claim of K trials: another worker reads each record as it is appended
    (whole lines, under the lock), and the disk is synced once, when the block ends."""
    path = tmp_path / "journal.log"
    s = new_study(path)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    with journal.synced_once():
        for value in (3.0, 4.0, 5.0):
            s.tell(s.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), value)
            other = JournalStorage(journal.backend(path))  # another worker's reader
            assert other.get_all_trials(s._study_id)[-1].value == value
        assert synced == []
    assert len(synced) == 1
    s.tell(s.ask(), 6.0)  # outside a block: Optuna's own fsync for each of its two appends
    assert len(synced) == 3
    fresh = optuna.load_study(study_name="s", storage=JournalStorage(journal.backend(path)))
    assert [t.value for t in fresh.trials] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
