"""Panda mode: checkpoints every N epochs, and resuming with nudged hyperparameters.

Here: through the `hyperlab` command;
unit/test_checkpoint.py and integration/test_checkpoint.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from support.checkpoints import BROKEN, edited, trained
from support.command import hyperlab
from support.paths import Compose


@pytest.fixture
def checkpoint(cfg: Compose, tmp_path: Path) -> Path:
    return trained(cfg, tmp_path)


@pytest.mark.slow
def test_resume_by_run_id_nudges_the_rate_in_a_linked_run(tmp_path: Path) -> None:
    first = hyperlab(tmp_path, "dataset=moons", "epochs=4", "checkpoint.every=2", "lr=0.01")
    assert first.returncode == 0, first.stderr
    c = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    (original,) = c.search_runs(["1"])
    second = hyperlab(tmp_path, f"resume={original.info.run_id}", "lr=3e-3", "epochs=7")
    assert second.returncode == 0, second.stderr
    resumed = next(r for r in c.search_runs(["1"]) if r.info.run_id != original.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["hyperlab.resumed_from"] == original.info.run_id
    assert resumed.data.tags["hyperlab.resumed_at_epoch"] == "4"
    # The original's settings carry over; the nudged ones replace theirs.
    assert resumed.data.params["dataset"] == "moons" and resumed.data.params["lr"] == "0.003"
    lr = c.get_metric_history(resumed.info.run_id, "lr")
    assert [m.step for m in lr] == [5, 6, 7]  # the curves join in the MLflow UI
    assert {m.value for m in lr} == {3e-3}
    bad = hyperlab(tmp_path, f"resume={tmp_path / 'nothing'}", "epochs=9")
    assert bad.returncode == 2 and "not an MLflow run id" in bad.stderr
    assert len(c.search_runs(["1"])) == 2  # the bad resume recorded nothing


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no epoch", "negative epoch", "text", "grammar"])
def test_the_command_refuses_a_broken_checkpoint(
    checkpoint: Path, tmp_path: Path, case: str
) -> None:
    path = tmp_path / "broken.pt"
    if case == "text":
        path.write_text("a text file, not a checkpoint\n")
    elif case == "grammar":
        edited(checkpoint, path, overrides=["dataset=moons", "lr=[1,2"])
    else:
        edited(checkpoint, path, **BROKEN[case][0])
    db = tmp_path / "outputs" / "mlflow.db"
    r = hyperlab(tmp_path, f"resume={path}", "epochs=4", "progress=false")
    message = " ".join(r.stderr.split())
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert str(path) in message and "fix:" in message
    assert not db.exists()  # refused before the tracking store was opened


@pytest.mark.slow
def test_panda_mode_names_its_files_and_resume_last_continues_the_newest_run(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "outputs" / "runs"
    first = hyperlab(tmp_path, "dataset=moons", "epochs=4", "checkpoint.every=2", columns=80)
    assert first.returncode == 0, first.stderr
    (run_dir,) = runs.iterdir()
    lines = first.stdout.splitlines()
    # The header first, printed before torch is imported; the data once it is loaded.
    assert lines[:3] == [
        "hyperlab mlp on moons, adam lr=0.001, 4 epochs, batch 64",
        "data: 700 train / 150 dev / 150 test, 2 features, 2 classes",
        f"run dir: {run_dir}",  # one line, never wrapped, at 80 columns
    ]
    saved = [f"checkpoint: {run_dir / 'checkpoints' / f'epoch_{e:04d}.pt'}" for e in (2, 4)]
    assert [line for line in lines if line.startswith("checkpoint:")] == saved
    # A refused command, and a task that keeps no files, leave no run dir behind.
    assert hyperlab(tmp_path, "lr=-1").returncode == 2
    assert hyperlab(tmp_path, "task=studies").returncode == 0
    assert list(runs.iterdir()) == [run_dir]
    second = hyperlab(tmp_path, "resume=last", "epochs=6", columns=80)
    assert second.returncode == 0, second.stderr
    assert f"resumed from {run_dir / 'checkpoints' / 'epoch_0004.pt'} (MLflow run " in second.stdout
    assert "after epoch 4: training epochs 5 to 6" in second.stdout
    assert [
        line.split()[:2] for line in second.stdout.splitlines() if line.startswith("epoch")
    ] == [
        ["epoch", "5"],
        ["epoch", "6"],
    ]
    c = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    resumed = next(r for r in c.search_runs(["1"]) if "hyperlab.resumed_from" in r.data.tags)
    assert resumed.data.tags["hyperlab.resumed_at_epoch"] == "4"
    assert resumed.data.metrics["best_epoch"] in range(1, 7)


@pytest.mark.slow
def test_resume_last_without_a_checkpoint_says_how_to_make_one(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "resume=last", "epochs=6")
    assert r.returncode == 2
    assert "resume=last: no run in" in r.stderr and "checkpoint.every=N" in r.stderr
    assert not any((tmp_path / "outputs" / "runs").iterdir())
