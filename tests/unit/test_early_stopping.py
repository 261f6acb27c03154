"""Early stopping: when it stops, what it keeps, and that the loop ends where it says."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from hyperlab.checkpoint import Checkpoint, Kept
from hyperlab.early_stopping import EarlyStopping
from hyperlab.loop import fit


def feed(stopper: EarlyStopping, values: list[float]) -> int | None:
    """The epoch (from 1) after which the stopper asks to stop, or None."""
    for epoch, v in enumerate(values, 1):
        stopper.on_epoch_end(epoch, {stopper.metric: v})
        if stopper.stopping:
            return epoch
    return None


def test_a_loss_stops_after_patience_epochs_without_a_new_minimum() -> None:
    s = EarlyStopping(nn.Linear(1, 1), "dev_loss", patience=2)
    assert feed(s, [1.0, 0.8, 0.85, 0.9, 0.1]) == 4
    assert (s.best_epoch, s.best_value, s.last_epoch) == (2, 0.8, 4)
    assert s.describe() == (
        "stopped at epoch 4: dev_loss did not improve for 2 epochs; "
        "evaluated with epoch 2's weights (dev_loss 0.8)"
    )


def test_an_accuracy_is_maximized_and_a_tie_is_no_improvement() -> None:
    s = EarlyStopping(nn.Linear(1, 1), "dev_acc", patience=3)
    assert feed(s, [0.5, 0.7, 0.7, 0.6, 0.7]) == 5
    assert s.best_epoch == 2


def test_min_delta_counts_a_small_gain_as_none() -> None:
    s = EarlyStopping(nn.Linear(1, 1), "dev_loss", patience=2, min_delta=0.1)
    assert feed(s, [1.0, 0.95, 0.91, 0.5]) == 3
    assert s.best_epoch == 1
    s = EarlyStopping(nn.Linear(1, 1), "dev_loss", patience=2, min_delta=0.1)
    assert feed(s, [1.0, 0.85, 0.7, 0.55]) is None  # every gain beats min_delta
    assert s.best_epoch == 4 and s.describe().startswith("trained every epoch")


def test_nan_never_improves() -> None:
    s = EarlyStopping(nn.Linear(1, 1), "dev_loss", patience=2)
    assert feed(s, [math.nan, 0.5, math.nan, 0.6]) == 4
    assert s.best_epoch == 2


def test_patience_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(nn.Linear(1, 1), "dev_loss", patience=0)


class Snapshots:
    """Every epoch's weights, as the epoch left them."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.states = model, {}  # type: dict[int, dict[str, torch.Tensor]]

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.states[epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}


def test_the_loop_stops_at_the_stopper_s_epoch_and_restore_brings_back_the_best_weights() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(200, 5), torch.randint(0, 3, (200,))
    xd, yd = torch.randn(60, 5), torch.randint(0, 3, (60,))  # noise: dev loss soon rises
    model = nn.Sequential(nn.Linear(5, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 3))
    stopper = EarlyStopping(model, "dev_loss", patience=3)
    snaps = Snapshots(model)
    history = fit(
        model,
        torch.optim.Adam(model.parameters(), lr=0.01),
        lambda epoch: 1.0,
        (x, y),
        (xd, yd),
        lr=0.01,
        epochs=100,
        batch_size=32,
        generator=torch.Generator().manual_seed(0),
        listeners=[stopper, snaps],
        stop=lambda: stopper.stopping,
    )
    assert stopper.stopping and len(history) == stopper.last_epoch < 100
    losses = [h["dev_loss"] for h in history]
    assert stopper.best_epoch == losses.index(min(losses)) + 1
    assert stopper.last_epoch == stopper.best_epoch + 3
    stopper.restore()
    best = snaps.states[stopper.best_epoch]  # parameters and batch norm's running averages
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert not torch.equal(best["0.weight"], snaps.states[stopper.last_epoch]["0.weight"])


def resumed(
    values: list[float], kept: Kept | None = None, patience: int = 2
) -> tuple[EarlyStopping, str]:
    """A stopper resumed from a checkpoint after len(values) epochs of dev_loss."""
    model = {"weight": torch.full((1, 1), 3.0), "bias": torch.zeros(1)}
    ckpt = Checkpoint(
        Path("epoch.pt"),
        len(values),
        model,
        {},
        "Adam",
        torch.get_rng_state(),
        torch.get_rng_state(),
        [],
        "",
        [{"dev_loss": v} for v in values],
        kept,
    )
    s = EarlyStopping(nn.Linear(1, 1), "dev_loss", patience=patience)
    return s, s.resume(ckpt)


BEST = {"weight": torch.full((1, 1), 7.0), "bias": torch.zeros(1)}


def test_a_resume_takes_the_best_epoch_its_weights_and_the_patience_used() -> None:
    s, said = resumed([1.0, 0.8, 0.85], Kept(2, 0, "dev_loss", BEST))
    assert (s.best_epoch, s.best_value, s.stopping) == (2, 0.8, False)
    assert said == (
        "early stopping goes on: the best dev_loss so far is epoch 2's, 1 of 2 epochs of "
        "patience used"
    )
    assert feed_from(s, 4, [0.9]) == 4  # as the straight run: 2 epochs without a new minimum
    s.restore()
    assert s.model.weight.item() == 7.0


def test_a_resume_from_the_stop_counts_patience_afresh_from_it() -> None:
    s, said = resumed([1.0, 0.8, 0.85, 0.9], Kept(2, 0, "dev_loss", BEST))
    assert said.startswith("early stopping had run out of patience by epoch 4: it counts afresh")
    assert (s.best_epoch, s.stopping, s.since) == (2, False, 4)
    assert feed_from(s, 5, [0.95, 0.95]) == 6
    assert s.kept() == {"best_epoch": 2, "since": 4, "metric": "dev_loss", "model": BEST}


def test_a_resume_of_a_resumed_stop_stops_where_that_run_did() -> None:
    """Stopped at 4, resumed (patience afresh from 4), checkpointed at 5: resumed again, it
    stops at 6, as the run it continues did."""
    s, said = resumed([1.0, 0.8, 0.85, 0.9, 0.95], Kept(2, 4, "dev_loss", BEST))
    assert said.startswith("early stopping goes on") and "1 of 2 epochs" in said
    assert feed_from(s, 6, [0.95]) == 6


def test_a_checkpoint_without_early_stopping_is_heard_again() -> None:
    """Its own epoch's weights are the model's: when that epoch is the best, early
    stopping carries on; otherwise the best weights are not there, and it starts afresh."""
    s, said = resumed([1.0, 0.9, 0.8])
    assert said.startswith("early stopping goes on: the best dev_loss so far is epoch 3's")
    s.restore()
    assert s.model.weight.item() == 3.0
    s, said = resumed([1.0, 0.8, 0.85])
    assert said == (
        "early stopping starts afresh after epoch 3: the checkpoint keeps no weights of its "
        "best dev_loss epoch"
    )
    assert (s.best_epoch, s.stopping) == (0, False)
    assert feed_from(s, 4, [5.0, 6.0, 7.0]) == 6  # epoch 4 is the first best


def feed_from(stopper: EarlyStopping, first: int, values: list[float]) -> int | None:
    for epoch, v in enumerate(values, first):
        stopper.on_epoch_end(epoch, {stopper.metric: v})
        if stopper.stopping:
            return epoch
    return None
