"""A disk cache of the splits of bundled and generated data sets (digits, moons, ...):
the same settings give the same arrays, and scikit-learn's import (with SciPy's, about a
second) is what a short run would otherwise wait on to make them again.

A cached file holds arrays only, read with allow_pickle=False: data, never code. Its key
is the data set's settings with scikit-learn's and NumPy's versions, so an upgrade that
could change a generator's output or the split makes new files. A file that cannot be
read as expected is ignored and made again. HYPERLAB_CACHE_DIR moves the cache; set empty,
it turns the cache off."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperlab.data import TENSORS, Splits

HELD = ("x_train_dev", "y_train_dev")  # the train-dev split, where there is one

FORMAT = "hyperlab-splits/1"


def directory() -> Path | None:
    """Where cached splits go: $HYPERLAB_CACHE_DIR, else $XDG_CACHE_HOME/hyperlab/data
    (~/.cache/hyperlab/data); None when HYPERLAB_CACHE_DIR is set empty."""
    where = os.environ.get("HYPERLAB_CACHE_DIR")
    if where is not None:
        return Path(where).expanduser() if where else None
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "hyperlab" / "data"


def cached(dataset: Mapping[str, Any], make: Callable[[], Splits]) -> Splits:
    """The splits of `dataset` (a data set without a file), from the cache or made by
    `make` and then cached."""
    root = directory()
    if root is None:
        return make()
    versions = {p: metadata.version(p) for p in ("scikit-learn", "numpy")}
    text = json.dumps([FORMAT, dict(dataset), versions], sort_keys=True, default=str)
    path = root / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.npz"
    found = _read(path)
    if found is not None:
        return found
    splits = make()
    _write(path, splits)
    return splits


def _read(path: Path) -> Splits | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            names = [*TENSORS, *(HELD if HELD[0] in f.files else ())]
            arrays = {name: f[name] for name in names}
            classes, sha256 = tuple(str(c) for c in f["classes"]), str(f["sha256"])
    except Exception:  # missing, cut short (BadZipFile, EOFError), or not ours
        return None
    splits = [n.removeprefix("x_") for n in names if n.startswith("x_")]
    xs = [arrays[f"x_{s}"] for s in splits]
    ys = [arrays[f"y_{s}"] for s in splits]
    if not (
        all(x.dtype == np.float32 and x.ndim == 2 for x in xs)
        and len({x.shape[1] for x in xs}) == 1
        and all(y.dtype == np.int64 and y.shape == (len(x),) for x, y in zip(xs, ys, strict=True))
        and all(y.size == 0 or 0 <= y.min() <= y.max() < len(classes) for y in ys)
    ):
        return None
    return Splits(
        **{name: torch.from_numpy(a) for name, a in arrays.items()}, classes=classes, sha256=sha256
    )


def _write(path: Path, splits: Splits) -> None:
    """Written to a temporary file and renamed: a reader sees a whole file or none."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(
                f,
                **{name: getattr(splits, name).numpy() for name in TENSORS},
                **{
                    name: getattr(splits, name).numpy()
                    for name in HELD
                    if "train_dev" in splits.names
                },
                classes=np.array(splits.classes, dtype=str),
                sha256=np.array(splits.sha256),
            )
        tmp.replace(path)
    except OSError:  # a read-only or full disk: the run goes on without the cache
        if tmp is not None:
            tmp.unlink(missing_ok=True)
