"""Nothing runs from a shared file: every `_target_` a config names passes an allowlist
before anything is built or recorded, and the overrides a checkpoint or a study stores are
data that pass it too (issue 11, section 1).

The three attacks of the issue run as real commands: a `_target_` on the command line that
would truncate a file, a checkpoint whose stored overrides would run a pickle, and a study
whose replay line would. Each is refused (exit 2, the key or the file named), the victim
file is unchanged, the pickle's payload (it creates a marker file) never runs, and the
MLflow store and the journal are byte for byte as they were.

Here: through the `hyperlab` command;
unit/test_allowlist.py and integration/test_allowlist.py hold the rest."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from support.command import hyperlab as run_hyperlab
from support.hostile import REPLAYS, fake_checkpoint, pickle_overrides, shared_study


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow store that already holds a finished run."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    c = MlflowClient(f"sqlite:///{db}")
    run = c.create_run(c.create_experiment("hyperlab"))
    c.log_param(run.info.run_id, "lr", "0.1")
    c.set_terminated(run.info.run_id)
    return db


def recorded(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("select run_uuid, status, end_time from runs order by 1").fetchall()


def hyperlab(cwd: Path, *args: str, pythonpath: Path | None = None) -> CompletedProcess[str]:
    """The command, quiet and on wide lines, with `pythonpath` (a user's package) on
    PYTHONPATH."""
    env = {"PYTHONPATH": str(pythonpath)} if pythonpath else {}
    return run_hyperlab(cwd, *args, "progress=false", env=env, columns=300, timeout=300)


def refused(r: subprocess.CompletedProcess[str], *parts: str) -> None:
    message = " ".join(r.stderr.split())
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "fix:" in message
    for part in parts:
        assert part in message, r.stderr


def test_a_target_on_the_command_line_cannot_truncate_a_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    db = tmp_path / "outputs" / "mlflow.db"
    r = hyperlab(
        tmp_path,
        "dataset._target_=builtins.open",
        "+dataset.file=victim.txt",
        "+dataset.mode=w",
        "epochs=1",
    )
    refused(r, "dataset._target_=builtins.open is not allowed", "hyperlab.data.", "allow_targets")
    assert victim.read_text() == "precious"
    assert not db.exists()  # refused before the tracking store was opened


@pytest.mark.slow
def test_a_checkpoint_cannot_run_a_pickle(tmp_path: Path, store: Path) -> None:
    marker = tmp_path / "marker"
    ckpt = fake_checkpoint(tmp_path / "shared.pt", pickle_overrides(marker))
    before = recorded(store)
    r = hyperlab(tmp_path, f"resume={ckpt}", "epochs=3", f"tracking.uri=sqlite:///{store}")
    assert not marker.exists()  # the pickle never ran
    refused(r, f"checkpoint {ckpt}", "dataset._target_=torch.load is not allowed")
    assert recorded(store) == before


@pytest.mark.slow
def test_a_checkpoint_cannot_widen_its_own_allowlist(
    tmp_path: Path, store: Path, user_package: Path
) -> None:
    marker = tmp_path / "marker"
    (user_package / "evil.py").write_text(
        f"def boom():\n    open({str(marker)!r}, 'w')\n    return [], []\n"
    )
    ckpt = fake_checkpoint(
        tmp_path / "shared.pt", ["allow_targets=[evil.]", "dataset._target_=evil.boom"]
    )
    before = recorded(store)
    r = hyperlab(
        tmp_path,
        f"resume={ckpt}",
        "epochs=3",
        f"tracking.uri=sqlite:///{store}",
        pythonpath=user_package,
    )
    assert not marker.exists()
    refused(r, f"checkpoint {ckpt}", "dataset._target_=evil.boom is not allowed")
    assert "allow_targets (empty)" in " ".join(r.stderr.split())
    assert recorded(store) == before


@pytest.mark.slow
@pytest.mark.parametrize("case", REPLAYS)
def test_a_study_cannot_run_code_or_bad_values_from_its_replay_lines(
    tmp_path: Path, store: Path, case: str
) -> None:
    line, message = REPLAYS[case]
    marker = tmp_path / "marker"
    journal = tmp_path / "shared.log"
    shared_study(journal, line(marker))
    before, data = recorded(store), journal.read_bytes()
    r = hyperlab(
        tmp_path,
        "task=retest",
        "study=shared",
        f"sweep.storage={journal}",
        "epochs=2",
        f"tracking.uri=sqlite:///{store}",
    )
    assert not marker.exists()
    refused(r, f"study 'shared' in {journal}", "trial 0's stored replay line is refused", message)
    assert journal.read_bytes() == data
    assert recorded(store) == before


@pytest.mark.slow
def test_allow_targets_on_the_command_line_trains_a_users_data_set(
    tmp_path: Path, store: Path, user_package: Path
) -> None:
    args = ["dataset._target_=mypkg.data.load", "epochs=1", f"tracking.uri=sqlite:///{store}"]
    before = recorded(store)
    r = hyperlab(tmp_path, *args, pythonpath=user_package)
    refused(r, "dataset._target_=mypkg.data.load is not allowed")
    assert recorded(store) == before
    r = hyperlab(tmp_path, "allow_targets=[mypkg.]", *args, pythonpath=user_package)
    assert r.returncode == 0, r.stderr
    assert len(recorded(store)) == len(before) + 1
