"""Lesson presets (conf/experiment/): each composes to its lesson, every job it launches
builds, and a shortened version runs through the `hyperlab` command.

Here: in this process, from composed configs;
unit/test_presets.py and e2e/test_presets.py hold the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from hyperlab.augment import Noise
from hyperlab.build import build
from hyperlab.cli import CONFIG_DIR
from hyperlab.search.setup import setup_of
from hyperlab.validate import validate
from support.presets import MULTIRUNS, POPULATIONS, STUDIES, jobs, same

ComposeHydra = Callable[..., DictConfig]


@pytest.fixture
def compose_hydra() -> Iterator[ComposeHydra]:
    """compose(*overrides) with Hydra's own node: hydra.mode, the sweeper, the choices."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        yield lambda *overrides: compose(
            config_name="config", overrides=list(overrides), return_hydra_config=True
        )


@pytest.mark.parametrize("name", sorted(MULTIRUNS))
def test_multirun_preset_composes_to_its_sweep(compose_hydra: ComposeHydra, name: str) -> None:
    choices, sweep = MULTIRUNS[name]
    c = compose_hydra(f"experiment={name}")
    assert c.hydra.mode.name == "MULTIRUN"  # no -m needed
    assert c.hydra.runtime.choices["hydra/sweeper"] == "basic"
    assert dict(c.hydra.sweeper.params) == sweep
    assert c.tracking.experiment == f"lesson-{name}"
    for group, option in choices.items():
        assert c.hydra.runtime.choices[group] == option
    # Every job the sweep launches is a valid config that builds, with its swept option.
    for job in jobs(sweep):
        jc = compose_hydra(f"experiment={name}", *job)
        build(validate(jc))
        for override in job:
            key, value = override.split("=")
            got = jc.hydra.runtime.choices.get(key, OmegaConf.select(jc, key))  # augment.std
            assert same(str(got)) == same(value), (override, got)


def test_init_compare_is_the_courses_batch_gradient_descent(
    compose_hydra: ComposeHydra,
) -> None:
    c = validate(compose_hydra("experiment=init_compare"))
    parts = build(c)
    assert c.batch_size >= len(parts.data.y_train)  # one step per epoch
    assert list(c.model["hidden_units"]) == [10, 5]
    assert (c.lr, c.epochs) == (0.01, 15000)


def test_optimizers_moons_uses_one_lr_and_the_courses_coefficients(
    compose_hydra: ComposeHydra,
) -> None:
    for option in ("gd", "momentum", "adam"):
        c = validate(compose_hydra("experiment=optimizers_moons", f"optimizer={option}"))
        assert (c.optimizer["lr"], c.batch_size) == (0.0007, 64)
        assert c.optimizer.get("beta", 0.9) == 0.9
        assert c.optimizer.get("beta1", 0.9) == 0.9
        assert c.optimizer.get("beta2", 0.999) == 0.999


def test_regularization_overfits_a_small_noisy_set(compose_hydra: ComposeHydra) -> None:
    c = validate(compose_hydra("experiment=regularization"))
    data = build(c).data
    assert len(data.y_train) == 200 and c.dataset["noise"] > 0.2
    assert 0 < c.bayes_error < 0.1
    assert (c.model["hidden_units"], c.model["layers"]) == (100, 3)
    # Augmentation is swept by its std: 0 builds no transform (augment=none's loop).
    off = build(validate(compose_hydra("experiment=regularization", "augment.std=0")))
    on = build(validate(compose_hydra("experiment=regularization", "augment.std=0.2")))
    assert off.augment is None and isinstance(on.augment, Noise) and on.augment.std == 0.2


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_preset_composes_to_its_search(compose_hydra: ComposeHydra, name: str) -> None:
    search, default_sampler, n_trials, samplers = STUDIES[name]
    c = compose_hydra(f"experiment={name}")
    assert c.hydra.runtime.choices["hydra/sweeper"] == "hyperlab"
    assert c.hydra.runtime.choices["search"] == search
    assert c.hydra.runtime.choices["sampler"] == default_sampler
    assert c.sweep.n_trials == n_trials
    assert c.tracking.experiment == f"lesson-{name}"
    build(validate(c))
    for sampler in samplers:  # the sampler stays a command-line choice
        overrides = [f"experiment={name}", f"sampler={sampler}"]
        sc = compose_hydra(*overrides)
        assert sc.hydra.runtime.choices["sampler"] == sampler
        setup = setup_of(validate(sc), overrides)
        assert setup.n_trials == n_trials
        assert setup.naive == (sampler == "random")


def test_grid_vs_random_grid_tries_five_learning_rates(compose_hydra: ComposeHydra) -> None:
    c = compose_hydra("experiment=grid_vs_random", "sampler=grid")
    setup = setup_of(validate(c), ["experiment=grid_vs_random", "sampler=grid"])
    assert {p.key: len(p.grid_points()) for p in setup.params} == {"lr": 5, "optimizer.eps": 5}


def test_panda_vs_caviar_composes_to_a_study_and_without_it_to_one_run(
    compose_hydra: ComposeHydra,
) -> None:
    caviar = compose_hydra("experiment=panda_vs_caviar")
    assert caviar.hydra.mode.name == "MULTIRUN"
    assert caviar.hydra.runtime.choices["hydra/sweeper"] == "hyperlab"
    assert (caviar.search.name, caviar.sweep.n_trials, caviar.sweep.workers) == ("lr", 8, 2)
    panda = compose_hydra("experiment=panda_vs_caviar", "~search")
    assert panda.search is None and panda.hydra.mode is None
    assert panda.checkpoint.every == 10
    # the same compute: 8 trials of `epochs` against one model of 8 x epochs
    assert caviar.sweep.n_trials * caviar.epochs == 160


@pytest.mark.parametrize("name", sorted(POPULATIONS))
def test_population_preset_composes_to_one_stack_of_its_trials(
    compose_hydra: ComposeHydra, name: str
) -> None:
    search, n_trials, population = POPULATIONS[name]
    c = compose_hydra(f"experiment={name}")
    assert c.hydra.runtime.choices["hydra/sweeper"] == "hyperlab"
    assert c.hydra.runtime.choices["search"] == search
    assert c.hydra.runtime.choices["pruner"] == "none"  # every member trains every epoch
    assert (c.sweep.n_trials, c.sweep.population, c.sweep.workers) == (n_trials, population, 1)
    assert c.tracking.experiment == f"lesson-{name}"
    setup = setup_of(validate(c), [f"experiment={name}"])
    assert not setup.naive  # random search on each parameter's scale
    build(validate(c))
