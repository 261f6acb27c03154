"""Train / train-dev / dev / test: sizes, disjointness, and dev and test from files of
their own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperlab.data import check
from hyperlab.errors import DataError
from hyperlab.splitting import mismatched, split_indices, split_standardize

SPLIT = {"train": 0.6, "dev": 0.15, "test": 0.15, "seed": 0, "train_dev": 0.1}


def labels(n: int = 1000, classes: int = 3) -> np.ndarray:
    return np.arange(n) % classes


def test_a_train_dev_split_comes_out_of_training_and_leaves_dev_and_test_as_they_were() -> None:
    y = labels()
    train, train_dev, dev, test = split_indices(y, SPLIT)
    assert (len(train), len(train_dev), len(dev), len(test)) == (600, 100, 150, 150)
    assert sorted([*train, *train_dev, *dev, *test]) == list(range(1000))
    before = split_indices(y, {**SPLIT, "train": 0.7, "train_dev": 0.0})
    assert before[1].size == 0
    np.testing.assert_array_equal(before[2], dev)  # dev and test do not move
    np.testing.assert_array_equal(before[3], test)
    assert sorted([*train, *train_dev]) == sorted(before[0])
    assert np.bincount(y[train_dev]).tolist() == [34, 33, 33]  # stratified


def test_the_train_dev_split_is_standardized_with_the_training_statistics_only() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(5.0, 3.0, (1000, 4)), labels()
    s = split_standardize(*check(x, y), SPLIT)
    assert s.names == ("train", "train_dev", "dev", "test")
    assert s.x_train_dev is not None and s.y_train_dev is not None
    train, train_dev, _, _ = split_indices(y, SPLIT)
    mu, sd = x[train].mean(0), x[train].std(0)
    expected = torch.from_numpy(((x[train_dev] - mu) / sd).astype(np.float32))
    torch.testing.assert_close(s.x_train_dev, expected, atol=1e-5, rtol=0)
    assert split_standardize(*check(x, y), {**SPLIT, "train": 0.7, "train_dev": 0.0}).names == (
        "train",
        "dev",
        "test",
    )


def test_dev_and_test_files_are_read_by_class_name_and_kept_whole() -> None:
    rng = np.random.default_rng(1)
    train = check(rng.normal(0, 1, (200, 2)), np.array(["cat", "dog"] * 100))
    dev = check(rng.normal(3, 1, (40, 2)), np.array(["dog"] * 30 + ["cat"] * 10))
    # one class only (check() would refuse it as a whole data set): codes against ("dog",)
    test = (rng.normal(3, 1, (30, 2)), np.zeros(30, dtype=np.int64), ("dog",))
    s = mismatched(train, dev, test, SPLIT)
    assert s.classes == ("cat", "dog")
    assert (len(s.y_train), len(s.y_dev), len(s.y_test)) == (180, 40, 30)
    assert s.y_train_dev is not None and len(s.y_train_dev) == 20
    assert s.y_dev.tolist() == [1] * 30 + [0] * 10  # dog is class 1 in the training file
    assert s.y_test.tolist() == [1] * 30
    # standardized by the train split alone: dev keeps its shift of about 3 deviations
    assert float(s.x_dev.mean()) > 2


def test_a_dev_file_with_an_unknown_class_or_other_columns_is_refused() -> None:
    rng = np.random.default_rng(2)
    train = check(rng.normal(0, 1, (100, 2)), np.array(["cat", "dog"] * 50))
    bird = check(rng.normal(0, 1, (20, 2)), np.array(["cat", "bird"] * 10))
    with pytest.raises(DataError, match="dev file has classes the training file has not: bird"):
        mismatched(train, bird, train, SPLIT)
    wide = check(rng.normal(0, 1, (20, 3)), np.array(["cat", "dog"] * 10))
    with pytest.raises(DataError, match="test file has 3 features, the training file 2"):
        mismatched(train, train, wide, SPLIT)
