"""Bad config values fail before training with the key, the allowed range and a fix."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from hyperlab.errors import ConfigError
from hyperlab.validate import validate
from support.paths import Compose

BAD = [
    ("lr=0", "lr=0", "> 0"),
    ("lr=-1", "lr=-1", "> 0"),
    ("optimizer.lr=-0.1", "optimizer.lr", "> 0"),
    ("epochs=0", "epochs=0", ">= 1"),
    ("batch_size=0", "batch_size=0", ">= 1"),
    ("regularization.keep_prob=0", "regularization.keep_prob", "(0, 1]"),
    ("regularization.keep_prob=1.5", "regularization.keep_prob", "(0, 1]"),
    ("regularization.l2=-1", "regularization.l2", ">= 0"),
    ("optimizer=momentum optimizer.beta=1", "optimizer.beta", "[0, 1)"),
    ("optimizer=momentum optimizer.beta=-0.1", "optimizer.beta", "[0, 1)"),
    ("optimizer.beta2=1.0", "optimizer.beta2", "[0, 1)"),
    ("optimizer.beta1=abc", "optimizer.beta1", "[0, 1)"),
    ("optimizer.eps=0", "optimizer.eps", "> 0"),
    ("normalization=batchnorm normalization.running_beta=1.2", "running_beta", "[0, 1)"),
    ("schedule=exponential schedule.rate=0", "schedule.rate", "(0, 1]"),
    ("schedule=staircase schedule.interval=0", "schedule.interval", ">= 1"),
    ("schedule=inverse_time schedule.decay_rate=-1", "schedule.decay_rate", ">= 0"),
    ("dataset.split.train=0.8", "sum to 1.1,", "= 1"),
    ("dataset.split.dev=0", "dataset.split.dev", "(0, 1)"),
    ("dataset=moons dataset.noise=-1", "dataset.noise", ">= 0"),
    ("dataset=moons dataset.n_samples=3", "dataset.n_samples", ">= 10"),
    ("model.hidden_units=0", "model.hidden_units", ">= 1"),
    ("model.hidden_units=[64,0]", "model.hidden_units", ">= 1"),
    ("model.activation=swish", "model.activation", "relu"),
    ("model.layers=-1", "model.layers", ">= 0"),
    ("init=random_large init.scale=0", "init.scale", "> 0"),
    # A label names the option for the record: set alone, it would not change what is built.
    ("init.scheme=xavier", "init.scheme='xavier'", "init=xavier"),
    ("normalization.kind=bogus", "hyperlab.models.none", "normalization=bogus"),
    ("objective.metric=test_acc", "objective.metric", "dev_acc"),
    ("objective.direction=up", "objective.direction", "maximize"),
    ("bayes_error=1.5", "bayes_error", "[0, 1)"),
    ("normalization=batchnorm batch_size=1", "batch_size=1", ">= 2"),
    ("dataset=csv", "dataset.path", "required"),
]


@pytest.mark.parametrize(("overrides", "key", "allowed"), BAD, ids=[b[0] for b in BAD])
def test_bad_value_names_key_and_range(
    cfg: Compose, overrides: str, key: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as e:
        validate(cfg(*overrides.split()))
    assert key in e.value.problem
    assert allowed in str(e.value)
    assert e.value.fix


@pytest.mark.parametrize(
    "override", ["epoch=3", "optimizer.betaa=0.9", "lr=fast", "batch_size=1.5", "seed=x"]
)
def test_typos_and_wrong_types_fail_at_compose_time(cfg: Compose, override: str) -> None:
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        cfg(override)


def test_unknown_option_lists_the_valid_ones(cfg: Compose) -> None:
    with pytest.raises(Exception, match="Available options in 'optimizer'") as e:
        cfg("optimizer=adamm")
    assert "momentum" in str(e.value) and "rmsprop" in str(e.value)


def test_good_values_pass(cfg: Compose) -> None:
    config = validate(
        cfg(
            "lr=1e-3",
            "optimizer=momentum",
            "optimizer.beta=0.95",
            "regularization.keep_prob=1",
            "model.hidden_units=[64,32]",
        )
    )
    assert config["optimizer"]["beta"] == 0.95
