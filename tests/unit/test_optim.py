"""The optimizers against the course's update formulas, computed by hand."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.optim import Optimizer

from hyperlab import optim

GRADS = [
    torch.tensor([0.5, -2.0, 1e-3]),
    torch.tensor([0.1, -1.0, 3.0]),
    torch.tensor([-0.4, 0.2, 0.0]),
]
W0 = torch.tensor([1.0, -1.0, 0.5])


def run_steps(make: Callable[[list[torch.nn.Parameter]], Optimizer]) -> torch.Tensor:
    w = torch.nn.Parameter(W0.clone().double())
    opt = make([w])
    for g in GRADS:
        w.grad = g.clone().double()
        opt.step()
    return w.detach()


def test_gd() -> None:
    expected = W0.double() - 0.1 * sum(g.double() for g in GRADS)
    torch.testing.assert_close(run_steps(lambda p: optim.gd(p, lr=0.1)), expected)


def test_momentum_is_the_course_exponentially_weighted_form() -> None:
    lr, beta = 0.1, 0.9
    w, v = W0.double().clone(), torch.zeros(3, dtype=torch.float64)
    for g in GRADS:
        v = beta * v + (1 - beta) * g.double()  # v_dW = beta v_dW + (1 - beta) dW
        w = w - lr * v
    torch.testing.assert_close(run_steps(lambda p: optim.momentum(p, lr=lr, beta=beta)), w)


def test_rmsprop() -> None:
    lr, beta, eps = 0.01, 0.9, 1e-8
    w, s = W0.double().clone(), torch.zeros(3, dtype=torch.float64)
    for g in GRADS:
        g = g.double()
        s = beta * s + (1 - beta) * g**2
        w = w - lr * g / (s.sqrt() + eps)
    got = run_steps(lambda p: optim.rmsprop(p, lr=lr, beta=beta, eps=eps))
    torch.testing.assert_close(got, w)


@pytest.mark.parametrize("factory", [optim.adam, optim.adamw])
def test_adam_with_bias_correction(factory: Callable[..., Optimizer]) -> None:
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    w = W0.double().clone()
    v = torch.zeros(3, dtype=torch.float64)
    s = torch.zeros(3, dtype=torch.float64)
    for t, g in enumerate(GRADS, start=1):
        g = g.double()
        v = b1 * v + (1 - b1) * g
        s = b2 * s + (1 - b2) * g**2
        v_hat, s_hat = v / (1 - b1**t), s / (1 - b2**t)
        w = w - lr * v_hat / (s_hat.sqrt() + eps)
    kwargs = {"weight_decay": 0.0} if factory is optim.adamw else {}
    got = run_steps(lambda p: factory(p, lr=lr, beta1=b1, beta2=b2, eps=eps, **kwargs))
    torch.testing.assert_close(got, w)


def test_adamw_decays_weight_matrices_only() -> None:
    w = torch.nn.Parameter(torch.ones(2, 2))
    b = torch.nn.Parameter(torch.ones(2))
    opt = optim.adamw([w, b], lr=0.1, weight_decay=0.5)
    w.grad, b.grad = torch.zeros(2, 2), torch.zeros(2)
    opt.step()
    # Zero gradient: only the decoupled decay moves W, by lr * wd * W; b stays.
    torch.testing.assert_close(w.detach(), torch.full((2, 2), 1 - 0.1 * 0.5))
    torch.testing.assert_close(b.detach(), torch.ones(2))


def test_momentum_velocity_starts_at_zero() -> None:
    # The course's v_0 = 0: the first step moves by lr * (1 - beta) * dW, not lr * dW.
    w = torch.nn.Parameter(torch.tensor([0.0]))
    opt = optim.momentum([w], lr=1.0, beta=0.9)
    w.grad = torch.tensor([1.0])
    opt.step()
    assert math.isclose(w.item(), -0.1, rel_tol=1e-6)
