from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hyperlab import data, splitting
from hyperlab.build import build_data
from hyperlab.errors import DataError

SPLIT = {"train": 0.7, "dev": 0.15, "test": 0.15, "seed": 0}


def splits_of(x: np.ndarray, y: np.ndarray, split: dict[str, float] = SPLIT) -> data.Splits:
    return splitting.split_standardize(*data.check(x, y), split)


def test_digits_split_sizes_and_classes() -> None:
    s = build_data({"_target_": "hyperlab.data.digits", "split": SPLIT})
    assert (len(s.y_train), len(s.y_dev), len(s.y_test)) == (1257, 270, 270)
    assert s.n_features == 64 and s.n_classes == 10
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64


def test_standardized_with_training_statistics_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(1000, 4))
    y = rng.integers(0, 2, 1000)
    s = splits_of(x, y)
    torch.testing.assert_close(s.x_train.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.x_train.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    train, train_dev, dev, test = splitting.split_indices(y, SPLIT)
    assert train_dev.size == 0  # none asked for
    assert sorted([*train, *dev, *test]) == list(range(1000))
    mu, sd = x[train].mean(0), x[train].std(0)
    # Dev and test go through the training set's transform, not their own.
    np.testing.assert_allclose(s.x_dev.numpy(), (x[dev] - mu) / sd, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.x_test.numpy(), (x[test] - mu) / sd, rtol=1e-4, atol=1e-5)
    assert abs(s.x_dev.mean().item()) > 1e-4  # its own mean would be exactly 0


def test_constant_feature_does_not_divide_by_zero() -> None:
    x = np.c_[np.ones(100), np.arange(100.0)]
    s = splits_of(x, np.arange(100) % 2)
    assert torch.isfinite(s.x_train).all() and s.x_train[:, 0].abs().max() == 0


def test_split_is_seeded_and_stratified() -> None:
    x, y = data.moons(1000, 0.2, seed=0)
    a, b = splits_of(x, y), splits_of(x, y)
    assert torch.equal(a.x_dev, b.x_dev)
    c = splits_of(x, y, {**SPLIT, "seed": 1})
    assert not torch.equal(a.x_dev, c.x_dev)
    assert a.y_dev.float().mean().item() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("maker", [data.moons, data.circles, data.blobs, data.spirals])
def test_generators_are_seeded(maker: object) -> None:
    x1, y1 = maker(n_samples=300, seed=3)  # type: ignore[operator]
    x2, y2 = maker(n_samples=300, seed=3)  # type: ignore[operator]
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_spirals_has_balanced_arms() -> None:
    x, y = data.spirals(n_samples=900, n_classes=3)
    assert x.shape == (900, 2) and np.bincount(y).tolist() == [300, 300, 300]


def test_csv_label_by_name_index_and_string_classes(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("species,w,h\ncat,1,2\ndog,3,4\ncat,5,6\n")
    x, y = data.csv(str(p), label="species")
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]]
    _, codes, classes = data.check(x, y)
    assert classes == ("cat", "dog") and codes.tolist() == [0, 1, 0]
    x, y = data.csv(str(p), label=0)
    assert x.shape == (3, 2)


def test_npz_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "a.npz"
    np.savez(p, features=np.ones((4, 2)), labels=np.array([0, 1, 0, 1]))
    x, y = data.npz(str(p), x_key="features", y_key="labels")
    assert x.shape == (4, 2) and y.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("content", "label", "message"),
    [
        ("", -1, "no data rows"),
        ("a,b\n", -1, "no data rows"),
        ("a,b\n1,x\n2,y\n", 0, "not a number"),
        ("a,b,c\n1,2\n", -1, "has 2 fields"),
        ("a,b\n1,2\n", "nope", "not a column"),
        ("a,b\n1,2\n", 5, "outside the 2 columns"),
    ],
)
def test_csv_errors_name_the_problem(
    tmp_path: Path, content: str, label: object, message: str
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(DataError, match=message):
        data.csv(str(p), label=label)  # type: ignore[arg-type]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as e:
        data.csv(str(tmp_path / "nope.csv"))
    assert "dataset.path" in str(e.value)


def test_npz_errors(tmp_path: Path) -> None:
    p = tmp_path / "a.npz"
    np.savez(p, X=np.ones((3, 2)))
    with pytest.raises(DataError, match="no array named 'y'"):
        data.npz(str(p))
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot be read"):
        data.npz(str(garbage))


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.ones((4, 2)), np.array([0, 1, 0]), "labels have shape"),
        (np.array([[1.0, np.nan], [1, 2], [3, 4]]), np.array([0, 1, 0]), "NaN or infinite"),
        (np.array([[1.0, np.inf], [1, 2]]), np.array([0, 1]), "NaN or infinite"),
        (np.ones((3, 2)), np.array([1, 1, 1]), "at least 2"),
        (np.ones((3, 2)), np.array([0.5, 1, 0]), "not whole numbers"),
        (np.ones((0, 2)), np.array([]), "shape"),
        (np.ones((2, 2, 2)), np.array([0, 1]), "shape"),
    ],
)
def test_check_rejects_bad_arrays(x: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        data.check(x, y)


def test_too_few_examples_for_three_splits() -> None:
    with pytest.raises(DataError, match="leaves a split empty"):
        splits_of(np.arange(6.0).reshape(3, 2), np.array([0, 1, 0]))
