"""Limits checked before anything runs: seeds in their library's range, a gradient check
that fits in memory, a multirun's tracking store reachable (issue 11, section 4).

Here: in this process, from composed configs;
unit/test_limits.py and e2e/test_limits.py hold the rest."""

from __future__ import annotations

import pytest

from hyperlab.errors import ConfigError
from hyperlab.validate import validate
from support.paths import Compose

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


def test_a_resumed_study_wraps_its_workers_seeds(cfg: Compose) -> None:
    """Worker ids grow with every launch of a study: sweep.seed + id stays a valid seed."""
    from hyperlab.search.setup import make_sampler, setup_of

    config = validate(cfg("search=lr", "sweep.seed=4294967295"))
    sampler = make_sampler(config, setup_of(config, []), worker=3)
    assert sampler is not None


class Built(Exception):
    """Raised instead of building the model: the check got past the memory estimate."""


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    import hyperlab.run

    def build(config: object) -> None:
        raise Built

    monkeypatch.setattr(hyperlab.run, "build", build)


# digits (64 features, 10 classes), 5000 x 5000 units: 25.4M weights, 406 MB to train, about
# 1.2 GB to check every component (609 MB for a sample)
BIG = ("model.hidden_units=5000", "model.layers=2", "task=gradcheck")


def test_a_gradcheck_too_big_for_memory_is_refused_before_the_model_is_built(
    cfg: Compose, monkeypatch: pytest.MonkeyPatch, no_build: None
) -> None:
    import hyperlab.run
    from hyperlab.gradcheck import check_gradients

    monkeypatch.setattr(hyperlab.run, "_memory_bytes", lambda: 2**29)
    with pytest.raises(ConfigError) as e:
        check_gradients(cfg(*BIG))
    problem = e.value.problem
    assert "task=gradcheck with model.hidden_units=5000" in problem
    assert "the check needs about 1.1" in problem and "GiB" in problem
    assert "0.5 GiB of memory" in problem
    assert "model.hidden_units=128" in e.value.fix
    # A sample of the components would not fit either: the fix does not offer it.
    assert "gradcheck.max_components=1000" not in e.value.fix


def test_the_fix_offers_a_sample_of_components_where_that_fits(
    cfg: Compose, monkeypatch: pytest.MonkeyPatch, no_build: None
) -> None:
    import hyperlab.run
    from hyperlab.gradcheck import check_gradients

    monkeypatch.setattr(hyperlab.run, "_memory_bytes", lambda: 2**30)
    with pytest.raises(ConfigError) as e:
        check_gradients(cfg(*BIG))
    assert "gradcheck.max_components=1000" in e.value.fix
    assert "model.hidden_units=128" in e.value.fix
    with pytest.raises(Built):  # the fix passes the estimate
        check_gradients(cfg(*BIG, "gradcheck.max_components=1000"))
    with pytest.raises(Built):  # and training the same model is not held to it
        hyperlab.run.run(cfg(*BIG[:2]))
