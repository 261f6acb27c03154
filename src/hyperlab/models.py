"""Fully connected networks (softmax regression when there is no hidden layer) and their
initialization, normalization, dropout and L2 penalty."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


def hidden_sizes(hidden_units: int | Sequence[int], layers: int) -> list[int]:
    """Hidden layer sizes: a list as given, or `layers` layers of `hidden_units` units."""
    if isinstance(hidden_units, int):
        return [hidden_units] * layers
    return [int(h) for h in hidden_units]


class MLP(nn.Sequential):
    """Linear -> [norm] -> activation -> [inverted dropout], per hidden layer, then a linear
    output of one logit per class (softmax is applied by the cross-entropy loss).

    With batch norm the hidden Linear layers have no bias: beta of the normalization
    replaces it, since subtracting the mini-batch mean removes any constant bias.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_units: int | Sequence[int] = 128,
        layers: int = 2,
        activation: str = "relu",
        normalization: str = "none",
        norm_eps: float = 1e-5,
        running_beta: float = 0.9,
        keep_prob: float = 1.0,
    ) -> None:
        if normalization not in ("none", "batchnorm", "layernorm"):
            raise ValueError(f"unknown normalization {normalization!r}")
        modules: list[nn.Module] = []
        width = n_features
        for units in hidden_sizes(hidden_units, layers):
            modules.append(nn.Linear(width, units, bias=normalization != "batchnorm"))
            if normalization == "batchnorm":
                # torch's momentum weighs the new batch: the course's beta is 1 - momentum.
                modules.append(nn.BatchNorm1d(units, eps=norm_eps, momentum=1.0 - running_beta))
            elif normalization == "layernorm":
                modules.append(nn.LayerNorm(units, eps=norm_eps))
            modules.append(ACTIVATIONS[activation]())
            if keep_prob < 1.0:
                # torch's Dropout is inverted dropout: it scales kept units by 1/keep_prob
                # in training and is the identity in eval mode.
                modules.append(nn.Dropout(p=1.0 - keep_prob))
            width = units
        modules.append(nn.Linear(width, n_classes))
        super().__init__(*modules)

    @property
    def weights(self) -> list[torch.Tensor]:
        """The weight matrices W[l]: what L2 regularization penalizes."""
        return [m.weight for m in self if isinstance(m, nn.Linear)]


@dataclass(frozen=True)
class Init:
    """Weight initialization of every Linear layer; biases start at zero.

    he: N(0, 2/n_in); xavier (the course's form): N(0, 1/n_in); zeros: 0;
    random_large: N(0, 1) * scale.
    """

    scheme: str = "he"
    scale: float = 10.0

    def __call__(self, model: nn.Module) -> nn.Module:
        with torch.no_grad():
            for m in model.modules():
                if not isinstance(m, nn.Linear):
                    continue
                n_in = m.in_features
                if self.scheme == "he":
                    m.weight.normal_(0.0, math.sqrt(2.0 / n_in))
                elif self.scheme == "xavier":
                    m.weight.normal_(0.0, math.sqrt(1.0 / n_in))
                elif self.scheme == "zeros":
                    m.weight.zero_()
                elif self.scheme == "random_large":
                    m.weight.normal_(0.0, 1.0).mul_(self.scale)
                else:
                    raise ValueError(f"unknown init scheme {self.scheme!r}")
                if m.bias is not None:
                    m.bias.zero_()
        return model


def l2_penalty(weights: Sequence[torch.Tensor], lambd: float, m: int) -> torch.Tensor:
    """lambd / (2m) * sum of squared weights (biases and normalization parameters excluded)."""
    return (lambd / (2.0 * m)) * sum((w * w).sum() for w in weights)  # type: ignore[return-value]
