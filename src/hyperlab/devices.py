"""What a run trains on: the torch device (the `device` setting, checked against the
machine) and the number of threads (`threads`)."""

from __future__ import annotations

import os

import torch

from hyperlab.errors import ConfigError
from hyperlab.ranges import DEVICE_SPELLING
from hyperlab.schema import Config


def available() -> list[str]:
    """The devices this machine can train on, as the `device` setting spells them."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def resolve(setting: str) -> torch.device:
    """The device `setting` names: `auto` is the first GPU where there is one, else the CPU.
    A device this machine does not have is refused, naming those it has."""
    have = available()
    if not DEVICE_SPELLING.fullmatch(setting):
        raise ConfigError(
            f"device={setting!r} is not a device: it must be auto, cpu, cuda, cuda:N or mps",
            f"set device=auto (this machine has {', '.join(have)})",
        )
    if setting == "auto":
        return torch.device(next((d for d in have if d.startswith("cuda")), "cpu"))
    wanted = "cuda:0" if setting == "cuda" else setting
    if wanted not in have:
        raise ConfigError(
            f"device={setting}: this machine has no such device (it has {', '.join(have)})",
            "set device=auto, or one of those it has",
        )
    return torch.device(wanted)


# Multiply-adds per training step above which a stack's products gain from more threads.
# Measured here (2 cores, MLflow's writer on one): the moons net [2, 10, 5, 2] at K=32 and
# batch 64 (0.16 M) trains 1.45x slower on two threads than on one; the digits MLP
# 64-128-128-10 at K=20 (34 M) 1.1x faster on the whole command.
SHARED_WORK = 2_000_000


def threads(config: Config, work: int = 0) -> int:
    """The torch threads a run trains with: `threads`, or where it is 0, one for a single
    model (a small one's kernels are too short to share) and, for a stacked population
    whose step takes more than SHARED_WORK multiply-adds (`work`), the machine's cores
    split between the workers."""
    if config.threads:
        return config.threads
    if work <= SHARED_WORK:
        return 1
    return max(1, (os.cpu_count() or 1) // config.sweep.workers)
