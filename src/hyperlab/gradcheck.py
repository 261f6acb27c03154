"""Gradient checking, as the practice teaches it: backprop's gradient against two-sided
differences, all parameters flattened into one vector theta, in float64.

    d_approx[i] = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)
    difference  = ||d_approx - d_theta||_2 / (||d_approx||_2 + ||d_theta||_2)

About 1e-7 is great; 1e-5 deserves a closer look; 1e-3 or more is a bug. J includes the
L2 term; dropout is turned off, since its random masks make J a different function at
every evaluation.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hyperlab.models import l2_penalty

GREAT, CLOSER = 1e-6, 1e-4


@dataclass(frozen=True)
class Check:
    difference: float
    checked: int  # components compared
    total: int  # components in theta
    worst: list[tuple[str, float]]  # parameter tensors by their own relative difference

    @property
    def verdict(self) -> str:
        if self.difference < GREAT:
            return "great: backprop's gradient matches"
        if self.difference < CLOSER:
            return "look closer: probably right, but check the components listed"
        return "bug: backprop's gradient does not match the cost"


def bytes_needed(
    weights: int, components: int, *, largest: int, activations: int, l2: bool, trained: bool
) -> int:
    """The memory gradient_check takes at its peak, beside the data, for a model of
    `weights` parameters (`largest` in its largest tensor) of which `components` are
    checked; `activations` values flow through the model per evaluation of the cost, `l2`
    squares the weights at each one, and a `trained` model holds its gradients and
    optimizer state as well."""
    model = weights * (4 + 12 * trained)  # float32; gradients and Adam's two moments
    copy_ = weights * (4 + 8 + 8)  # deep-copied in float32, then float64, and its gradient
    evaluation = largest * 8 * l2 + activations * 8 * 3  # L2's squares; forward, backward
    per_component = components * 8 * 3  # approx, backprop, owner
    if components < weights:
        per_component += components * 128  # the sampled indices, as Python ints
    return model + copy_ + evaluation + per_component


def _without_dropout(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model).double()
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Dropout):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())
    return model


def gradient_check(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    l2: float = 0.0,
    m: int | None = None,
    eps: float = 1e-7,
    max_components: int = 0,
    seed: int = 0,
) -> Check:
    """Compare backprop with two-sided differences on the batch (x, y).

    Batch norm uses the batch's statistics (training mode) so that J is the training cost;
    `m` is the training set size of the L2 term (default: the batch size).
    `max_components` > 0 checks that many components, drawn at random, instead of all."""
    model = _without_dropout(model)
    model.train()
    x, m = x.double(), m or len(y)
    weights = [p for name, p in model.named_parameters() if p.ndim >= 2]
    names = [name for name, _ in model.named_parameters()]
    params = list(model.parameters())

    def cost() -> torch.Tensor:
        loss = F.cross_entropy(model(x), y)
        # Without L2, squaring every weight at each evaluation would only cost time.
        return loss + l2_penalty(weights, l2, m) if l2 else loss

    model.zero_grad()
    cost().backward()
    # Components are found through each tensor's own gradient: nothing of theta's size is
    # allocated beyond the float64 copy and its gradient (see bytes_needed).
    starts = [0, *itertools.accumulate(p.numel() for p in params)]
    total = starts[-1]
    index: Sequence[int] = range(total)
    if 0 < max_components < total:
        index = sorted(random.Random(seed).sample(range(total), max_components))
    approx = torch.zeros(len(index), dtype=torch.float64)
    backprop = torch.zeros(len(index), dtype=torch.float64)
    owner = torch.zeros(len(index), dtype=torch.long)
    with torch.no_grad():
        for j, i in enumerate(index):
            k = bisect.bisect_right(starts, i) - 1
            flat, local = params[k].view(-1), i - starts[k]
            backprop[j], owner[j] = params[k].grad.view(-1)[local], k  # type: ignore[union-attr]
            value = flat[local].item()
            flat[local] = value + eps
            plus = cost().item()
            flat[local] = value - eps
            minus = cost().item()
            flat[local] = value
            approx[j] = (plus - minus) / (2 * eps)
    difference = ((approx - backprop).norm() / (approx.norm() + backprop.norm())).item()
    # Which tensors disagree most: each one's own relative difference.
    worst = []
    for k, name in enumerate(names):
        sel = owner == k
        if sel.any():
            a, b = approx[sel], backprop[sel]
            denom = (a.norm() + b.norm()).item()
            worst.append((name, (a - b).norm().item() / denom if denom else 0.0))
    worst.sort(key=lambda nv: nv[1], reverse=True)
    return Check(difference, len(index), total, worst)
