"""Limits checked before anything runs: seeds in their library's range, a gradient check
that fits in memory, a multirun's tracking store reachable (issue 11, section 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Compose
from hyperlab.errors import ConfigError
from hyperlab.validate import validate

HYPERLAB = str(Path(sys.executable).parent / "hyperlab")


def hyperlab(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYPERLAB, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"},
        timeout=timeout,
    )


# --- seeds -----------------------------------------------------------------------------------

BAD_SEEDS = [
    ("seed=18446744073709551616", "seed=18446744073709551616", "2**64 - 1"),
    ("seed=-9223372036854775809", "seed=-9223372036854775809", "-2**63"),
    ("dataset.split.seed=-1", "dataset.split.seed=-1", "[0, 2**32 - 1]"),
    ("dataset.split.seed=99999999999", "dataset.split.seed=99999999999", "[0, 2**32 - 1]"),
    ("dataset=moons dataset.seed=4294967296", "dataset.seed=4294967296", "[0, 2**32 - 1]"),
    ("dataset=moons dataset.seed=-1", "dataset.seed=-1", "[0, 2**32 - 1]"),
    ("search=lr sweep.seed=-1", "sweep.seed=-1", "[0, 2**32 - 1]"),
    ("search=lr sweep.seed=4294967296", "sweep.seed=4294967296", "[0, 2**32 - 1]"),
    # the seeds derived from them
    ("seed=18446744073709551615 repeats=2", "repeats=2", "seeds 18446744073709551615..1844674"),
    ("task=retest study=s seed=18446744073709551614 seeds=3", "seeds=3", "2**64 - 1"),
    ("search=lr sweep.seed=4294967295 sweep.workers=2", "sweep.workers=2", "4294967295..4294"),
]


@pytest.mark.parametrize(
    ("overrides", "named", "allowed"), BAD_SEEDS, ids=[b[0] for b in BAD_SEEDS]
)
def test_a_seed_out_of_its_range_is_refused(
    cfg: Compose, overrides: str, named: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as e:
        validate(cfg(*overrides.split()))
    assert named in e.value.problem
    assert allowed in e.value.problem
    assert "e.g. " in e.value.fix and "seed=0" in e.value.fix


GOOD_SEEDS = [
    "seed=18446744073709551615",
    "seed=-9223372036854775808",
    "seed=18446744073709551613 repeats=3",
    "dataset.split.seed=4294967295",
    "dataset=moons dataset.seed=4294967295 dataset.split.seed=0",
    "search=lr sweep.seed=4294967294 sweep.workers=2",
    "sweep.seed=4294967295 sweep.workers=2",  # no study: the workers' seeds are not used
]


@pytest.mark.parametrize("overrides", GOOD_SEEDS)
def test_the_ends_of_each_range_are_allowed(cfg: Compose, overrides: str) -> None:
    validate(cfg(*overrides.split()))


def test_the_ends_of_the_ranges_are_those_the_libraries_accept() -> None:
    """The rules' bounds, checked against torch, NumPy and scikit-learn themselves."""
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    from hyperlab.validate import NUMPY_SEED_MAX, TORCH_SEED_MAX

    for seed in (-(2**63), TORCH_SEED_MAX):
        torch.manual_seed(seed)
        torch.Generator().manual_seed(seed)
    for seed in (-(2**63) - 1, TORCH_SEED_MAX + 1):
        with pytest.raises((ValueError, RuntimeError, OverflowError)):
            torch.manual_seed(seed)
    for seed in (0, NUMPY_SEED_MAX):
        np.random.RandomState(seed)
        train_test_split(list(range(10)), random_state=seed)
    for seed in (-1, NUMPY_SEED_MAX + 1):
        with pytest.raises(ValueError):
            train_test_split(list(range(10)), random_state=seed)


def test_a_resumed_study_wraps_its_workers_seeds(cfg: Compose) -> None:
    """Worker ids grow with every launch of a study: sweep.seed + id stays a valid seed."""
    from hyperlab.sweep import make_sampler, setup_of

    config = cfg("search=lr", "sweep.seed=4294967295")
    sampler = make_sampler(config, setup_of(config, []), worker=3)
    assert sampler is not None


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("seed=18446744073709551616", "seed=18446744073709551616"),
        ("dataset.split.seed=-1", "dataset.split.seed=-1"),
        ("dataset.split.seed=99999999999", "dataset.split.seed=99999999999"),
    ],
)
def test_the_command_refuses_a_seed_out_of_range(tmp_path: Path, override: str, named: str) -> None:
    r = hyperlab(tmp_path, override, "epochs=1", "progress=false")
    assert r.returncode == 2, r.stderr
    assert named in r.stderr and "fix:" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # nothing recorded
