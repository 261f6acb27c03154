"""The training loop: plain torch, tensors in memory, metrics handed to listeners each epoch."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

from hyperlab.models import l2_penalty

if TYPE_CHECKING:
    from hyperlab.augment import Augment

Metrics = dict[str, float]


class Listener(Protocol):
    """Receives each epoch's metrics, the epoch counted from 1 (epoch 1 is the first pass
    through the data); may raise to stop training (e.g. optuna.TrialPruned)."""

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> None: ...


class Diverged(RuntimeError):
    """The training cost became NaN or infinite."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"training diverged at epoch {epoch}: the cost is {loss}")
        self.epoch = epoch
        self.loss = loss


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(cross-entropy, accuracy) of the model in eval mode: no dropout, batch norm's
    running averages in place of mini-batch statistics."""
    model.eval()
    with torch.inference_mode():
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.argmax(1) == y).sum()
    return loss.item(), correct.item() / len(y)


def fit(
    model: nn.Module,
    optimizer: Optimizer,
    schedule: Callable[[int], float],
    train: tuple[torch.Tensor, torch.Tensor],
    dev: tuple[torch.Tensor, torch.Tensor],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    l2: float = 0.0,
    weights: Sequence[torch.Tensor] = (),
    generator: torch.Generator | None = None,
    listeners: Sequence[Listener] = (),
    start_epoch: int = 0,
    stop: Callable[[], bool] | None = None,
    augment: Augment | None = None,
) -> list[Metrics]:
    """Train with mini-batch updates from epoch start_epoch + 1 to epoch `epochs` (counted
    from 1; start_epoch is the number already done); return per-epoch metrics. `stop` is
    asked after each epoch's listeners (early stopping): True ends training there.

    train_loss is the cost J of the epoch's mini-batches (cross-entropy plus the L2 term),
    averaged over the examples; train_acc is measured on the same mini-batches, in training
    mode. dev_loss and dev_acc come from evaluate() after the epoch.

    `augment` transforms each training mini-batch (drawing from `generator`), and nothing
    else: train_acc is measured on the augmented batches, dev on the dev set as it is.
    """
    x, y = train
    m = len(y)
    # A lone trailing example cannot be batch-normalized: skip it (it changes every epoch).
    has_bn = any(isinstance(mod, nn.BatchNorm1d) for mod in model.modules())
    n = m - 1 if has_bn and m % batch_size == 1 else m
    sizes = torch.tensor(
        [min(batch_size, n - i) for i in range(0, n, batch_size)], dtype=x.dtype, device=x.device
    )
    history: list[Metrics] = []
    for epoch in range(start_epoch + 1, epochs + 1):
        rate = lr * schedule(epoch)
        for group in optimizer.param_groups:
            group["lr"] = rate
        model.train()
        # One shuffle per epoch, then contiguous slices: cheaper than gathering every batch.
        # Drawn on the CPU whatever the device: the same seed gives the same order everywhere.
        perm = torch.randperm(m, generator=generator).to(x.device)
        xs, ys = x[perm], y[perm]
        # Keep detached losses and logits; reducing them once per epoch keeps per-step
        # work to what a hand-written loop does (no .item() sync, no extra kernels).
        losses: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        for i in range(0, n, batch_size):
            xb, yb = xs[i : i + batch_size], ys[i : i + batch_size]
            if augment is not None:
                xb = augment(xb, generator)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            if l2:
                loss = loss + l2_penalty(weights, l2, m)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            logits.append(out.detach())
        train_loss = (torch.stack(losses) @ sizes).item() / n  # mean over examples
        if not math.isfinite(train_loss):
            raise Diverged(epoch, train_loss)
        train_acc = (torch.cat(logits).argmax(1) == ys[:n]).sum().item() / n
        dev_loss, dev_acc = evaluate(model, *dev)
        metrics = {
            "train_loss": train_loss,
            "train_acc": train_acc,
            "dev_loss": dev_loss,
            "dev_acc": dev_acc,
            "lr": rate,
        }
        history.append(metrics)
        for listener in listeners:
            listener.on_epoch_end(epoch, metrics)
        if stop and stop():
            break
    return history
