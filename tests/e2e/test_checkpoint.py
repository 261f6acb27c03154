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
    assert [m.step for m in lr] == [4, 5, 6]  # the curves join in the MLflow UI
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
