"""Journal files that a crash, a full disk or a deleted directory leave behind: a damaged
last line is cut back to the last complete record (a byte-exact backup kept beside it),
a damaged line in the middle is refused, and a write that fails stops the worker with the
file and the fix, never a traceback; what was told to the study before is all kept.

Here: through the `hyperlab` command; unit/test_journal.py holds the rest."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import finish, hyperlab, start_hyperlab
from support.records import backups

STUDY = ["search=lr", "dataset=moons", "dataset.n_samples=200", "epochs=1"]


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
