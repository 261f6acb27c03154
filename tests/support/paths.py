"""Where things are in the checkout, and the options of a config group."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
SRC = ROOT / "src"
BENCH = ROOT / "bench"

# The `cfg` fixture's type: compose(*overrides) -> the config a `hyperlab ...` line would get.
Compose = Callable[..., DictConfig]


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))
