"""Which torch device a run trains on: the `device` setting, checked against the machine."""

from __future__ import annotations

import re

import torch

from hyperlab.errors import ConfigError

SPELLING = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


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
    if not SPELLING.match(setting):
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
