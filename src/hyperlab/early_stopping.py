"""Early stopping, one of the course's "other regularization methods": stop training when
the dev metric has not improved for `patience` epochs, and evaluate the weights of the
epoch where it was best (the point of the dev curve's minimum, before overfitting).

A listener of the training loop (hyperlab.loop.fit, hyperlab.population): it reads each
epoch's metrics, keeps a copy of the best epoch's weights (parameters and batch norm's
running averages), and sets `stopping`; the trainer ends after the epoch that set it. A
checkpoint keeps its state (`kept`), so a resumed run carries on as the straight run
would have (`resume`). Hydra-free, like the loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from hyperlab.checkpoint import Checkpoint
    from hyperlab.schema import Config


def early_stopping(config: Config, model: nn.Module) -> EarlyStopping | None:
    """The run's early stopping listener, where early_stopping.patience is set."""
    es = config.early_stopping
    if not es.patience:
        return None
    return EarlyStopping(model, es.metric, es.patience, es.min_delta)


class EarlyStopping:
    """Watches `metric` (a dev loss is minimized, a dev accuracy maximized): an epoch
    improves on the best by more than `min_delta`, or counts towards `patience`."""

    def __init__(
        self, model: nn.Module, metric: str, patience: int, min_delta: float = 0.0
    ) -> None:
        if patience < 1:
            raise ValueError("patience must be at least 1")
        self.model, self.metric, self.patience, self.min_delta = model, metric, patience, min_delta
        self.maximize = not metric.endswith("_loss")
        self.best_epoch = 0
        self.best_value = float("nan")
        self.best_metrics: dict[str, float] = {}
        self.last_epoch = 0
        self.stopping = False
        self.since = 0  # patience counts from here or the best epoch, whichever is later
        self._state: dict[str, torch.Tensor] = {}

    def kept(self) -> dict[str, Any] | None:
        """What a checkpoint keeps for a resumed run to carry on (checkpoint.Kept): the
        best epoch and its weights, where patience counts from, the metric."""
        if not self.best_epoch:
            return None
        return {
            "best_epoch": self.best_epoch,
            "since": self.since,
            "metric": self.metric,
            "model": self._state,
        }

    def improves(self, value: float) -> bool:
        """Whether `value` beats the best so far by more than min_delta."""
        if not self.best_epoch:
            return value == value  # a NaN never improves
        if self.maximize:
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self._hear(epoch, metrics):
            # A copy, not a reference: the next step updates the parameters in place.
            self._state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _hear(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Count the epoch; True when it is the new best."""
        self.last_epoch = epoch
        value = metrics[self.metric]
        if self.improves(value):
            self.best_epoch, self.best_value, self.best_metrics = epoch, value, dict(metrics)
            return True
        if epoch - max(self.best_epoch, self.since) >= self.patience:
            self.stopping = True
        return False

    def resume(self, ckpt: Checkpoint) -> str:
        """Carry on from a checkpoint as the straight run would have: its best epoch, the
        weights of it, and the patience used, from what the checkpoint kept. A checkpoint
        whose patience had run out (saved at the stop) is a continuation past the stop:
        patience counts afresh from it. A checkpoint saved without early stopping (or with
        another metric) is heard again from its history; unless its own epoch was the
        best, the best one's weights are not there and early stopping starts afresh.
        Says what it did."""
        done, history, kept = ckpt.epoch, ckpt.history, ckpt.early_stopping
        complete = len(history) == done and all(self.metric in m for m in history)
        state: Mapping[str, torch.Tensor] | None = None
        if kept and kept.metric == self.metric and complete:
            self.best_epoch, self.since, state = kept.best_epoch, kept.since, kept.model
            self.best_metrics = dict(history[self.best_epoch - 1])
            self.best_value = self.best_metrics[self.metric]
        elif complete:
            for epoch, metrics in enumerate(history, 1):
                self._hear(epoch, metrics)
            self.stopping = False
            state = ckpt.model if self.best_epoch == done else None
        self.last_epoch = done
        if state is None:
            self.best_epoch, self.best_value, self.best_metrics = 0, float("nan"), {}
            self.since = done
            return (
                f"early stopping starts afresh after epoch {done}: the checkpoint keeps no "
                f"weights of its best {self.metric} epoch"
            )
        self._state = {k: v.detach().clone() for k, v in state.items()}
        if done - max(self.best_epoch, self.since) >= self.patience:
            self.since = done
            return (
                f"early stopping had run out of patience by epoch {done}: it counts afresh "
                f"from there; the best so far is epoch {self.best_epoch}'s"
            )
        return (
            f"early stopping goes on: the best {self.metric} so far is epoch "
            f"{self.best_epoch}'s, {done - max(self.best_epoch, self.since)} of "
            f"{self.patience} epochs of patience used"
        )

    def restore(self) -> None:
        """Load the best epoch's weights back into the model (nothing before an epoch)."""
        if self._state:
            self.model.load_state_dict(self._state)

    def describe(self) -> str:
        """One line on how training ended, for the summary and the MLflow tag."""
        best = f"epoch {self.best_epoch}'s weights ({self.metric} {self.best_value:.4g})"
        if not self.best_epoch:
            best = f"the last epoch's weights (no epoch's {self.metric} was a number)"
        if self.stopping:
            return (
                f"stopped at epoch {self.last_epoch}: {self.metric} did not improve for "
                f"{self.patience} epochs; evaluated with {best}"
            )
        return f"trained every epoch; evaluated with {best}"
