"""Checkpoints for the resume tests: a real one after two epochs (trained()), and copies
with a field changed or removed (edited(), the BROKEN cases)."""

from __future__ import annotations

from pathlib import Path

import torch

from hyperlab.run import Job, run
from support.paths import Compose


def trained(cfg: Compose, tmp_path: Path) -> Path:
    """The checkpoint of a two-epoch moons run, saved at its last epoch."""
    run(cfg("dataset=moons", "epochs=2", "checkpoint.every=2"), Job(output_dir=tmp_path / "r"))
    return tmp_path / "r" / "checkpoints" / "epoch_0002.pt"


def edited(source: Path, target: Path, **changes: object) -> Path:
    """A copy of checkpoint `source` with some fields changed (None: removed)."""
    state = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    torch.save(state, target)
    return target


BROKEN = {
    # case: (fields changed, a part of the message)
    "no epoch": ({"epoch": None}, "it has no 'epoch'"),
    "negative epoch": ({"epoch": -5}, "epoch=-5 is not the number of epochs done"),
    "epoch a string": ({"epoch": "3"}, "epoch='3' is not"),
    "no overrides": ({"overrides": None}, "it has no 'overrides'"),
    "overrides not strings": ({"overrides": [1, 2]}, "overrides=list is not"),
    "no model": ({"model": None}, "it has no 'model'"),
    "rng not bytes": ({"torch_rng": torch.ones(3)}, "torch_rng=Tensor is not"),
    "best epoch past the checkpoint": (
        {"early_stopping": {"best_epoch": 3, "since": 0, "metric": "dev_loss", "model": {}}},
        "its early_stopping entry is not a best epoch (1 to 2)",
    ),
    "best weights not tensors": (
        {
            "early_stopping": {
                "best_epoch": 1,
                "since": 0,
                "metric": "dev_loss",
                "model": {"w": [1.0]},
            }
        },
        "its early_stopping entry is not",
    ),
    "no patience start": (
        {"early_stopping": {"best_epoch": 1, "metric": "dev_loss", "model": {"w": torch.ones(1)}}},
        "its early_stopping entry is not",
    ),
}
