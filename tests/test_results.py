"""Wrong results without a word (issue 11, section 5): each case that used to give a wrong
study or run silently is now refused with the problem and its fix, or recorded and warned.

The fast tests run in-process through the path the command takes; the slow ones run the
real `hyperlab` command and check that a refused command recorded nothing."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Compose
from hyperlab.errors import ConfigError
from hyperlab.search import space
from hyperlab.validate import direction_of, validate

# --- when: a condition that can never hold ----------------------------------------------------

OPTIMIZER = {"choices": ["momentum", "rmsprop", "adam"]}


@pytest.mark.parametrize(
    ("parent", "condition", "shown"),
    [
        (OPTIMIZER, "adamm", "'adamm' is not among optimizer's choices"),
        (OPTIMIZER, ["adam", "nadam"], "'nadam' is not among optimizer's choices"),
        ({"low": 1, "high": 4}, 7, "takes int in [1, 4]"),
        ({"low": 1, "high": 4}, 2.5, "takes int in [1, 4]"),
        ({"low": 1, "high": 4}, "two", "takes int in [1, 4]"),
    ],
)
def test_a_when_on_a_value_the_parent_cannot_take_is_refused(
    parent: dict[str, Any], condition: Any, shown: str
) -> None:
    spec = {"optimizer": parent, "optimizer.beta2": {"low": 0.99, "high": 0.9999}}
    spec["optimizer.beta2"]["when"] = {"optimizer": condition}
    with pytest.raises(ConfigError) as e:
        space.parse(spec)
    assert "search.params.optimizer.beta2" in e.value.problem and shown in e.value.problem
    assert "can never hold" in e.value.problem and e.value.fix


def test_a_when_on_a_value_the_parent_can_take_is_kept() -> None:
    params = space.parse(
        {
            "optimizer": OPTIMIZER,
            "layers": {"low": 1, "high": 4},
            "nullable": {"choices": [None, "x"]},
            "optimizer.beta2": {"low": 0.99, "high": 0.9999, "when": {"optimizer": "adam"}},
            "a": {"low": 0.1, "high": 0.2, "when": {"layers": [1, 4]}},
            "b": {"low": 0.1, "high": 0.2, "when": {"nullable": None}},
        }
    )
    beta2, a, b = params[3:]
    assert space.active(beta2, {"optimizer": "adam"}) and not space.active(beta2, {})
    assert space.active(a, {"layers": 4}) and not space.active(a, {"layers": 2})
    # A null choice is sampled as "null" (an override's spelling): its condition holds.
    assert space.active(b, {"nullable": "null"})


def test_every_shipped_space_parses() -> None:
    from conftest import CONF

    for path in sorted((CONF / "search").glob("*.yaml")):
        from omegaconf import OmegaConf

        space.parse(OmegaConf.to_container(OmegaConf.load(path).search.params))  # type: ignore[union-attr,arg-type]


# --- objective.direction follows the metric ---------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "direction"),
    [
        ((), "maximize"),
        (("objective.metric=dev_loss",), "minimize"),
        (("objective.metric=train_loss",), "minimize"),
        (("objective.metric=train_acc",), "maximize"),
        (("objective.metric=dev_loss", "objective.direction=minimize"), "minimize"),
        (("objective.metric=dev_acc", "objective.direction=maximize"), "maximize"),
        (("objective.metric=dev_loss", "objective.direction=auto"), "minimize"),
    ],
)
def test_the_direction_follows_the_metric_unless_set(
    cfg: Compose, overrides: tuple[str, ...], direction: str
) -> None:
    config = cfg(*overrides)
    assert validate(config)["objective"]["direction"] == direction
    assert direction_of(config.objective) == direction


@pytest.mark.parametrize(
    ("metric", "direction", "natural"),
    [("dev_loss", "maximize", "minimize"), ("dev_acc", "minimize", "maximize")],
)
def test_a_direction_against_its_metric_is_refused(
    cfg: Compose, metric: str, direction: str, natural: str
) -> None:
    with pytest.raises(ConfigError) as e:
        validate(cfg(f"objective.metric={metric}", f"objective.direction={direction}"))
    assert f"objective.direction={direction}" in e.value.problem
    assert f"objective.metric={metric}" in e.value.problem
    assert f"objective.direction={natural}" in e.value.fix
