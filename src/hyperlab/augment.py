"""Data augmentation (conf/augment/): new training examples drawn from the ones there are,
the course's other regularizer. Hydra-free, like hyperlab.loop.

A transform takes one training mini-batch `[B, features]` and the loop's generator (the
one that shuffles, seeded by `seed`: the same seed gives the same augmented batches, and a
checkpoint's saved shuffle state resumes them too) and returns a new batch. The loop calls
it on training mini-batches only: dev, test and every evaluation see the data as it is.
`augment=none` builds no transform at all, so the default loop is today's, step for step.

The inputs arrive standardized on the training split (hyperlab.data): a shift moves the
standardized pixels and fills the uncovered edge with 0, the training mean of the pixel.
Shifting the raw pixels instead would put ink on border pixels the training set never inks
(standard deviation near 0): hundreds of standard deviations, not a plausible digit.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

from hyperlab.errors import ConfigError
from hyperlab.ranges import Degrees, Natural, NonNegative


class Augment(Protocol):
    """A per-batch transform of training inputs."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...


class Shift:
    """Each image moved by whole pixels, up to `max_shift` in x and in y (drawn per example,
    zero filled), then, with `max_degrees`, rotated by an angle drawn in
    [-max_degrees, max_degrees] about its centre (bilinear, zero filled)."""

    def __init__(self, side: int, max_shift: int, max_degrees: float) -> None:
        self.side, self.max_shift, self.max_degrees = side, max_shift, max_degrees

    def offsets(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """[n, 2] whole-pixel offsets (dy, dx) in [-max_shift, max_shift], drawn on the CPU
        whatever the device: the same seed gives the same draws everywhere."""
        s = self.max_shift
        return torch.randint(-s, s + 1, (n, 2), generator=generator)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        images = x.reshape(-1, self.side, self.side)
        if self.max_shift:
            images = moved(images, self.offsets(len(images), generator).to(x.device))
        if self.max_degrees:
            angles = torch.rand(len(images), generator=generator) * 2 - 1
            images = rotated(images, (angles * self.max_degrees).to(x.device))
        return images.reshape(x.shape)


def moved(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Images [B, H, W] moved down by offsets[:, 0] and right by offsets[:, 1] pixels
    (negative: up, left), zero filled: out[b, i, j] = images[b, i - dy, j - dx]. Exact, and
    one gather for the whole batch (pad by the largest offset, then index each window)."""
    b, h, w = images.shape
    pad = int(offsets.abs().max()) if offsets.numel() else 0
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(h, device=images.device) + pad - offsets[:, :1]  # [B, H]
    cols = torch.arange(w, device=images.device) + pad - offsets[:, 1:]  # [B, W]
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


def rotated(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Images [B, H, W] rotated by degrees[b] about their centres, bilinear, zero filled."""
    a = degrees * (math.pi / 180)
    cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), [len(images), 1, *images.shape[1:]], False)
    out = F.grid_sample(images[:, None], grid, padding_mode="zeros", align_corners=False)
    return out[:, 0]


class Noise:
    """Gaussian noise of standard deviation `std` added to every input (any data set)."""

    def __init__(self, std: float) -> None:
        self.std = std

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # Drawn on the CPU, as the shuffle is: the same seed gives the same batches anywhere.
        return x + self.std * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)


# --- the options' builders (conf/augment/*.yaml name them; build.py passes n_features) ------


def none(n_features: int) -> Augment | None:
    """conf/augment/none.yaml: no transform; the loop trains on the batches as they are."""
    return None


def shift(n_features: int, max_shift: Natural = 1, max_degrees: Degrees = 0.0) -> Augment | None:
    """conf/augment/shift.yaml: random shifts (and rotations) of square images; None where
    both are 0 (the identity)."""
    side = math.isqrt(n_features)
    if side < 2 or side * side != n_features:
        raise ConfigError(
            f"augment=shift: the data set has {n_features} features, not a square image",
            "augment=shift needs image data such as dataset=digits (64 features = 8x8); "
            "for tabular data use augment=noise",
        )
    if max_shift >= side:
        raise ConfigError(
            f"augment.max_shift={max_shift} moves a {side}x{side} image entirely out of view",
            f"use a shift smaller than the image, e.g. augment.max_shift={max(1, side // 8)}",
        )
    if not max_shift and not max_degrees:
        return None
    return Shift(side, max_shift, float(max_degrees))


def noise(n_features: int, std: NonNegative = 0.1) -> Augment | None:
    """conf/augment/noise.yaml: Gaussian input noise; None at std 0 (the identity)."""
    return Noise(float(std)) if std else None
