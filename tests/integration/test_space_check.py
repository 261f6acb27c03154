"""The search space checked against the config (hyperlab.search.space_check): a `when:`
on a value its parent can never take is refused, one on a value outside choices narrowed
on the command line is kept."""

from __future__ import annotations

from typing import Any

import pytest

from hyperlab.errors import ConfigError
from hyperlab.search.setup import setup_of
from hyperlab.search.space_check import check_search
from hyperlab.validate import rule_for, validate
from support.paths import Compose

OPTIMIZER = {"choices": ["momentum", "rmsprop", "adam"]}


def plain_with(params: dict[str, Any]) -> dict[str, Any]:
    """A resolved config holding a search space, as check_search sees it."""
    return {
        "search": {"name": "s", "params": params},
        "optimizer": {"_target_": "hyperlab.optim.adam", "beta2": 0.999},
        "model": {"_target_": "hyperlab.models.MLP", "activation": "relu"},
        "dataset": {"path": "a.csv"},
        "lr": 0.1,
    }


@pytest.mark.parametrize(
    ("parent", "condition", "shown"),
    [
        ("optimizer", "adamm", "'adamm' is not among optimizer's choices ['momentum', "),
        ("optimizer", ["adam", "nadam"], "nor an option of the group optimizer (adam, "),
        ("model.activation", "tahn", "'tahn' is not among model.activation's choices"),
        ("dataset.path", "c.csv", "'c.csv' is not among dataset.path's choices"),
    ],
)
def test_a_when_on_a_value_the_parent_cannot_take_is_refused(
    parent: str, condition: Any, shown: str
) -> None:
    choices = {
        "optimizer": OPTIMIZER,
        "model.activation": {"choices": ["relu", "tanh"]},
        "dataset.path": {"choices": ["a.csv", "b.csv"]},
    }[parent]
    params = {parent: choices, "lr": {"low": 0.1, "high": 0.2, "when": {parent: condition}}}
    options = {"optimizer": ["adam", "adamw", "gd", "momentum", "rmsprop"]}
    with pytest.raises(ConfigError) as e:
        check_search(plain_with(params), options.get, rule_for(plain_with(params)))
    assert f"search.params.lr: when: {parent}=" in e.value.problem
    assert "can never hold" in e.value.problem and shown in e.value.problem
    assert "check its spelling" in e.value.fix


def test_a_when_on_a_value_outside_narrowed_choices_is_kept(cfg: Compose) -> None:
    """Narrowing a parent's choices on the command line keeps the conditions on its other
    options: those parameters are off, as asked. Only a value the key cannot take at all
    is a mistake."""
    setup_of(validate(cfg("search=optimizers", "search.params.optimizer.choices=[adam]")), [])
    params = {
        "model.activation": {"choices": ["relu"]},
        "lr": {"low": 0.1, "high": 0.2, "when": {"model.activation": "tanh"}},
    }
    check_search(plain_with(params), lambda g: None, rule_for(plain_with(params)))
    with pytest.raises(ConfigError, match="nor an option of the group optimizer"):
        setup_of(
            validate(
                cfg(
                    "search=optimizers",
                    "+search.params.batch_size={low:16,high:128,when:{optimizer:adamm}}",
                )
            ),
            [],
        )
