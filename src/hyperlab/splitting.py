"""Train / [train-dev] / dev / test: how the examples are dealt out, and standardized with
the training split's statistics alone.

One file (or a generated set) is split by dataset.split's fractions, stratified and seeded.
With dataset.split.train_dev, a slice of what would be trained on is held out: the
train-dev set, from the training distribution but never trained on. When dev and test come
from files of their own (dataset.dev_path, dataset.test_path: the distribution the model
will serve, which the training data may not match), the training file is split into train
and train-dev only, and the course's reading separates avoidable bias (train), variance
(train-dev - train) and data mismatch (dev - train-dev).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hyperlab.data import Splits
from hyperlab.errors import DataError
from hyperlab.ranges import Fraction, HoldOut, NumpySeed

Labelled = tuple[np.ndarray, np.ndarray, tuple[str, ...]]  # inputs, codes, class names


@dataclass(frozen=True)
class Split:
    """dataset.split: the fractions of the examples in each split (they sum to 1), and the
    seed of the shuffle that deals them out. With dev and test files of their own, only
    train_dev applies: the fraction of the training file held out."""

    train: Fraction = 0.7
    dev: Fraction = 0.15
    test: Fraction = 0.15
    seed: NumpySeed = 0
    train_dev: HoldOut = 0.0


def _deal(idx: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the rest, `size` of idx) at random, stratified by class where every class can
    appear in both parts."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y[idx])
    ok = counts.min() >= 2 and min(size, idx.size - size) >= counts.size
    rest, part = train_test_split(
        idx, test_size=size, random_state=seed, stratify=y[idx] if ok else None
    )
    return rest, part


def split_indices(
    y: np.ndarray, fractions: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the train, train-dev (empty without one), dev and test splits: sizes
    from `fractions` (a Split's fields), stratified by class where every class can appear
    in each, seeded by its seed. The dev and test splits do not depend on train_dev."""
    split = Split(**fractions)
    n = len(y)
    n_dev, n_test = round(n * split.dev), round(n * split.test)
    n_train_dev = round(n * split.train_dev)
    n_train = n - n_dev - n_test - n_train_dev
    if min(n_train, n_dev, n_test) < 1 or (split.train_dev and n_train_dev < 1):
        sizes = f"{n_train}/{n_dev}/{n_test}" + (f"/{n_train_dev}" if split.train_dev else "")
        raise DataError(
            f"{n} examples split {sizes} (train/dev/test"
            + ("/train-dev" if split.train_dev else "")
            + ") leaves a split empty",
            "give more examples or larger fractions (dataset.split.train/dev/test/train_dev)",
        )
    rest, test = _deal(np.arange(n), y, n_test, split.seed)
    train, dev = _deal(rest, y, n_dev, split.seed)
    train_dev = np.arange(0)
    if n_train_dev:
        train, train_dev = _deal(train, y, n_train_dev, split.seed)
    return train, train_dev, dev, test


def split_standardize(
    x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], fractions: Mapping[str, Any]
) -> Splits:
    """Split by split_indices(), then standardize every split with the mean and standard
    deviation of the training split alone (dev and test must not leak into the model)."""
    train, train_dev, dev, test = split_indices(y, fractions)
    parts = {"train": (x, y, train), "dev": (x, y, dev), "test": (x, y, test)}
    if train_dev.size:
        parts["train_dev"] = (x, y, train_dev)
    return _standardized(parts, classes)


def mismatched(
    train_file: Labelled, dev_file: Labelled, test_file: Labelled, fractions: Mapping[str, Any]
) -> Splits:
    """Train and train-dev from the training file (split.train_dev of it held out), dev and
    test from their own files, their labels read by class name against the training file's
    classes; all standardized with the train split's statistics."""
    split = Split(**fractions)
    x, y, classes = train_file
    n_train_dev = round(len(y) * split.train_dev)
    train, train_dev = np.arange(len(y)), np.arange(0)
    if split.train_dev and not 1 <= n_train_dev < len(y):
        raise DataError(
            f"the training file's {len(y)} examples leave an empty train or train-dev split "
            f"with dataset.split.train_dev={split.train_dev}",
            "give more examples or another fraction (e.g. dataset.split.train_dev=0.1)",
        )
    if n_train_dev:
        train, train_dev = _deal(train, y, n_train_dev, split.seed)
    parts = {"train": (x, y, train)}
    if train_dev.size:
        parts["train_dev"] = (x, y, train_dev)
    for name, (xs, codes, names) in (("dev", dev_file), ("test", test_file)):
        parts[name] = (xs, _recode(codes, names, classes, name), np.arange(len(codes)))
        if xs.shape[1] != x.shape[1]:
            raise DataError(
                f"the {name} file has {xs.shape[1]} features, the training file {x.shape[1]}",
                f"give a {name} file with the training file's columns (dataset.{name}_path)",
            )
    return _standardized(parts, classes)


def _recode(
    codes: np.ndarray, names: tuple[str, ...], classes: tuple[str, ...], split: str
) -> np.ndarray:
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise DataError(
            f"the {split} file has classes the training file has not: {', '.join(unknown)}",
            f"give a {split} file whose labels are among {', '.join(classes)}",
        )
    index = np.array([classes.index(n) for n in names], dtype=np.int64)
    return np.asarray(index[codes])


def _standardized(
    parts: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], classes: tuple[str, ...]
) -> Splits:
    from sklearn.preprocessing import StandardScaler

    x_train, _, train = parts["train"]
    scaler = StandardScaler().fit(x_train[train])

    def tensors(
        x: np.ndarray, y: np.ndarray, part: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        standard = scaler.transform(x[part])
        # float32 holds 3.4e38: a dev or test value standard deviations beyond reach of the
        # training split's would become infinite.
        far = ~(np.abs(standard) < np.finfo(np.float32).max)
        if far.any():
            row, col = np.argwhere(far)[0]
            raise DataError(
                f"feature {col} of example {part[row]} is {standard[row, col]:.3g} standard "
                "deviations from the training mean: too far to train on",
                "check the feature for outliers or a wrong unit; rescale or clip it",
            )
        return torch.from_numpy(standard.astype(np.float32)), torch.from_numpy(y[part])

    out = {name: tensors(*xyp) for name, xyp in parts.items()}
    held = out.get("train_dev")
    return Splits(
        *out["train"],
        *out["dev"],
        *out["test"],
        classes,
        x_train_dev=held[0] if held else None,
        y_train_dev=held[1] if held else None,
    )
