"""A train-dev set through run(): dev and test from files of their own, the reading that
separates variance from data mismatch, and what MLflow records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hyperlab.errors import ConfigError, DataError
from hyperlab.run import run
from hyperlab.tracking import drain
from hyperlab.validate import validate
from support.paths import Compose
from support.records import runs_of


def write_csv(path: Path, n: int, noise: float, shift: float, seed: int) -> str:
    from sklearn.datasets import make_moons

    x, y = make_moons(n, noise=noise, random_state=seed)
    np.savetxt(path, np.c_[x + shift, y], delimiter=",", header="a,b,label", comments="", fmt="%g")
    return str(path)


def test_dev_and_test_from_another_distribution_read_as_data_mismatch(
    cfg: Compose, tmp_path: Path, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    files = [
        f"dataset.path={write_csv(tmp_path / 'train.csv', 600, 0.1, 0.0, 0)}",
        # the served distribution: noisier and shifted
        f"dataset.dev_path={write_csv(tmp_path / 'dev.csv', 200, 0.35, 0.4, 1)}",
        f"dataset.test_path={write_csv(tmp_path / 'test.csv', 200, 0.35, 0.4, 2)}",
    ]
    run(cfg("dataset=csv", *files, "dataset.split.train_dev=0.2", "epochs=30", tracking=True))
    drain()
    (r,) = runs_of(mlflow_uri, request.node.name)
    m, tags = r.data.metrics, r.data.tags
    assert {"train_dev_loss", "train_dev_acc", "train_dev_error"} <= set(m)
    # variance is measured on train-dev, data mismatch between train-dev and dev
    assert float(tags["hyperlab.variance"]) == pytest.approx(
        m["train_dev_error"] - m["train_error"], abs=1e-4
    )
    assert float(tags["hyperlab.data_mismatch"]) == pytest.approx(
        m["dev_error"] - m["train_dev_error"], abs=1e-4
    )
    assert float(tags["hyperlab.data_mismatch"]) > 0.05
    assert "data mismatch" in tags["hyperlab.bias_variance"]
    assert tags["hyperlab.next_step"].endswith("collect or synthesize training examples like them")


def test_a_train_dev_slice_of_one_distribution_shows_no_mismatch(cfg: Compose) -> None:
    held = ["dataset=moons", "dataset.split.train=0.6", "dataset.split.train_dev=0.1"]
    config = validate(cfg(*held, "epochs=3"))
    assert config.dataset["split"]["train_dev"] == 0.1
    result = run(config)
    assert 0 <= result.objective <= 1


def test_split_settings_that_cannot_hold_are_refused(cfg: Compose, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sum to 1.1, not 1 \(train=0.7, train_dev=0.1"):
        validate(cfg("dataset=moons", "dataset.split.train_dev=0.1"))
    path = write_csv(tmp_path / "t.csv", 100, 0.1, 0.0, 0)
    with pytest.raises(ConfigError, match=r"dataset\.dev_path without dataset\.test_path"):
        validate(cfg("dataset=csv", f"dataset.path={path}", f"dataset.dev_path={path}"))
    with pytest.raises(DataError, match=r"dataset\.test_path: CSV file .* does not exist"):
        validate(
            cfg(
                "dataset=csv",
                f"dataset.path={path}",
                f"dataset.dev_path={path}",
                f"dataset.test_path={tmp_path / 'missing.csv'}",
            )
        )
