"""The course's optimizers as torch optimizers, built from a model's parameters.

Each factory takes the model's parameters first, so a config can name it with
`_partial_: true` and the builder supplies the parameters at build time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from hyperlab.ranges import Averaging, NonNegative, Positive

Params = Iterable[nn.Parameter]


class Momentum(Optimizer):
    """Gradient descent with momentum in the course's exponentially weighted form:
    v = beta * v + (1 - beta) * dW;  W := W - lr * v  (v starts at 0).

    torch.optim.SGD's momentum differs: its v starts at the first gradient and,
    without dampening, is not an average, so its lr means something else.
    """

    def __init__(self, params: Params, lr: Positive, beta: Averaging = 0.9) -> None:
        super().__init__(params, {"lr": lr, "beta": beta})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            velocity = [self._velocity(p) for p in params]
            # v + (1 - beta) * (g - v) == beta * v + (1 - beta) * g, in one fused op per tensor.
            torch._foreach_lerp_(velocity, [p.grad for p in params], 1.0 - group["beta"])
            torch._foreach_add_(params, velocity, alpha=-group["lr"])
        return loss

    def _velocity(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "v" not in state:
            state["v"] = torch.zeros_like(p)
        v: torch.Tensor = state["v"]
        return v


def gd(params: Params, lr: Positive) -> Optimizer:
    """Mini-batch gradient descent: W := W - lr * dW."""
    return torch.optim.SGD(params, lr=lr)


def momentum(params: Params, lr: Positive, beta: Averaging = 0.9) -> Optimizer:
    """Gradient descent with momentum (the course's form, see Momentum)."""
    return Momentum(params, lr=lr, beta=beta)


def rmsprop(params: Params, lr: Positive, beta: Averaging = 0.9, eps: Positive = 1e-8) -> Optimizer:
    """RMSprop: s = beta * s + (1 - beta) * dW^2;  W := W - lr * dW / (sqrt(s) + eps)."""
    return torch.optim.RMSprop(params, lr=lr, alpha=beta, eps=eps)


def adam(
    params: Params,
    lr: Positive,
    beta1: Averaging = 0.9,
    beta2: Averaging = 0.999,
    eps: Positive = 1e-8,
) -> Optimizer:
    """Adam with bias correction: W := W - lr * v_hat / (sqrt(s_hat) + eps)."""
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, foreach=True)


def adamw(
    params: Params,
    lr: Positive,
    beta1: Averaging = 0.9,
    beta2: Averaging = 0.999,
    eps: Positive = 1e-8,
    weight_decay: NonNegative = 0.01,
) -> Optimizer:
    """Adam with weight decay decoupled from the gradient, applied to weight matrices only."""
    params = list(params)
    groups: list[dict[str, Any]] = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=lr, betas=(beta1, beta2), eps=eps, foreach=True
    )
