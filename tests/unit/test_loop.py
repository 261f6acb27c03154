"""hyperlab.loop.fit on its own: a tiny model on tiny tensors, no config, no tracking."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hyperlab.loop import Diverged, Metrics, fit

KEYS = {"train_loss", "train_acc", "dev_loss", "dev_acc", "lr"}


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs, one a class, apart enough to be learned in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) + (2 * y - 1).unsqueeze(1).float() * 3.0
    return x, y


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))


class Recorder:
    """A listener that keeps what it was handed."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, Metrics]] = []

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> None:
        self.seen.append((epoch, metrics))


class StopAfter:
    """A listener that stops training by raising, as a pruner does."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt(epoch)


def train(
    model: nn.Module,
    epochs: int,
    *,
    x: torch.Tensor | None = None,
    start_epoch: int = 0,
    listeners: tuple[object, ...] = (),
) -> list[Metrics]:
    train_x, train_y = blobs(64, seed=1)
    return fit(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        lambda epoch: 1.0 / (1 + epoch),
        (train_x if x is None else x, train_y),
        blobs(32, seed=2),
        lr=0.5,
        epochs=epochs,
        batch_size=16,
        generator=torch.Generator().manual_seed(0),
        listeners=listeners,  # type: ignore[arg-type]
        start_epoch=start_epoch,
    )


def test_it_trains_the_cost_falls_and_dev_is_learned() -> None:
    history = train(tiny(), epochs=8)
    assert len(history) == 8 and all(set(m) == KEYS for m in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    assert history[-1]["dev_loss"] < history[0]["dev_loss"]
    assert history[-1]["dev_acc"] >= 0.9
    # The rate of each epoch is lr times the schedule's factor for that epoch.
    assert [m["lr"] for m in history] == pytest.approx([0.5 / (1 + e) for e in range(1, 9)])


def test_listeners_get_each_epochs_metrics_in_order() -> None:
    first, second = Recorder(), Recorder()
    history = train(tiny(), epochs=3, listeners=(first, second))
    assert first.seen == second.seen == list(enumerate(history, 1))  # epochs from 1


def test_a_listener_that_raises_stops_training_there() -> None:
    seen = Recorder()
    with pytest.raises(KeyboardInterrupt):
        train(tiny(), epochs=6, listeners=(seen, StopAfter(2)))
    assert [epoch for epoch, _ in seen.seen] == [1, 2]


def test_a_nan_cost_raises_diverged_before_the_listeners_hear_of_it() -> None:
    x, _ = blobs(64, seed=1)
    x[5, 0] = math.nan  # one bad input makes its mini-batch's cost NaN
    seen = Recorder()
    with pytest.raises(Diverged) as e:
        train(tiny(), epochs=4, x=x, start_epoch=2, listeners=(seen,))
    assert e.value.epoch == 3 and math.isnan(e.value.loss)  # the first after the 2 done
    assert "diverged at epoch 3" in str(e.value)
    assert seen.seen == []


def test_start_epoch_continues_the_epoch_count() -> None:
    seen = Recorder()
    history = train(tiny(), epochs=5, start_epoch=3, listeners=(seen,))
    assert [epoch for epoch, _ in seen.seen] == [4, 5]
    assert [m["lr"] for m in history] == pytest.approx([0.5 / 5, 0.5 / 6])


def test_the_same_seed_trains_the_same_model() -> None:
    assert train(tiny(), epochs=3) == train(tiny(), epochs=3)


def test_no_epochs_left_trains_nothing() -> None:
    model = tiny()
    before = [p.clone() for p in model.parameters()]
    assert train(model, epochs=3, start_epoch=3) == []
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
