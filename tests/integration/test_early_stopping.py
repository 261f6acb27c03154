"""Early stopping through run() and the stacked trainer: where it stops, the weights it
evaluates, and what MLflow and the checkpoints record."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from hyperlab.checkpoint import CheckpointError, load
from hyperlab.run import Job, RunResult, run
from hyperlab.run_population import run_population
from hyperlab.tracking import drain
from support.checkpoints import edited
from support.paths import Compose
from support.records import runs_of

# A network much bigger than its data, trained long enough to overfit: the dev cost has a
# minimum, then rises (as in experiment=regularization).
OVERFITS = [
    "dataset=moons",
    "dataset.n_samples=200",
    "dataset.noise=0.3",
    "model.hidden_units=64",
    "model.layers=2",
    "lr=0.01",
    "epochs=300",
    "early_stopping.patience=5",
]


def test_a_run_stops_evaluates_its_best_epoch_and_records_it(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    result = run(cfg(*OVERFITS, "checkpoint.every=1000", tracking=True), Job(output_dir=tmp_path))
    drain()
    (r,) = runs_of(mlflow_uri, request.node.name)
    c = MlflowClient(mlflow_uri)
    dev_loss = {m.step: m.value for m in c.get_metric_history(r.info.run_id, "dev_loss")}
    dev_acc = {m.step: m.value for m in c.get_metric_history(r.info.run_id, "dev_acc")}
    stopped, best = int(r.data.metrics["stopped_epoch"]), int(r.data.metrics["best_epoch"])
    # It trained until `patience` epochs passed without a lower dev cost, and no longer.
    assert max(dev_loss) == stopped < 300 and stopped == best + 5
    assert dev_loss[best] == min(dev_loss.values())
    assert all(dev_loss[e] >= dev_loss[best] for e in range(best + 1, stopped + 1))
    # The final evaluation is the best epoch's model: its dev metrics, exactly.
    assert result.objective == dev_acc[best]
    assert r.data.metrics["dev_error"] == pytest.approx(1 - dev_acc[best], abs=1e-12)
    tag = r.data.tags["hyperlab.early_stopping"]
    assert tag.startswith(f"stopped at epoch {stopped}: dev_loss did not improve for 5 epochs")
    assert f"epoch {best}'s weights" in tag
    # The epoch it stopped at is its last checkpoint's, as the last epoch's would be.
    ckpt = load(tmp_path / "checkpoints" / f"epoch_{stopped:04d}.pt")
    assert ckpt.epoch == stopped and len(ckpt.history) == stopped


class Epochs:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.seen.append(epoch)


def test_a_stacked_member_stops_as_the_same_trial_trained_alone(cfg: Compose) -> None:
    base = [*OVERFITS, "optimizer=gd", "tracking.curve=false"]
    configs = [cfg(*base, "lr=0.5", "seed=0"), cfg(*base, "lr=0.2", "seed=1")]
    alone_epochs, stacked_epochs = [Epochs(), Epochs()], [Epochs(), Epochs()]
    alone = [run(c, Job(listeners=[e])) for c, e in zip(configs, alone_epochs, strict=True)]
    stacked = run_population(configs, [Job(listeners=[e]) for e in stacked_epochs])
    for a, s, ae, se in zip(alone, stacked, alone_epochs, stacked_epochs, strict=True):
        assert isinstance(s, RunResult)
        # The member left the stack at the epoch it stopped at alone, with the best
        # epoch's weights evaluated (float reduction order aside).
        assert se.seen == ae.seen and len(ae.seen) < 300
        assert s.objective == pytest.approx(a.objective, abs=1e-6)
    assert len(alone_epochs[0].seen) != len(alone_epochs[1].seen)  # one left the other


def test_early_stopping_refuses_a_metric_it_cannot_watch(cfg: Compose) -> None:
    from hyperlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"early_stopping\.metric.*dev_loss or dev_acc"):
        run(cfg("early_stopping.patience=3", "early_stopping.metric=train_loss"))


STOPS = [
    "dataset=moons",
    "dataset.n_samples=300",
    "epochs=40",
    "lr=0.05",
    "early_stopping.patience=3",
    "early_stopping.min_delta=0.002",
    "objective.metric=dev_loss",
]


def test_a_run_resumed_before_its_stop_stops_where_the_straight_run_did(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A checkpoint keeps early stopping's best epoch and its weights: resumed from any
    checkpoint before the stop, including one past the best epoch, the run stops at the
    same epoch and evaluates the same weights (the same dev_loss, to the bit)."""
    straight = run(cfg(*STOPS, "checkpoint.every=2", tracking=True), Job(output_dir=tmp_path / "a"))
    drain()
    c = MlflowClient(mlflow_uri)
    done = c.get_run(straight.run_id or "").data.metrics
    stopped, best = int(done["stopped_epoch"]), int(done["best_epoch"])
    assert best < stopped < 40
    past_best = [e for e in range(2, stopped, 2) if e > best]
    assert past_best  # the checkpoint after the best epoch, before the stop, is the hard one
    kept = load(tmp_path / "a" / "checkpoints" / f"epoch_{past_best[0]:04d}.pt").early_stopping
    assert kept is not None and kept.best_epoch == best
    for epoch in sorted({2, past_best[0]}):
        ckpt = load(tmp_path / "a" / "checkpoints" / f"epoch_{epoch:04d}.pt")
        resumed = run(
            cfg(*STOPS, tracking=True), Job(resume=ckpt, output_dir=tmp_path / f"{epoch}")
        )
        drain()
        again = c.get_run(resumed.run_id or "").data.metrics
        assert (again["stopped_epoch"], again["best_epoch"]) == (stopped, best), epoch
        assert resumed.objective == straight.objective, epoch


def test_a_run_resumed_from_its_stop_trains_on_with_fresh_patience(
    cfg: Compose, mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resuming the checkpoint of the stop epoch asks for more training: patience counts
    from there, and the best epoch so far is still the one evaluated unless beaten."""
    run(cfg(*STOPS, "checkpoint.every=100"), Job(output_dir=tmp_path / "a"))
    (last,) = (tmp_path / "a" / "checkpoints").iterdir()
    ckpt = load(last)
    kept = ckpt.early_stopping
    assert kept is not None and kept.best_epoch < ckpt.epoch
    resumed = run(
        cfg(*STOPS, "progress=true", tracking=True), Job(resume=ckpt, output_dir=tmp_path / "b")
    )
    drain()
    out = capsys.readouterr().out
    assert f"early stopping had run out of patience by epoch {ckpt.epoch}: it counts afresh" in out
    metrics = MlflowClient(mlflow_uri).get_run(resumed.run_id or "").data.metrics
    assert metrics["stopped_epoch"] >= ckpt.epoch + 3  # at least patience more epochs
    best_dev_loss = ckpt.history[kept.best_epoch - 1]["dev_loss"]
    assert resumed.objective <= best_dev_loss
    if metrics["best_epoch"] <= ckpt.epoch:  # not beaten: the checkpoint's best weights
        assert resumed.objective == best_dev_loss


def test_a_checkpoint_without_early_stopping_is_heard_again(
    cfg: Compose, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its history is heard again: where its own epoch was the best, early stopping carries
    on with the model's weights; otherwise it starts afresh, and says so."""
    plain = [a for a in STOPS if not a.startswith("early_stopping")]
    run(cfg(*plain, "epochs=6", "checkpoint.every=3"), Job(output_dir=tmp_path / "a"))
    for epoch in (3, 6):
        ckpt = load(tmp_path / "a" / "checkpoints" / f"epoch_{epoch:04d}.pt")
        assert ckpt.early_stopping is None
        run(
            cfg(*STOPS, "epochs=9", "progress=true"),
            Job(resume=ckpt, output_dir=tmp_path / f"{epoch}"),
        )
        out = capsys.readouterr().out
        losses = [m["dev_loss"] for m in ckpt.history]
        if losses.index(min(losses)) + 1 == epoch:
            assert f"early stopping goes on: the best dev_loss so far is epoch {epoch}'s" in out
        else:
            assert (
                f"early stopping starts afresh after epoch {epoch}: the checkpoint keeps no" in out
            )


def test_early_stopping_weights_that_do_not_fit_the_model_are_refused(
    cfg: Compose, tmp_path: Path
) -> None:
    run(cfg(*STOPS, "epochs=4", "checkpoint.every=2"), Job(output_dir=tmp_path / "a"))
    source = tmp_path / "a" / "checkpoints" / "epoch_0002.pt"
    kept = load(source).early_stopping
    assert kept is not None
    wrong = {k: torch.zeros(3) for k in kept.model}
    entry = {"best_epoch": kept.best_epoch, "since": 0, "metric": "dev_loss", "model": wrong}
    ckpt = load(edited(source, tmp_path / "edited.pt", early_stopping=entry))
    with pytest.raises(
        CheckpointError, match=r"its early stopping weights \(epoch \d\) do not fit"
    ):
        run(cfg(*STOPS, "epochs=4"), Job(resume=ckpt, output_dir=tmp_path / "b"))
