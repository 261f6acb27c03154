"""Command-line overrides (`lr=0.1`, `+key=v`, `~key`, `optimizer=adam`): the key each one
sets, and several lists of them merged as a command line reads them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from hyperlab.schema import STUDY_NODES


def override_key(override: str) -> str:
    """The key an override sets: `+lr=0.1` and `~lr` set `lr`."""
    return override.split("=", 1)[0].lstrip("+~")


def merge(overrides: Iterable[str]) -> list[str]:
    """One override per key, the later one winning, as on a command line (in the order the
    keys first appeared)."""
    merged: dict[str, str] = {}
    for o in overrides:
        merged.pop(override_key(o), None)
        merged[override_key(o)] = o
    return list(merged.values())


def is_study_setting(override: str) -> bool:
    """True for an override of what only the study reads (its space, sampler, pruner,
    sweep settings, Hydra's own): `sampler.budgets=[0.4,0.3,0.3]`, `hydra/launcher=ray`."""
    return re.split(r"[./@]", override_key(override), maxsplit=1)[0] in STUDY_NODES
