"""Panda mode: checkpoints every N epochs, and resuming with nudged hyperparameters.

Here: in this process, from composed configs;
unit/test_checkpoint.py and e2e/test_checkpoint.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from hyperlab.checkpoint import CheckpointError, load, locate
from hyperlab.errors import ConfigError
from hyperlab.run import Job, run
from hyperlab.tracking import drain
from support.checkpoints import BROKEN, edited, trained
from support.paths import Compose

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


@pytest.mark.parametrize(
    ("optimizer", "nudge"),
    [
        ("momentum", "optimizer.beta=0.5"),
        ("adam", "optimizer.beta1=0.5"),
        ("adam", "optimizer.eps=0.1"),
    ],
)
def test_a_resume_trains_with_the_command_s_betas_not_the_checkpoint_s(
    cfg: Compose, tmp_path: Path, optimizer: str, nudge: str
) -> None:
    """The optimizer's saved state holds its betas and eps too: a resume sets the
    command's own again, as it does lr, so that a nudge takes effect."""
    base = (*STATEFUL, f"optimizer={optimizer}", "epochs=4")
    straight = run(cfg(*base, "checkpoint.every=2"), Job(output_dir=tmp_path / "a"))
    ckpt = load(tmp_path / "a" / "checkpoints" / "epoch_0002.pt")
    same = run(cfg(*base), Job(resume=ckpt, output_dir=tmp_path / "b"))
    nudged = run(cfg(*base, nudge), Job(resume=ckpt, output_dir=tmp_path / "c"))
    alone = run(cfg(*base, nudge, "checkpoint.every=2"), Job(output_dir=tmp_path / "d"))
    assert same.objective == straight.objective
    assert nudged.objective not in (straight.objective, alone.objective)


@pytest.mark.parametrize("augment", [["augment=noise"], ["augment=shift", "dataset=digits"]])
def test_an_augmented_run_resumes_its_augmented_batches(
    cfg: Compose, tmp_path: Path, augment: list[str]
) -> None:
    """The augmentation draws from the shuffle stream a checkpoint saves: a resumed run
    gets the batches the straight run got, not fresh ones."""
    base = ("dataset=moons", *augment, "epochs=4", "objective.metric=dev_loss")
    straight = run(cfg(*base, "checkpoint.every=2"), Job(output_dir=tmp_path / "a"))
    ckpt = load(tmp_path / "a" / "checkpoints" / "epoch_0002.pt")
    resumed = run(cfg(*base), Job(resume=ckpt, output_dir=tmp_path / "b"))
    assert resumed.objective == straight.objective


def test_the_last_epoch_is_always_saved(cfg: Compose, tmp_path: Path) -> None:
    run(cfg("dataset=moons", "epochs=5", "checkpoint.every=2"), Job(output_dir=tmp_path))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch_0002.pt", "epoch_0004.pt", "epoch_0005.pt"]


def test_no_checkpoints_unless_asked(cfg: Compose, tmp_path: Path) -> None:
    run(cfg("dataset=moons", "epochs=2"), Job(output_dir=tmp_path))
    assert not (tmp_path / "checkpoints").exists()


@pytest.fixture
def checkpoint(cfg: Compose, tmp_path: Path) -> Path:
    return trained(cfg, tmp_path)


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


def test_an_untracked_run_draws_its_learning_curve_too(cfg: Compose, tmp_path: Path) -> None:
    run(cfg("dataset=moons", "epochs=3"), Job(output_dir=tmp_path))
    png = tmp_path / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_stored_overrides_that_do_not_parse_are_refused_naming_the_checkpoint(
    cfg: Compose, checkpoint: Path, tmp_path: Path
) -> None:
    from hyperlab.cli import _resumed

    path = edited(checkpoint, tmp_path / "bad.pt", overrides=["dataset=moons", "lr=[1,2"])
    with pytest.raises(CheckpointError, match=f"checkpoint {path}: its stored overrides") as e:
        _resumed(cfg(f"resume={path}"), [f"resume={path}"])
    assert "the override 'lr=[1,2' does not parse" in e.value.problem
    assert e.value.fix


def test_a_resumed_run_s_curve_and_best_epoch_span_the_whole_history(
    cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hyperlab.curves

    drawn: list[dict[str, list[tuple[int, float]]]] = []
    monkeypatch.setattr(hyperlab.curves, "draw", lambda points, *a: drawn.append(points))
    run(cfg(*STATEFUL, "epochs=6", "checkpoint.every=3"), Job(output_dir=tmp_path / "a"))
    straight = load(tmp_path / "a" / "checkpoints" / "epoch_0006.pt").history
    assert len(straight) == 6
    ckpt = load(tmp_path / "a" / "checkpoints" / "epoch_0003.pt")
    assert ckpt.history == straight[:3]  # each checkpoint keeps the epochs done
    run(
        cfg(*STATEFUL, "epochs=6", "checkpoint.every=3"),
        Job(resume=ckpt, output_dir=tmp_path / "b"),
    )
    # The continuation's curve is drawn over epochs 1 to 6, as the straight run's was.
    assert drawn[1] == drawn[0]
    assert [e for e, _ in drawn[1]["dev_loss"]] == [1, 2, 3, 4, 5, 6]
    assert load(tmp_path / "b" / "checkpoints" / "epoch_0006.pt").history == straight


def test_best_metrics_count_the_epochs_before_a_resume(
    cfg: Compose, tmp_path: Path, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    from support.records import runs_of

    run(cfg(*STATEFUL, "epochs=4", "checkpoint.every=2"), Job(output_dir=tmp_path / "a"))
    ckpt = load(tmp_path / "a" / "checkpoints" / "epoch_0002.pt")
    # As if the first two epochs had been the best: the resumed run's best is among them.
    ckpt.history = [
        {**h, "dev_loss": 0.001 * (i + 1), "dev_acc": 1.0} for i, h in enumerate(ckpt.history)
    ]
    run(cfg(*STATEFUL, "epochs=4", tracking=True), Job(resume=ckpt))
    drain()
    (r,) = runs_of(mlflow_uri, request.node.name)
    assert r.data.metrics["best_dev_loss"] == 0.001
    assert r.data.metrics["best_dev_acc"] == 1.0
    assert r.data.metrics["best_epoch"] == 1  # objective: dev_loss, minimized
