"""Wrong results without a word (issue 11, section 5): each case that used to give a wrong
study or run silently is now refused with the problem and its fix, or recorded and warned.

The fast tests run in-process through the path the command takes; the slow ones run the
real `hyperlab` command and check that a refused command recorded nothing.

Here: the pieces on their own;
integration/test_results.py and e2e/test_results.py hold the rest."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from omegaconf import OmegaConf

from hyperlab.errors import ConfigError
from hyperlab.search import space
from hyperlab.search.report import data_changes
from hyperlab.search.setup import (
    DATA_ATTR,
    FIRST_DATA_ATTR,
)
from support.paths import CONF

optuna.logging.set_verbosity(optuna.logging.WARNING)


OPTIMIZER = {"choices": ["momentum", "rmsprop", "adam"]}


@pytest.mark.parametrize("condition", [7, 2.5, "two", [1, 5]])
def test_a_when_outside_its_parents_range_is_refused(condition: Any) -> None:
    spec: dict[str, Any] = {
        "model.layers": {"low": 1, "high": 4},
        "lr": {"low": 0.1, "high": 0.2, "when": {"model.layers": condition}},
    }
    with pytest.raises(ConfigError) as e:
        space.parse(spec)
    assert "search.params.lr: when: model.layers=" in e.value.problem
    assert "can never hold: model.layers takes int in [1, 4]" in e.value.problem


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
    for path in sorted((CONF / "search").glob("*.yaml")):
        space.parse(OmegaConf.to_container(OmegaConf.load(path).search.params))  # type: ignore[arg-type]


def test_space_changes_name_each_key() -> None:
    before = space.canonical(space.parse({"a": {"low": 1, "high": 9}, "b": {"choices": [1, 2]}}))
    now = space.canonical(space.parse({"b": {"choices": [1, 3]}, "c": {"low": 0.5, "high": 1.0}}))
    assert space.changes(before, before) == []
    assert space.changes(before, now) == [
        "a removed (was int in [1, 9], linear scale)",
        "c added (float in [0.5, 1], linear scale)",
        "b changed from one of [1, 2] to one of [1, 3]",
    ]


def test_data_changes_names_the_trials_on_other_data() -> None:
    s = optuna.create_study()
    for sha in ("a" * 64, "a" * 64, "b" * 64):
        s.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={DATA_ATTR: sha}))
    assert data_changes(s) == ""  # no first hash recorded: nothing to compare with
    s.set_user_attr(FIRST_DATA_ATTR, "a" * 64)
    line = data_changes(s)
    assert "trial(s) 2 trained on other data (data.sha256 bbbbbbbbbbbb)" in line
    assert "\n" not in line
