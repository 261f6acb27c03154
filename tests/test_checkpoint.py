"""Panda mode: checkpoints every N epochs, and resuming with nudged hyperparameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from conftest import Compose
from hyperlab.checkpoint import CheckpointError, load, locate
from hyperlab.errors import ConfigError
from hyperlab.run import Job, run
from hyperlab.tracking import drain
from test_cli import hyperlab

# Momentum's velocity, dropout's masks, batch norm's running averages and a decaying
# rate: every state a resume must carry over.
STATEFUL = (
    "dataset=moons",
    "optimizer=momentum",
    "lr=0.05",
    "regularization=dropout",
    "normalization=batchnorm",
    "schedule=inverse_time",
    "objective.metric=dev_loss",
    "objective.direction=minimize",
)


def test_a_resumed_run_continues_exactly_where_the_checkpoint_left(
    cfg: Compose, tmp_path: Path
) -> None:
    straight = run(cfg(*STATEFUL, "epochs=6", "checkpoint.every=3"), Job(output_dir=tmp_path / "a"))
    straight_value = straight.objective
    saved = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert saved == ["epoch_0003.pt", "epoch_0006.pt"]
    ckpt = load(tmp_path / "a" / "checkpoints" / "epoch_0003.pt")
    assert ckpt.epoch == 3
    resumed = run(cfg(*STATEFUL, "epochs=6"), Job(resume=ckpt, output_dir=tmp_path / "b"))
    assert resumed.objective == straight_value  # the same floats: nothing was lost or re-drawn


def test_the_last_epoch_is_always_saved(cfg: Compose, tmp_path: Path) -> None:
    run(cfg("dataset=moons", "epochs=5", "checkpoint.every=2"), Job(output_dir=tmp_path))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch_0002.pt", "epoch_0004.pt", "epoch_0005.pt"]


def test_no_checkpoints_unless_asked(cfg: Compose, tmp_path: Path) -> None:
    run(cfg("dataset=moons", "epochs=2"), Job(output_dir=tmp_path))
    assert not (tmp_path / "checkpoints").exists()


@pytest.fixture
def checkpoint(cfg: Compose, tmp_path: Path) -> Path:
    run(cfg("dataset=moons", "epochs=2", "checkpoint.every=2"), Job(output_dir=tmp_path / "r"))
    return tmp_path / "r" / "checkpoints" / "epoch_0002.pt"


def test_a_different_model_is_refused_with_the_fix(cfg: Compose, checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="different model") as e:
        run(cfg("dataset=moons", "epochs=4", "model.hidden_units=7"), Job(resume=load(checkpoint)))
    assert "model settings it was trained with" in e.value.fix


def test_a_different_optimizer_is_refused(cfg: Compose, checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="another optimizer"):
        run(cfg("dataset=moons", "epochs=4", "optimizer=momentum"), Job(resume=load(checkpoint)))


def test_asking_for_no_more_epochs_is_a_config_error(cfg: Compose, checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="trained 2 epochs already"):
        run(cfg("dataset=moons", "epochs=2"), Job(resume=load(checkpoint)))


def test_corrupted_foreign_and_code_carrying_files_are_refused(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    torch.save({"format": "x", "w": torch.ones(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:50])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, foreign)
    code = tmp_path / "code.pt"
    torch.save({"format": "hyperlab-checkpoint/1", "hook": Path("/etc")}, code)  # a class
    for path, message in (
        (truncated, "cannot be read as a checkpoint"),
        (foreign, "not a hyperlab checkpoint"),
        (code, "cannot be read as a checkpoint"),  # weights_only refuses to build objects
        (tmp_path / "missing.pt", "no checkpoint at"),
    ):
        with pytest.raises(CheckpointError, match=message) as e:
            load(path)
        assert e.value.fix


def test_locate_takes_a_file_a_run_dir_or_a_run_id(
    cfg: Compose, tmp_path: Path, mlflow_uri: str
) -> None:
    config = cfg("dataset=moons", "epochs=4", "checkpoint.every=2", tracking=True)
    run(config, Job(output_dir=tmp_path / "r"))
    drain()
    newest = tmp_path / "r" / "checkpoints" / "epoch_0004.pt"
    assert locate(str(newest), mlflow_uri) == newest
    assert locate(str(tmp_path / "r"), mlflow_uri) == newest
    run_id = load(newest).run_id
    assert len(run_id) == 32
    downloaded = locate(run_id, mlflow_uri)
    assert downloaded.name == "epoch_0004.pt" and load(downloaded).epoch == 4
    artifacts = [a.path for a in MlflowClient(mlflow_uri).list_artifacts(run_id, "checkpoints")]
    assert artifacts == ["checkpoints/epoch_0002.pt", "checkpoints/epoch_0004.pt"]
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        locate(str(tmp_path), mlflow_uri)
    with pytest.raises(CheckpointError, match="not an MLflow run id"):
        locate("nowhere", mlflow_uri)
    with pytest.raises(CheckpointError, match="cannot be read"):
        locate("0" * 32, mlflow_uri)


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


def test_an_untracked_run_draws_its_learning_curve_too(cfg: Compose, tmp_path: Path) -> None:
    run(cfg("dataset=moons", "epochs=3"), Job(output_dir=tmp_path))
    png = tmp_path / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- checkpoints refused with the file named (issue 11, section 4) ------------------------------


def edited(source: Path, target: Path, **changes: object) -> Path:
    """A copy of checkpoint `source` with some fields changed (None: removed)."""
    state = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    torch.save(state, target)
    return target


BROKEN = {
    # case: (fields changed, a part of the message)
    "no epoch": ({"epoch": None}, "it has no 'epoch'"),
    "negative epoch": ({"epoch": -5}, "epoch=-5 is not the number of epochs done"),
    "epoch a string": ({"epoch": "3"}, "epoch='3' is not"),
    "no overrides": ({"overrides": None}, "it has no 'overrides'"),
    "overrides not strings": ({"overrides": [1, 2]}, "overrides=list is not"),
    "no model": ({"model": None}, "it has no 'model'"),
    "rng not bytes": ({"torch_rng": torch.ones(3)}, "torch_rng=Tensor is not"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_damaged_checkpoint_is_refused_naming_the_field(
    checkpoint: Path, tmp_path: Path, case: str
) -> None:
    changes, message = BROKEN[case]
    path = edited(checkpoint, tmp_path / "damaged.pt", **changes)
    with pytest.raises(CheckpointError, match=f"checkpoint {path}") as e:
        load(path)
    assert message in e.value.problem
    assert "another checkpoint" in e.value.fix


@pytest.mark.parametrize("content", [b"hello\nthis is text\n", b"", b"\x80\x02]q\x00."])
def test_a_file_that_is_no_pickle_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot be read as a checkpoint") as e:
        load(path)
    assert str(path) in e.value.problem and e.value.fix


def test_stored_overrides_that_do_not_parse_are_refused_naming_the_checkpoint(
    cfg: Compose, checkpoint: Path, tmp_path: Path
) -> None:
    from hyperlab.cli import _resumed

    path = edited(checkpoint, tmp_path / "bad.pt", overrides=["dataset=moons", "lr=[1,2"])
    with pytest.raises(CheckpointError, match=f"checkpoint {path}: its stored overrides") as e:
        _resumed(cfg(f"resume={path}"), [f"resume={path}"])
    assert "the override 'lr=[1,2' does not parse" in e.value.problem
    assert e.value.fix


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
