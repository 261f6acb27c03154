"""Weight initializations: conf/init/<scheme>.yaml names the function of the same name.

Each sets the weights of every Linear layer of a model, in order, and its biases to zero,
and returns the model. The builder calls it with the model (`_partial_: true`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from hyperlab.ranges import Positive


def _each_linear(model: nn.Module, weights: Callable[[torch.Tensor, int], object]) -> nn.Module:
    """`weights(W, n_in)` fills each Linear layer's W in place; its bias starts at zero."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                weights(m.weight, m.in_features)
                if m.bias is not None:
                    m.bias.zero_()
    return model


def he(model: nn.Module) -> nn.Module:
    """He: W ~ N(0, 2/n_in), for ReLU layers."""
    return _each_linear(model, lambda w, n_in: w.normal_(0.0, math.sqrt(2.0 / n_in)))


def xavier(model: nn.Module) -> nn.Module:
    """Xavier in the course's form: W ~ N(0, 1/n_in), for tanh layers."""
    return _each_linear(model, lambda w, n_in: w.normal_(0.0, math.sqrt(1.0 / n_in)))


def zeros(model: nn.Module) -> nn.Module:
    """W = 0: every unit of a layer computes the same thing (no symmetry breaking)."""
    return _each_linear(model, lambda w, n_in: w.zero_())


def random_large(model: nn.Module, scale: Positive = 10.0) -> nn.Module:
    """W ~ N(0, 1) * scale: large weights saturate activations and explode the cost."""
    return _each_linear(model, lambda w, n_in: w.normal_(0.0, 1.0).mul_(scale))
