"""The disk cache of bundled and generated data sets' splits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hyperlab import data_cache
from hyperlab.build import _split_data
from hyperlab.data import TENSORS, Splits

MOONS = {
    "_target_": "hyperlab.data.moons",
    "n_samples": 200,
    "noise": 0.2,
    "seed": 3,
    "split": {"train": 0.7, "dev": 0.15, "test": 0.15, "seed": 0},
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HYPERLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def same(a: Splits, b: Splits) -> bool:
    return all(torch.equal(getattr(a, n), getattr(b, n)) for n in TENSORS) and (
        (a.classes, a.sha256) == (b.classes, b.sha256)
    )


def test_cached_splits_are_the_splits_made_again(cache: Path) -> None:
    made = data_cache.cached(MOONS, lambda: _split_data(MOONS))
    (file,) = cache.glob("*.npz")
    calls: list[int] = []
    again = data_cache.cached(MOONS, lambda: calls.append(1) or _split_data(MOONS))  # type: ignore[func-returns-value]
    assert calls == [] and same(again, made) and same(made, _split_data(MOONS))
    # Other settings are another file.
    data_cache.cached({**MOONS, "seed": 4}, lambda: _split_data({**MOONS, "seed": 4}))
    assert len(list(cache.glob("*.npz"))) == 2 and file.exists()


@pytest.mark.parametrize("damage", ["cut short", "not ours", "labels out of range"])
def test_a_damaged_file_is_made_again(cache: Path, damage: str) -> None:
    import numpy as np

    made = data_cache.cached(MOONS, lambda: _split_data(MOONS))
    (file,) = cache.glob("*.npz")
    if damage == "cut short":
        file.write_bytes(file.read_bytes()[:100])
    elif damage == "not ours":
        file.write_text("print('hello')\n")
    else:
        with np.load(file) as f:
            arrays = dict(f)
        arrays["y_dev"] = arrays["y_dev"] + 7
        np.savez(file, **arrays)
    assert same(data_cache.cached(MOONS, lambda: _split_data(MOONS)), made)


def test_set_empty_the_cache_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERLAB_CACHE_DIR", "")
    assert data_cache.directory() is None
    assert same(data_cache.cached(MOONS, lambda: _split_data(MOONS)), _split_data(MOONS))


def test_a_second_process_builds_digits_without_importing_scikit_learn(cache: Path) -> None:
    code = (
        "import sys\n"
        "from hyperlab.build import build_data\n"
        "s = build_data({'_target_': 'hyperlab.data.digits', "
        "'split': {'train': 0.7, 'dev': 0.15, 'test': 0.15, 'seed': 0}})\n"
        "print(len(s.y_train), 'sklearn' in sys.modules)\n"
    )
    env = {"HYPERLAB_CACHE_DIR": str(cache), "PATH": ""}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.stdout.split() == ["1257", "True"], first.stderr
    assert second.stdout.split() == ["1257", "False"], second.stderr


def test_a_train_dev_split_is_cached_with_the_others(cache: Path) -> None:
    held = {
        **MOONS,
        "split": {"train": 0.6, "dev": 0.15, "test": 0.15, "seed": 0, "train_dev": 0.1},
    }
    made = data_cache.cached(held, lambda: _split_data(held))
    again = data_cache.cached(held, lambda: pytest.fail("made again"))
    assert again.names == ("train", "train_dev", "dev", "test") and same(again, made)
    assert made.x_train_dev is not None and again.x_train_dev is not None
    assert torch.equal(again.x_train_dev, made.x_train_dev)
    assert again.y_train_dev is not None and len(again.y_train_dev) == 20
