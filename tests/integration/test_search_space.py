"""Search spaces: parsing, the scales, conditional parameters, and every sampler.

Here: in this process, from composed configs; unit/test_search_space.py holds the rest."""

from __future__ import annotations

import math

import optuna
import pytest
from omegaconf import OmegaConf

from hyperlab.search import space
from hyperlab.search.setup import Setup, make_sampler, setup_of
from hyperlab.validate import validate
from support.paths import Compose, group_options

optuna.logging.set_verbosity(optuna.logging.WARNING)


def cheap_objective(values: dict[str, object]) -> float:
    """Peaks at lr = 1e-2 and beta = 0.99, on their own scales."""
    lr = float(values["lr"])  # type: ignore[arg-type]
    beta = float(values["optimizer.beta"])  # type: ignore[arg-type]
    return -((math.log10(lr) + 2) ** 2) - (math.log10(1 - beta) + 2) ** 2


def run_sampler(cfg: Compose, sampler: str, seed: int, n: int = 16) -> list[dict[str, object]]:
    config = validate(cfg("search=lr_beta", f"sampler={sampler}", f"sweep.seed={seed}"))
    setup = setup_of(config, [])
    study = optuna.create_study(sampler=make_sampler(config, setup, worker=0), direction="maximize")
    history = []
    for _ in range(min(n, setup.n_trials)):
        t = study.ask()
        values = space.suggest(t, setup.params, naive=setup.naive)
        study.tell(t, cheap_objective(values))
        history.append(values)
    return history


SAMPLERS = group_options("sampler")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_is_seeded_and_stays_in_range(cfg: Compose, sampler: str) -> None:
    a, b = run_sampler(cfg, sampler, seed=3), run_sampler(cfg, sampler, seed=3)
    assert a == b  # reproducible
    for values in a:
        assert 1e-4 <= float(values["lr"]) <= 1.0  # type: ignore[arg-type]
        assert 0.9 <= float(values["optimizer.beta"]) <= 0.999  # type: ignore[arg-type]
    if sampler != "grid":  # the grid is the grid, whatever the seed
        assert run_sampler(cfg, sampler, seed=4) != a


def test_grid_covers_its_points_once(cfg: Compose) -> None:
    config = validate(cfg("search=lr_eps", "sampler=grid"))
    setup = setup_of(config, [])
    assert setup.n_trials == 25
    study = optuna.create_study(sampler=make_sampler(config, setup, 0))
    seen = set()
    for _ in range(25):
        t = study.ask()
        v = space.suggest(t, setup.params)
        study.tell(t, 0.0)
        seen.add((v["lr"], v["optimizer.eps"]))
    assert len(seen) == 25
    assert len({lr for lr, _ in seen}) == 5  # 25 trials, only 5 learning rates: the lesson


def test_random_is_naive_and_log_uniform_is_not(cfg: Compose) -> None:
    assert setup_of(validate(cfg("search=lr", "sampler=random")), []).naive
    assert not setup_of(validate(cfg("search=lr", "sampler=log_uniform")), []).naive


def test_bayesian_is_tpe(cfg: Compose) -> None:
    config = cfg("search=lr", "sampler=bayesian")
    assert OmegaConf.to_container(config.sampler) == OmegaConf.to_container(
        cfg("search=lr", "sampler=tpe").sampler
    )


def test_study_settings_come_with_the_space(cfg: Compose) -> None:
    setup: Setup = setup_of(validate(cfg("search=lr_beta")), [])
    assert setup.n_trials == 30 and [p.key for p in setup.params] == ["lr", "optimizer.beta"]
    assert cfg("search=lr_beta").optimizer._target_.endswith("momentum")
