"""Every option of every config group composes, validates and builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hyperlab.build import build
from hyperlab.validate import validate
from support.paths import CONF, Compose, group_options

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, o) for g in GROUPS for o in group_options(g)]


def data_files(tmp_path: Path) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 3)), rng.integers(0, 3, 60)
    csv = tmp_path / "table.csv"
    rows = ["a,b,c,label", *(f"{r[0]},{r[1]},{r[2]},{c}" for r, c in zip(x, y, strict=True))]
    csv.write_text("\n".join(rows) + "\n")
    npz = tmp_path / "arrays.npz"
    np.savez(npz, X=x, y=y)
    return {"csv": [f"dataset.path='{csv}'"], "npz": [f"dataset.path='{npz}'"]}


def test_every_group_has_options() -> None:
    expected = {
        "dataset",
        "model",
        "init",
        "normalization",
        "regularization",
        "augment",
        "optimizer",
        "schedule",
    }
    assert expected <= set(GROUPS)
    assert {"digits", "moons", "circles", "blobs", "spirals", "csv", "npz"} <= set(
        group_options("dataset")
    )
    assert {"gd", "momentum", "rmsprop", "adam", "adamw"} <= set(group_options("optimizer"))
    assert {"constant", "inverse_time", "exponential", "staircase", "cosine"} <= set(
        group_options("schedule")
    )


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_builds(cfg: Compose, tmp_path: Path, group: str, option: str) -> None:
    extra = data_files(tmp_path).get(option, []) if group == "dataset" else []
    config = validate(cfg(f"{group}={option}", *extra))
    parts = build(config)
    assert parts.data.n_classes >= 2
    assert parts.optimizer.param_groups[0]["lr"] == pytest.approx(config.lr)
    assert 0 < parts.schedule(3) <= 1


def test_lr_shorthand_reaches_every_optimizer(cfg: Compose) -> None:
    for option in group_options("optimizer"):
        config = validate(cfg(f"optimizer={option}", "lr=0.0123"))
        assert config.optimizer["lr"] == 0.0123


def test_softmax_model_has_no_hidden_layer(cfg: Compose) -> None:
    parts = build(validate(cfg("model=softmax", "dataset=blobs")))
    assert len(parts.model) == 1
