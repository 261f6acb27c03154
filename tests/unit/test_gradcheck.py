"""Gradient checking catches a wrong backprop and passes a right one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperlab import init, models
from hyperlab.gradcheck import gradient_check
from hyperlab.models import MLP


class HalfGradTanh(torch.autograd.Function):
    """tanh whose backward is deliberately wrong: half the true derivative."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, z: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(z)
        ctx.save_for_backward(a)
        return a

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (a,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * (1 - a * a) * 0.5


class BuggyTanh(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return HalfGradTanh.apply(z)  # type: ignore[no-any-return]


def small_model(**kw: object) -> MLP:
    torch.manual_seed(0)
    return init.xavier(MLP(4, 3, hidden_units=6, layers=2, activation="tanh", **kw))  # type: ignore[arg-type, return-value]


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


@pytest.mark.parametrize("normalization", ["none", "batchnorm", "layernorm"])
def test_a_correct_model_passes(normalization: str) -> None:
    norm = getattr(models, normalization)()  # the function conf/normalization/<name> names
    check = gradient_check(small_model(normalization=norm), *batch(), l2=0.7, m=100)
    assert check.difference < 1e-7
    assert check.verdict.startswith("great")
    assert (
        check.checked
        == check.total
        == sum(p.numel() for p in small_model(normalization=norm).parameters())
    )


def test_a_wrong_backward_is_caught_and_located() -> None:
    model = small_model()
    model[3] = BuggyTanh()  # the second hidden layer's activation
    check = gradient_check(model, *batch())
    assert check.difference > 1e-3
    assert check.verdict.startswith("bug")
    # The parameters before the bad activation get wrong gradients; the output layer's do not.
    worst = [name for name, diff in check.worst if diff > 1e-3]
    assert "0.weight" in worst and "2.weight" in worst
    assert dict(check.worst)["4.weight"] < 1e-7


class HalfGradSquareSum(torch.autograd.Function):
    """sum(w^2) whose backward forgets the factor 2."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return (w * w).sum()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * w


def test_the_l2_term_is_part_of_the_checked_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    import hyperlab.gradcheck as gc

    def buggy_l2(weights: list[torch.Tensor], lambd: float, m: int) -> torch.Tensor:
        return (lambd / (2 * m)) * sum(HalfGradSquareSum.apply(w) for w in weights)  # type: ignore[return-value]

    monkeypatch.setattr(gc, "l2_penalty", buggy_l2)
    assert gradient_check(small_model(), *batch(), l2=0.0).difference < 1e-7
    assert gradient_check(small_model(), *batch(), l2=50.0, m=16).difference > 1e-3


def test_dropout_is_turned_off_for_the_check() -> None:
    model = small_model(keep_prob=0.5)
    assert any(isinstance(mod, nn.Dropout) for mod in model.modules())
    assert gradient_check(model, *batch()).difference < 1e-7  # random masks would fail it


def test_a_random_subset_of_components() -> None:
    check = gradient_check(small_model(), *batch(), max_components=20)
    assert check.checked == 20 and check.total > 20
    assert check.difference < 1e-7
