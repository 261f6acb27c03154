"""Data sets as train/dev/test tensors, standardized with the training set's statistics only."""

from __future__ import annotations

import csv as _csv
import dataclasses
import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hyperlab.errors import DataError
from hyperlab.ranges import Classes, Count, Fraction, NonNegative, NumpySeed, Samples
from hyperlab.stores import existing_file

Arrays = tuple[np.ndarray, np.ndarray]
TENSORS = ("x_train", "y_train", "x_dev", "y_dev", "x_test", "y_test")


@dataclass(frozen=True)
class Splits:
    """Train/dev/test tensors: float32 inputs, int64 class labels 0..n_classes-1."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_dev: torch.Tensor
    y_dev: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    sha256: str = ""  # of the loaded examples (content_hash): what a run trained on
    # Held out of the training distribution, never trained on (dataset.split.train_dev):
    # separates variance from data mismatch when dev and test come from elsewhere.
    x_train_dev: torch.Tensor | None = None
    y_train_dev: torch.Tensor | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        """The splits there are, in the course's order: train, [train_dev,] dev, test."""
        if self.y_train_dev is None:
            return ("train", "dev", "test")
        return ("train", "train_dev", "dev", "test")

    def to(self, device: torch.device) -> Splits:
        """The same splits, their tensors on `device`."""
        names = [f"{xy}_{n}" for n in self.names for xy in "xy"]
        moved = {name: getattr(self, name).to(device) for name in names}
        return dataclasses.replace(self, **moved)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The (inputs, labels) of split `name`: train, train_dev, dev or test."""
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


# --- bundled and generated data sets -------------------------------------------------------


def digits() -> Arrays:
    """scikit-learn's bundled 8x8 digits: 1797 examples, 64 features, 10 classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def moons(n_samples: Samples = 1000, noise: NonNegative = 0.2, seed: NumpySeed = 0) -> Arrays:
    """Two interleaving half circles (binary)."""
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n_samples, noise=noise, random_state=seed)  # type: ignore[no-any-return]


def circles(
    n_samples: Samples = 1000,
    noise: NonNegative = 0.05,
    factor: Fraction = 0.5,
    seed: NumpySeed = 0,
) -> Arrays:
    """A circle inside a circle (binary)."""
    from sklearn.datasets import make_circles

    return make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)  # type: ignore[no-any-return]


def blobs(
    n_samples: Samples = 1000,
    n_features: Count = 2,
    centers: Classes = 4,
    noise: NonNegative = 1.0,
    seed: NumpySeed = 0,
) -> Arrays:
    """Gaussian clusters with standard deviation `noise`, one class each."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=centers,
        cluster_std=noise,
        random_state=seed,
    )
    return x, y


def spirals(
    n_samples: Samples = 900, n_classes: Classes = 3, noise: NonNegative = 0.2, seed: NumpySeed = 0
) -> Arrays:
    """`n_classes` interleaved spiral arms of about n_samples / n_classes points each."""
    rng = np.random.default_rng(seed)
    per_class = n_samples // n_classes
    r = np.tile(np.linspace(0.05, 1.0, per_class), n_classes)
    arm = np.repeat(np.arange(n_classes), per_class)
    theta = arm * 2 * math.pi / n_classes + r * 4.0 + rng.normal(0.0, noise, arm.size)
    x = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    return x, arm


# --- local files ---------------------------------------------------------------------------


# Features beyond this magnitude overflow the standardization (their squares leave float64).
HUGE = 1e150


def csv(path: str, label: str | int = -1, delimiter: str = ",") -> tuple[np.ndarray, np.ndarray]:
    """A CSV file with a header row; `label` names the label column (header name or index)."""
    p = existing_file(path, "CSV")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            rows = [row for row in _csv.reader(f, delimiter=delimiter) if row]
    except UnicodeDecodeError as e:
        raise DataError(
            f"dataset.path: '{p}' is not a UTF-8 text CSV file (byte {e.start} cannot be read)",
            "give a CSV file; for a NumPy archive use dataset=npz",
        ) from None
    except (OSError, _csv.Error) as e:
        raise DataError(f"CSV file '{p}' cannot be read: {e}", "give a valid CSV file") from None
    if len(rows) < 2:
        raise DataError(
            f"dataset.path: CSV file '{p}' has no data rows",
            "give a file with a header row and at least one row per class",
        )
    header, body = rows[0], rows[1:]
    if len(header) < 2:
        raise DataError(
            f"CSV file '{p}' has a single column ({header[0][:60]!r}): it needs a label "
            "column and at least one feature",
            f"check the delimiter (dataset.delimiter={delimiter!r}) and the header row",
        )
    col = _label_column(header, label, p)
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(
                f"CSV file '{p}' line {n} has {len(row)} fields, the header has {len(header)}",
                "make every row as long as the header",
            )
        if not row[col].strip():
            raise DataError(
                f"CSV file '{p}' line {n} has no label (column '{header[col]}' is empty)",
                "give every row its class, or drop the rows without one",
            )
    labels = np.array([row[col].strip() for row in body])
    features = [[v for i, v in enumerate(row) if i != col] for row in body]
    try:
        x = np.array(features, dtype=np.float64)
    except ValueError:
        line, field = _first_non_numeric(features, header, col)
        raise DataError(
            f"CSV file '{p}' line {line}, column '{field}' is not a number",
            "features must be numeric; encode categories as numbers or drop the column",
        ) from None
    return x, labels


def _label_column(header: list[str], label: str | int, p: Path) -> int:
    if isinstance(label, int) or (isinstance(label, str) and label.lstrip("-").isdigit()):
        idx = int(label)
        if not -len(header) <= idx < len(header):
            raise DataError(
                f"dataset.label={label} is outside the {len(header)} columns of '{p}'",
                f"use a column index in [-{len(header)}, {len(header) - 1}] or a header name",
            )
        return idx % len(header)
    if label not in header:
        raise DataError(
            f"dataset.label='{label}' is not a column of '{p}'",
            f"use one of: {', '.join(header)}",
        )
    return header.index(label)


def _first_non_numeric(rows: list[list[str]], header: list[str], col: int) -> tuple[int, str]:
    names = [h for i, h in enumerate(header) if i != col]
    for n, row in enumerate(rows, start=2):
        for name, v in zip(names, row, strict=True):
            try:
                float(v)
            except ValueError:
                return n, name
    return 0, "?"


def npz(path: str, x_key: str = "X", y_key: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """A NumPy .npz archive holding the inputs under `x_key` and the labels under `y_key`."""
    p = existing_file(path, "NPZ")
    if not zipfile.is_zipfile(p):
        with p.open("rb") as f:
            single = f.read(6) == b"\x93NUMPY"
        raise DataError(
            f"NPZ file '{p}' cannot be read: it is not an NPZ archive"
            + (" (it is a single .npy array)" if single else " (not a zip file)"),
            "give a file written by numpy.savez(path, X=inputs, y=labels)",
        )
    try:
        # allow_pickle=False: an archive must not run code when it is read.
        with np.load(p, allow_pickle=False) as archive:
            missing = [k for k in (x_key, y_key) if k not in archive.files]
            if missing:
                raise DataError(
                    f"NPZ file '{p}' has no array named {', '.join(repr(k) for k in missing)}",
                    f"its arrays are {archive.files}: set dataset.x_key / dataset.y_key",
                )
            return archive[x_key], archive[y_key]
    except DataError:
        raise
    except Exception as e:
        raise DataError(
            f"NPZ file '{p}' cannot be read: {e}", "give a file written by numpy.savez"
        ) from None


# --- checks, split and standardization -----------------------------------------------------


def check(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Validate inputs and labels; return float inputs, labels 0..C-1 and the class names."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(
            f"the inputs have shape {x.shape}; expected (examples, features) with both > 0",
            "give a 2-D feature matrix with one row per example",
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(
            f"the labels have shape {y.shape} but the inputs have {x.shape[0]} examples",
            "give one label per example (a 1-D vector as long as the inputs)",
        )
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise DataError(
            f"the inputs are not real numbers (dtype {x.dtype})", "encode them as real numbers"
        )
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"the inputs hold {int(bad.sum())} NaN or infinite values (first at example {row}, "
            f"feature {col})",
            "impute or drop the missing values before training",
        )
    huge = np.abs(x) > HUGE
    if huge.any():
        row, col = np.argwhere(huge)[0]
        raise DataError(
            f"the inputs hold values too large to standardize ({x[row, col]:.3g} at example "
            f"{row}, feature {col}; at most {HUGE:.0e})",
            "rescale the feature (e.g. take its logarithm or divide it by a power of ten)",
        )
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype.kind in "USb"):
        raise DataError(
            f"the labels are of type {y.dtype}; expected integers or strings",
            "give one class label (an integer or a string) per example",
        )
    if np.iscomplexobj(y):
        raise DataError("the labels are complex numbers", "give integer or string class labels")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise DataError(
                "the labels hold NaN or infinite values", "give a class for each example"
            )
        if not np.all(y == np.round(y)):
            raise DataError(
                "the labels are not whole numbers; hyperlab trains classifiers",
                "give integer or string class labels",
            )
        y = y.astype(np.int64)
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise DataError(
            f"the labels hold {classes.size} class; a classifier needs at least 2",
            "check the label column (dataset.label)",
        )
    if classes.size > max(2, len(y) // 2):
        raise DataError(
            f"the labels hold {classes.size} classes for {len(y)} examples: fewer than two "
            "examples per class (an ID or a continuous target, not a class label?)",
            "check the label column (dataset.label, dataset.y_key); hyperlab trains classifiers",
        )
    return x, codes.astype(np.int64), tuple(str(c) for c in classes)


def content_hash(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...]) -> str:
    """SHA-256 of a data set as loaded and checked (before it is split): a file edited
    between two runs, or a generator changed, gives another hash. Milliseconds for
    digits."""
    h = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update("\n".join(classes).encode())
    return h.hexdigest()
