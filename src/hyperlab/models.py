"""Fully connected networks (softmax regression when there is no hidden layer), their
normalization layers, dropout and L2 penalty (initializations: hyperlab.init)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hyperlab.ranges import (
    Activation,
    Averaging,
    HiddenUnits,
    KeepProb,
    Natural,
    NonNegative,
    Positive,
)

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


def layer_sizes(model: Mapping[str, Any], n_features: int, n_classes: int) -> list[int]:
    """The widths of a model config's layers, from its inputs to its outputs."""
    return [n_features, *hidden_sizes(model["hidden_units"], model["layers"]), n_classes]


@dataclass(frozen=True)
class Normalization:
    """What follows each hidden Linear layer, before its activation: `norm(width)` builds
    the layer for `width` units. conf/normalization/<kind>.yaml names the function of the
    same name below, which returns one (or None: no normalization)."""

    layer: Callable[[int], nn.Module]
    # Batch norm drops the Linear layer's bias: beta of the normalization replaces it,
    # since subtracting the mini-batch mean removes any constant bias.
    linear_bias: bool = True

    def __call__(self, width: int) -> nn.Module:
        return self.layer(width)


def none() -> Normalization | None:
    """No normalization: z goes straight to the activation."""
    return None


def batchnorm(eps: Positive = 1e-5, running_beta: Averaging = 0.9) -> Normalization:
    """Batch norm on z. At evaluation z is normalized with exponentially weighted averages
    of the mini-batch means and variances: running = beta * running + (1 - beta) * batch."""
    # torch's momentum weighs the new batch: the course's beta is 1 - momentum.
    layer = functools.partial(nn.BatchNorm1d, eps=eps, momentum=1.0 - running_beta)
    return Normalization(layer, linear_bias=False)


def layernorm(eps: Positive = 1e-5) -> Normalization:
    """Layer norm on z: each example over its units, the same in training and evaluation."""
    return Normalization(functools.partial(nn.LayerNorm, eps=eps))


# A dropout stream is seeded apart from the data order's, which the run's seed seeds.
DROPOUT_SEED = 0x5DEECE66D


def dropout_seed(seed: int) -> int:
    """The seed of a run's dropout stream (torch takes seeds below 2**64)."""
    return (seed + DROPOUT_SEED) % 2**64


class InvertedDropout(nn.Dropout):
    """The course's inverted dropout: a unit is kept where a uniform draw is below
    keep_prob and divided by keep_prob; the identity in eval mode. The draws come from
    the run's own dropout stream (seed_dropout), the one a stacked population gives the
    same trial (hyperlab.population), so a trial draws the same masks alone or stacked
    and a checkpoint can carry the stream on."""

    def __init__(self, keep_prob: float) -> None:
        super().__init__(p=1.0 - keep_prob)
        self.keep_prob = keep_prob
        self.generator: torch.Generator | None = None  # None: torch's global stream

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return a
        noise = torch.rand(a.shape, generator=self.generator, device=a.device)
        return a * (noise < self.keep_prob) / self.keep_prob


def seed_dropout(model: nn.Module, seed: int) -> None:
    """Give the model's dropout layers one stream, on its device, seeded from the run's
    seed (dropout_seed)."""
    layers = [m for m in model.modules() if isinstance(m, InvertedDropout)]
    if not layers:
        return
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(dropout_seed(seed))
    for layer in layers:
        layer.generator = generator


def dropout_generator(model: nn.Module) -> torch.Generator | None:
    """The model's dropout stream, where seed_dropout gave it one."""
    return next((m.generator for m in model.modules() if isinstance(m, InvertedDropout)), None)


class MLP(nn.Sequential):
    """Linear -> [norm] -> activation -> [inverted dropout], per hidden layer, then a linear
    output of one logit per class (softmax is applied by the cross-entropy loss)."""

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_units: HiddenUnits = 128,
        layers: Natural = 2,
        activation: Activation = "relu",
        normalization: Normalization | None = None,
        keep_prob: KeepProb = 1.0,
    ) -> None:
        modules: list[nn.Module] = []
        width = n_features
        bias = normalization is None or normalization.linear_bias
        for units in hidden_sizes(hidden_units, layers):
            modules.append(nn.Linear(width, units, bias=bias))
            if normalization is not None:
                modules.append(normalization(units))
            modules.append(ACTIVATIONS[activation]())
            if keep_prob < 1.0:
                modules.append(InvertedDropout(keep_prob))
            width = units
        modules.append(nn.Linear(width, n_classes))
        super().__init__(*modules)

    @property
    def weights(self) -> list[torch.Tensor]:
        """The weight matrices W[l]: what L2 regularization penalizes."""
        return [m.weight for m in self if isinstance(m, nn.Linear)]


@dataclass(frozen=True)
class Regularization:
    """conf/regularization/*.yaml: L2's lambda (the loop adds l2_penalty to the cost) and
    dropout's keep_prob (the MLP's inverted dropout; 1 = off)."""

    l2: NonNegative = 0.0
    keep_prob: KeepProb = 1.0


def l2_penalty(weights: Sequence[torch.Tensor], lambd: float, m: int) -> torch.Tensor:
    """lambd / (2m) * sum of squared weights (biases and normalization parameters excluded)."""
    return (lambd / (2.0 * m)) * sum((w * w).sum() for w in weights)  # type: ignore[return-value]
