"""Early stopping through run() and the stacked trainer: where it stops, the weights it
evaluates, and what MLflow and the checkpoints record."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from hyperlab.checkpoint import load
from hyperlab.run import Job, RunResult, run
from hyperlab.run_population import run_population
from hyperlab.tracking import drain
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
