"""Learning-rate schedules: each maps the epoch, counted from 1 as the course counts
epoch_num, to a factor of lr0: with decay_rate 1, inverse time trains epoch 1 at lr0/2."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hyperlab.ranges import Count, KeepProb, NonNegative, Unit


@dataclass(frozen=True)
class Constant:
    """lr = lr0."""

    def __call__(self, epoch: int) -> float:
        return 1.0


@dataclass(frozen=True)
class InverseTime:
    """lr = lr0 / (1 + decay_rate * epoch), the course's learning-rate decay."""

    decay_rate: NonNegative = 1.0

    def __call__(self, epoch: int) -> float:
        return 1.0 / (1.0 + self.decay_rate * epoch)


@dataclass(frozen=True)
class Exponential:
    """lr = lr0 * rate ** epoch."""

    rate: KeepProb = 0.95  # (0, 1]: a factor that shrinks lr, or keeps it

    def __call__(self, epoch: int) -> float:
        return float(self.rate**epoch)


@dataclass(frozen=True)
class Staircase:
    """lr = lr0 / (1 + decay_rate * floor((epoch - 1) / interval)): `interval` epochs at
    each rate, the first ones at lr0."""

    decay_rate: NonNegative = 1.0
    interval: Count = 5

    def __call__(self, epoch: int) -> float:
        return 1.0 / (1.0 + self.decay_rate * ((epoch - 1) // self.interval))


@dataclass(frozen=True)
class Cosine:
    """Half a cosine over the epochs done: lr0 at epoch 1, down to lr0 * min_factor after
    `epochs` epochs (torch's CosineAnnealingLR with T_max=epochs)."""

    epochs: Count = 20
    min_factor: Unit = 0.0

    def __call__(self, epoch: int) -> float:
        cos = (1.0 + math.cos(math.pi * min(epoch - 1, self.epochs) / self.epochs)) / 2.0
        return self.min_factor + (1.0 - self.min_factor) * cos
