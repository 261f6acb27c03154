"""Stages through run(): the values change at their epochs and nothing else does, in the
loop, the records, early stopping and a resumed checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from hyperlab.checkpoint import load
from hyperlab.run import Job, fit_parts, prepare, run
from hyperlab.tracking import drain
from hyperlab.validate import validate
from support.paths import Compose

MOONS = ("dataset=moons", "dataset.n_samples=300", "epochs=6")


def history(cfg: Compose, *overrides: str) -> list[dict[str, float]]:
    config, parts = prepare(validate(cfg(*MOONS, *overrides)))
    return fit_parts(config, parts, torch.Generator().manual_seed(config.seed))


def test_a_stage_changes_its_values_from_its_epoch_and_nothing_else(cfg: Compose) -> None:
    """Training in spans changes nothing but the values (stages that restate them train bit
    for bit as none: the same shuffles, optimizer state and float operations); a stage's
    lr is multiplied by the schedule's factor."""
    plain = history(cfg, "optimizer=adam", "lr=0.01")
    restated = history(
        cfg, "optimizer=adam", "lr=0.01", "stages=[{epoch:3,lr:0.01,beta1:0.9,beta2:0.999}]"
    )
    assert [{k: m[k] for k in plain[0]} for m in restated] == plain  # bit for bit
    assert [m["optimizer.beta1"] for m in restated] == [0.9] * 6

    staged = history(
        cfg,
        "optimizer=adam",
        "lr=0.01",
        "schedule=inverse_time",
        "stages=[{epoch:3,lr:0.05},{epoch:5,beta1:0.5}]",
    )
    # The schedule's factor multiplies the stage's lr: lr0 * 1 / (1 + epoch).
    lrs = [0.01, 0.01, 0.05, 0.05, 0.05, 0.05]
    assert [m["lr"] for m in staged] == [lr * (1.0 / (1.0 + e)) for e, lr in enumerate(lrs, 1)]
    assert [m["optimizer.beta1"] for m in staged] == [0.9, 0.9, 0.9, 0.9, 0.5, 0.5]
    unstaged = history(cfg, "optimizer=adam", "lr=0.01", "schedule=inverse_time")
    assert staged[:2] == [{**m, "optimizer.beta1": 0.9} for m in unstaged[:2]]
    assert staged[2]["train_loss"] != unstaged[2]["train_loss"]


def staged_run(cfg: Compose, mlflow_uri: str, *overrides: str) -> tuple[MlflowClient, str]:
    """Run the config tracked; the store's client and the run's id, once it is written."""
    result = run(cfg(*MOONS, *overrides, tracking=True))
    drain()
    return MlflowClient(mlflow_uri), result.run_id or ""


def steps(client: MlflowClient, run_id: str, key: str) -> list[float]:
    """A metric's values, epoch by epoch."""
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_a_staged_run_records_its_values_per_epoch(cfg: Compose, mlflow_uri: str) -> None:
    client, run_id = staged_run(
        cfg,
        mlflow_uri,
        "optimizer=momentum",
        "regularization=l2",
        "stages=[{epoch:4,lr:0.1,beta:0.5,l2:0.0}]",
    )
    assert steps(client, run_id, "lr") == [0.001] * 3 + [0.1] * 3
    assert steps(client, run_id, "optimizer.beta") == [0.9] * 3 + [0.5] * 3
    assert steps(client, run_id, "regularization.l2") == [0.7] * 3 + [0.0] * 3
    params = client.get_run(run_id).data.params
    assert params["stages"] == "[{'epoch': 4, 'lr': 0.1, 'beta': 0.5, 'l2': 0.0}]"


@pytest.mark.parametrize("stage", [2, 3], ids=["inside_a_stage", "at_a_stage_s_end"])
def test_early_stopping_ends_a_staged_run_where_it_stops(
    cfg: Compose, mlflow_uri: str, stage: int
) -> None:
    """No epoch improves dev_loss by 10: with patience 1 the run stops after epoch 2,
    inside a stage or at the last epoch before the next one, which never trains."""
    client, run_id = staged_run(
        cfg,
        mlflow_uri,
        "optimizer=gd",
        "lr=1.0",
        f"stages=[{{epoch:{stage},lr:0.5}},{{epoch:5,lr:0.01}}]",
        "early_stopping.patience=1",
        "early_stopping.min_delta=10",
    )
    assert steps(client, run_id, "lr") == [1.0, 0.5 if stage == 2 else 1.0]
    assert client.get_run(run_id).data.metrics["stopped_epoch"] == 2


def test_a_run_resumed_inside_a_stage_ends_as_the_straight_run(
    cfg: Compose, tmp_path: Path
) -> None:
    """A checkpoint restores the optimizer's values of its epoch; the stage in force after
    it is set again, then the later stages, as the straight run set them."""
    base = (*MOONS, "optimizer=adam", "stages=[{epoch:3,lr:0.02,beta1:0.8},{epoch:6,eps:1e-3}]")
    straight = run(cfg(*base, "checkpoint.every=2"), Job(output_dir=tmp_path / "a"))
    for epoch in (2, 4):
        ckpt = load(tmp_path / "a" / "checkpoints" / f"epoch_{epoch:04d}.pt")
        resumed = run(cfg(*base), Job(resume=ckpt, output_dir=tmp_path / f"b{epoch}"))
        assert resumed.objective == straight.objective
        assert resumed.measures["dev_loss"] == straight.measures["dev_loss"]
