from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyperlab import init
from hyperlab.models import MLP, batchnorm, l2_penalty, layernorm, none

NORMALIZATIONS = {"none": none, "batchnorm": batchnorm, "layernorm": layernorm}


def test_hidden_layers_from_units_and_layers_or_a_list() -> None:
    linears = [m for m in MLP(5, 3, hidden_units=7, layers=3) if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 7), (7, 7), (7, 3)]
    linears = [m for m in MLP(5, 3, hidden_units=[9, 4]) if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 9), (9, 4), (4, 3)]


def test_softmax_regression_is_one_linear_layer() -> None:
    model = MLP(4, 3, hidden_units=[], layers=0)
    assert [type(m) for m in model] == [nn.Linear]


def test_batchnorm_drops_the_hidden_bias_and_uses_the_course_beta() -> None:
    model = MLP(4, 2, hidden_units=6, layers=2, normalization=batchnorm(running_beta=0.8))
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [m.bias is None for m in linears] == [True, True, False]
    bn = next(m for m in model if isinstance(m, nn.BatchNorm1d))
    x = torch.randn(32, 4)
    model.train()
    z = linears[0](x)
    model(x)
    # running = beta * running + (1 - beta) * batch statistic (running_mean starts at 0).
    torch.testing.assert_close(bn.running_mean, 0.2 * z.mean(0).detach())


def test_batchnorm_evaluates_with_running_averages() -> None:
    torch.manual_seed(0)
    model = MLP(3, 2, hidden_units=4, layers=1, normalization=batchnorm(eps=1e-5))
    model.train()
    for _ in range(5):
        model(torch.randn(16, 3) * 3 + 1)
    model.eval()
    x = torch.randn(1, 3)  # a single example: no mini-batch statistics to use
    lin, bn = model[0], model[1]
    assert isinstance(lin, nn.Linear) and isinstance(bn, nn.BatchNorm1d)
    z = lin(x)
    assert bn.running_mean is not None and bn.running_var is not None
    z_norm = (z - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5)
    expected = model[3](torch.relu(bn.weight * z_norm + bn.bias))
    torch.testing.assert_close(model(x), expected)


def test_inverted_dropout_keeps_the_expected_activation() -> None:
    torch.manual_seed(0)
    model = MLP(10, 2, hidden_units=2000, layers=1, keep_prob=0.8)
    drop = next(m for m in model if isinstance(m, nn.Dropout))
    a = torch.ones(1, 200_000)
    drop.train()
    out = drop(a)
    kept = out[out > 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.8))  # a /= keep_prob
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    assert (out > 0).float().mean().item() == pytest.approx(0.8, abs=0.01)
    drop.eval()
    assert torch.equal(drop(a), a)  # off at evaluation


@pytest.mark.parametrize(("scheme", "std"), [("he", 2.0), ("xavier", 1.0)])
def test_variance_scaled_inits(scheme: str, std: float) -> None:
    torch.manual_seed(0)
    model = getattr(init, scheme)(MLP(400, 2, hidden_units=300, layers=1))
    w = model[0].weight
    assert w.std().item() == pytest.approx(math.sqrt(std / 400), rel=0.02)
    assert w.mean().item() == pytest.approx(0.0, abs=0.002)
    assert all(m.bias.abs().sum() == 0 for m in model if isinstance(m, nn.Linear))


def test_zeros_and_random_large_inits() -> None:
    model = init.zeros(MLP(5, 2, hidden_units=4, layers=1))
    assert all(p.abs().sum() == 0 for p in model.parameters())
    torch.manual_seed(0)
    model = init.random_large(MLP(500, 2, hidden_units=400, layers=1), scale=10.0)
    assert model[0].weight.std().item() == pytest.approx(10.0, rel=0.02)


def test_l2_penalty_value_and_gradient() -> None:
    w1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    w2 = torch.tensor([[0.5, -0.5]], requires_grad=True)
    lambd, m = 0.7, 10
    penalty = l2_penalty([w1, w2], lambd, m)
    # lambda / (2m) * (1 + 4 + 9 + 16 + 0.25 + 0.25)
    assert penalty.item() == pytest.approx(0.7 / 20 * 30.5)
    penalty.backward()
    assert w1.grad is not None and w2.grad is not None
    torch.testing.assert_close(w1.grad, lambd / m * w1.detach())  # dW += lambda/m * W
    torch.testing.assert_close(w2.grad, lambd / m * w2.detach())


def test_l2_covers_weights_only() -> None:
    model = MLP(3, 2, hidden_units=4, layers=2, normalization=batchnorm())
    assert [tuple(w.shape) for w in model.weights] == [(4, 3), (4, 4), (2, 4)]


@pytest.mark.parametrize("normalization", ["none", "batchnorm", "layernorm"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_gradients_pass_a_two_sided_finite_difference_check(
    normalization: str, activation: str
) -> None:
    torch.manual_seed(0)
    norm = NORMALIZATIONS[normalization]()
    model = MLP(4, 3, hidden_units=5, layers=2, activation=activation, normalization=norm)
    init.xavier(model.double())
    with torch.no_grad():  # non-zero biases: ReLU's kink at exactly 0 is not differentiable
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    model.train()  # batch norm with mini-batch statistics, as in training; no dropout
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    lambd, m = 0.3, 8
    params = list(model.parameters())

    def cost(theta: torch.Tensor) -> float:
        torch.nn.utils.vector_to_parameters(theta, params)
        return (F.cross_entropy(model(x), y) + l2_penalty(model.weights, lambd, m)).item()

    theta = torch.nn.utils.parameters_to_vector(params).detach().clone()
    model.zero_grad()
    (F.cross_entropy(model(x), y) + l2_penalty(model.weights, lambd, m)).backward()
    grad = torch.cat([p.grad.flatten() for p in params])  # type: ignore[union-attr]
    eps = 1e-7
    approx = torch.zeros_like(theta)
    with torch.no_grad():
        for i in range(theta.numel()):
            e = torch.zeros_like(theta)
            e[i] = eps
            approx[i] = (cost(theta + e) - cost(theta - e)) / (2 * eps)
    diff = (approx - grad).norm() / (approx.norm() + grad.norm())
    assert diff < 1e-7, f"relative difference {diff:.2e}"


def test_the_validator_knows_the_builders_names() -> None:
    from hyperlab import models, ranges

    assert set(ranges.ACTIVATIONS) == set(models.ACTIVATIONS)


def test_layer_norm_and_no_normalization_keep_the_hidden_bias() -> None:
    model = MLP(4, 2, hidden_units=6, layers=1, normalization=layernorm(eps=1e-3))
    assert [type(m) for m in model] == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear]
    assert model[0].bias is not None and model[1].eps == 1e-3
    assert [type(m) for m in MLP(4, 2, hidden_units=6, layers=1, normalization=none())] == [
        nn.Linear,
        nn.ReLU,
        nn.Linear,
    ]
