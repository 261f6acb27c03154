"""Limits checked before anything runs: seeds in their library's range, a gradient check
that fits in memory, a multirun's tracking store reachable (issue 11, section 4).

Here: the pieces on their own;
integration/test_limits.py and e2e/test_limits.py hold the rest."""

from __future__ import annotations

import pytest


def test_the_ends_of_the_ranges_are_those_the_libraries_accept() -> None:
    """The rules' bounds, checked against torch, NumPy and scikit-learn themselves."""
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    from hyperlab.ranges import NUMPY_SEED_MAX, TORCH_SEED_MAX

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


def test_the_estimate_counts_what_the_check_allocates() -> None:
    """bytes_needed against the check itself: the float64 copy and its gradient (16 bytes
    a weight) beside the model (4), the L2 term's squares, the compared components."""
    from hyperlab.gradcheck import bytes_needed

    w = 10**6
    base = bytes_needed(w, w, largest=w, activations=0, l2=False, trained=False)
    assert base == w * (4 + 20 + 24)
    assert bytes_needed(w, w, largest=w, activations=0, l2=True, trained=False) == base + 8 * w
    assert bytes_needed(w, w, largest=w, activations=0, l2=False, trained=True) == base + 12 * w
    sample = bytes_needed(w, 10, largest=w, activations=0, l2=False, trained=False)
    assert sample == w * 24 + 10 * (24 + 128)
