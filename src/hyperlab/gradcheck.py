"""Gradient checking, as the practice teaches it: backprop's gradient against two-sided
differences, all parameters flattened into one vector theta, in float64.

    d_approx[i] = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)
    difference  = ||d_approx - d_theta||_2 / (||d_approx||_2 + ||d_theta||_2)

About 1e-7 is great; 1e-5 deserves a closer look; 1e-3 or more is a bug. J includes the
L2 term; dropout is turned off, since its random masks make J a different function at
every evaluation.

check_gradients is the task (task=gradcheck): the check on a configured model, its memory
estimate, and the report.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from rich.table import Table
from torch import nn

from hyperlab import display
from hyperlab.errors import ConfigError
from hyperlab.models import l2_penalty
from hyperlab.run import fit_parts, prepare
from hyperlab.schema import Config

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


# --- the task: task=gradcheck -------------------------------------------------------------


def check_gradients(cfg: Config | DictConfig | Mapping[str, Any]) -> float:
    """task=gradcheck: backprop against two-sided differences on a training batch, at the
    initialization and optionally again after some epochs. Returns the largest difference."""
    config, parts = prepare(cfg, check=_check_size)
    settings, reg = config.gradcheck, parts.regularization
    x, y = parts.data.x_train[: settings.batch], parts.data.y_train[: settings.batch]
    m = len(parts.data.y_train)
    console = display.console
    if reg.keep_prob < 1:
        console.print(
            f"dropout (keep_prob={reg.keep_prob}) is turned off for the check: "
            "its random masks make the cost a different function at every evaluation"
        )
    stages = [("at initialization", 0)]
    if settings.after_epochs:
        stages.append((f"after {settings.after_epochs} epochs", settings.after_epochs))
    worst = 0.0
    for label, epochs in stages:
        if epochs:
            fit_parts(config, parts, torch.Generator().manual_seed(config.seed), epochs=epochs)
        check = gradient_check(
            parts.model,
            x,
            y,
            l2=reg.l2,
            m=m,
            eps=settings.eps,
            max_components=settings.max_components,
            seed=config.seed,
        )
        worst = max(worst, check.difference)
        _report(label, check, settings.eps, reg.l2)
    console.print("scale: about 1e-7 great; 1e-5 look closer; 1e-3 or more a bug")
    return worst


def _report(label: str, check: Check, eps: float, l2: float) -> None:
    console = display.console
    console.print(
        f"[bold]gradient check {label}[/]: {check.checked} of {check.total} components, "
        f"eps={eps:g}, L2 lambda={l2:g}\n"
        f"  ||approx - grad|| / (||approx|| + ||grad||) = {check.difference:.3e}  ->  "
        f"{check.verdict}"
    )
    table = Table(title="parameters by their own difference", title_justify="left")
    table.add_column("parameter")
    table.add_column("difference", justify="right")
    for name, diff in check.worst[:5]:
        table.add_row(name, f"{diff:.3e}")
    console.print(table)


def _check_size(config: Config, sizes: list[int], memory: int | None) -> None:
    """A gradient check whose float64 copy of the model, its gradient and the compared
    components (bytes_needed) exceed the machine's memory fails here, before the model is
    built: the kernel would otherwise kill the check without a word."""
    model, settings = config.model, config.gradcheck
    weights = sum(a * b + b for a, b in itertools.pairwise(sizes))

    def need(sample: int) -> int:
        return bytes_needed(
            weights,
            sample if 0 < sample < weights else weights,
            largest=max(a * b for a, b in itertools.pairwise(sizes)),
            activations=settings.batch * sum(sizes),
            l2=config.regularization["l2"] > 0,
            trained=settings.after_epochs > 0,
        )

    needed = need(settings.max_components)
    if not memory or needed <= memory:
        return
    sample = 1000
    smaller = "a smaller model of the same design, e.g. model.hidden_units=128"
    fix = (
        f"check a sample of the components, e.g. gradcheck.max_components={sample} (about "
        f"{need(sample) / 2**30:.3g} GiB), or {smaller}"
        if need(sample) <= memory and settings.max_components != sample
        else f"check {smaller}: its backprop is the same code (gradcheck.max_components "
        "bounds the components compared, not the float64 copy)"
    )
    checked = settings.max_components if 0 < settings.max_components < weights else weights
    raise ConfigError(
        f"task=gradcheck with model.hidden_units={model['hidden_units']}, "
        f"model.layers={model['layers']}: the check needs about {needed / 2**30:.3g} GiB "
        f"(a float64 copy of the model's {weights:.3g} weights and its gradient, beside the "
        f"model, and {checked:.3g} components compared), more than this machine's "
        f"{memory / 2**30:.3g} GiB of memory",
        fix,
    )
