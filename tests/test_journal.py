"""Journal files that a crash, a full disk or a deleted directory leave behind: a damaged
last line is cut back to the last complete record (a byte-exact backup kept beside it),
a damaged line in the middle is refused, and a write that fails stops the worker with the
file and the fix, never a traceback; what was told to the study before is all kept."""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileSymlinkLock, JournalStorage
from optuna.trial import TrialState

from hyperlab.errors import ConfigError
from hyperlab.search import journal
from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from services import finish, start_hyperlab

HYPERLAB = str(Path(sys.executable).parent / "hyperlab")
STUDY = ["search=lr", "dataset=moons", "dataset.n_samples=200", "epochs=1"]


def record(n: int) -> bytes:
    return json.dumps({"op_code": 0, "worker_id": "w", "n": n}).encode() + b"\n"


GOOD = record(1) + record(2) + record(3)


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".broken-*"))


# --- the repair, on hand-made files ----------------------------------------------------------


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


# --- the storage: repaired when opened and before each append --------------------------------


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


# --- through the hyperlab command -----------------------------------------------------------


def hyperlab(cwd: Path, *args: str, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:  # files may not grow past fsize bytes: EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [HYPERLAB, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"},
        timeout=900,
        preexec_fn=limit,
    )


def trials_of(path: Path) -> list[optuna.trial.FrozenTrial]:
    (name,) = optuna.get_all_study_names(st.storage(str(path)))
    return optuna.load_study(study_name=name, storage=st.storage(str(path))).get_trials()


def parent_runs(cwd: Path) -> list[object]:
    c = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def clean_stop(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode != 0, r.stdout[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-4000:]
    for w in words:
        assert w in r.stderr, r.stderr[-4000:]


def check_resumed(path: Path, before: list[optuna.trial.FrozenTrial], n: int) -> None:
    """Every trial complete before the damage is complete still, with its value and
    params; the study holds exactly n finished trials."""
    after = {t.number: t for t in trials_of(path)}
    for t in before:
        if t.state == TrialState.COMPLETE:
            assert after[t.number].state == TrialState.COMPLETE
            assert (after[t.number].value, after[t.number].params) == (t.value, t.params)
    assert sum(t.state.is_finished() and t.state != TrialState.FAIL for t in after.values()) == n


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "not-json"])
def test_a_damaged_journal_is_repaired_and_the_study_resumes_to_n_trials(
    tmp_path: Path, damage: str
) -> None:
    """`truncate -s -40 journal.log` (a crash mid-write), or a non-JSON last line, then the
    same study command with more trials: nothing told before is lost."""
    r = hyperlab(tmp_path, *STUDY, "sweep.n_trials=4")
    assert r.returncode == 0, r.stderr
    path = tmp_path / DEFAULT_JOURNAL
    before = trials_of(path)
    assert [t.state for t in before] == [TrialState.COMPLETE] * 4
    if damage == "truncate":
        os.truncate(path, path.stat().st_size - 40)
    else:
        with path.open("ab") as f:
            f.write(b"Traceback (most recent call last): something wrote here\n")
    damaged = path.read_bytes()

    r = hyperlab(tmp_path, *STUDY, "sweep.n_trials=6")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    notices = [line for line in r.stderr.splitlines() if "cut back" in line]
    assert len(notices) == 1, r.stderr
    (backup,) = backups(path)
    assert backup.read_bytes() == damaged and str(backup) in notices[0]
    check_resumed(path, before, 6)
    (parent,) = parent_runs(tmp_path)
    assert parent.info.status == "FINISHED"  # type: ignore[attr-defined]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 KiB tmpfs (root only); unmounted at the end."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mount.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_worker_cleanly_and_the_rerun_repairs_and_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    """The journal on a 4 KiB disk: ENOSPC mid-study stops the worker with the path and
    the fix (exit non-zero, no traceback); with room again, the same command repairs the
    line the failed write left and completes the study."""
    args = [*STUDY, "sweep.n_trials=6", f"sweep.storage={small_disk}/journal.log"]
    r = hyperlab(tmp_path, *args)
    clean_stop(r, "No space left on device (ENOSPC)", str(small_disk), "free space")
    path = small_disk / "journal.log"
    before = trials_of(path)
    assert path.stat().st_size == 4096 and not path.read_bytes().endswith(b"\n")
    damaged = path.read_bytes()

    subprocess.run(["mount", "-o", "remount,size=1m", str(small_disk)], check=True)
    r = hyperlab(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    assert "cut back" in r.stderr
    (backup,) = backups(path)
    assert backup.read_bytes() == damaged
    check_resumed(path, before, 6)


@pytest.mark.slow
def test_a_file_size_limit_stops_the_worker_cleanly_and_the_rerun_resumes(
    tmp_path: Path,
) -> None:
    """EFBIG (RLIMIT_FSIZE) instead of ENOSPC: the same clean stop, the same resume.
    Without MLflow, whose database is past any small limit from the start."""
    args = [*STUDY, "sweep.n_trials=8", "tracking.enabled=false"]
    r = hyperlab(tmp_path, *args, fsize=6000)
    clean_stop(r, "File too large (EFBIG)", "raise the file size limit")
    path = tmp_path / DEFAULT_JOURNAL
    before = trials_of(path)
    r = hyperlab(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    check_resumed(path, before, 8)


# --- outputs/ read-only, or deleted mid-study -----------------------------------------------


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Makes a directory read-only with a read-only bind mount of itself (root ignores
    permission bits, so chmod cannot); unmounted at the end."""
    mounted: list[Path] = []

    def make(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for cmd in (["--bind"], ["-o", "remount,bind,ro"]):
            r = subprocess.run(
                ["mount", *cmd, str(directory), str(directory)], capture_output=True, text=True
            )
            if r.returncode:
                pytest.skip(f"cannot make a read-only bind mount here: {r.stderr.strip()}")
            if cmd == ["--bind"]:
                mounted.append(directory)

    yield make
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["dataset=moons", "epochs=1"],
        [*STUDY, "sweep.n_trials=2"],
        ["-m", "dataset=moons", "epochs=1,2"],
    ],
    ids=["run", "study", "multirun"],
)
def test_a_read_only_outputs_is_refused_before_anything_runs(
    tmp_path: Path, read_only: Callable[[Path], None], args: list[str]
) -> None:
    read_only(tmp_path / "outputs")
    r = hyperlab(tmp_path, *args)
    clean_stop(r, "cannot be created: outputs is on a read-only file system", "fix:")
    assert r.returncode == 2 and "training" not in r.stdout


@pytest.mark.slow
def test_a_study_in_a_read_only_journal_stops_cleanly_and_changes_nothing(
    tmp_path: Path, read_only: Callable[[Path], None]
) -> None:
    """The study's outputs are elsewhere (writable), its journal on a read-only disk."""
    store = tmp_path / "store"
    args = [*STUDY, f"sweep.storage={store}/journal.log", "tracking.enabled=false"]
    assert hyperlab(tmp_path, *args, "sweep.n_trials=2").returncode == 0
    before = (store / "journal.log").read_bytes()
    read_only(store)
    r = hyperlab(tmp_path, *args, "sweep.n_trials=4")
    clean_stop(r, str(store), "Read-only file system")
    assert (store / "journal.log").read_bytes() == before


@pytest.mark.slow
def test_outputs_deleted_mid_study_stops_the_worker_with_what_happened(tmp_path: Path) -> None:
    """`rm -rf outputs` while a study trains: the worker stops at its next write, saying
    that the journal was deleted (not starting a new one in its place), without a
    traceback; nothing is re-created under outputs/."""
    args = [*STUDY, "epochs=100", "dataset.n_samples=300", "sweep.n_trials=8"]
    proc = start_hyperlab(tmp_path, *args)
    path = tmp_path / DEFAULT_JOURNAL
    deadline = time.monotonic() + 300
    while b'"state":1' not in (path.read_bytes() if path.exists() else b""):
        assert proc.poll() is None and time.monotonic() < deadline, "no trial completed"
        time.sleep(0.3)
    while (tmp_path / "outputs").exists():  # the study may be writing in it meanwhile
        shutil.rmtree(tmp_path / "outputs", ignore_errors=True)
    code, _, err = finish(proc)
    assert code != 0
    assert "Traceback" not in err, err[-4000:]
    assert f"the study journal {path} was deleted" in err, err[-4000:]
    assert not path.exists() and not (tmp_path / "outputs" / "optuna").exists()
