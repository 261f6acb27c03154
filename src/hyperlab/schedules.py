"""Learning-rate schedules: each maps the epoch index (0 for the first epoch) to a factor of lr0."""

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
    """lr = lr0 / (1 + decay_rate * floor(epoch / interval)): constant steps, then a drop."""

    decay_rate: NonNegative = 1.0
    interval: Count = 5

    def __call__(self, epoch: int) -> float:
        return 1.0 / (1.0 + self.decay_rate * (epoch // self.interval))


@dataclass(frozen=True)
class Cosine:
    """Half a cosine from lr0 at epoch 0 down to lr0 * min_factor at epoch `epochs`."""

    epochs: Count = 20
    min_factor: Unit = 0.0

    def __call__(self, epoch: int) -> float:
        cos = (1.0 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs)) / 2.0
        return self.min_factor + (1.0 - self.min_factor) * cos
