"""The sweep's trial configs (search.setup.TrialComposer): one compose per combination of
group options, each trial's values set on it and put back before the next trial."""

from __future__ import annotations

from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError

from hyperlab.search.setup import TrialComposer

BASE = {"lr": 0.01, "optimizer": {"lr": "${lr}", "beta": 0.9}, "progress": True, "x": [1, 2]}


def composer() -> tuple[TrialComposer, list[list[str]]]:
    calls: list[list[str]] = []

    def compose(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
        calls.append(overrides)
        cfg = OmegaConf.create(BASE)
        OmegaConf.set_struct(cfg, True)
        chosen = [o.split("=")[1] for o in overrides if o.startswith("optimizer=")]
        return cfg, {"optimizer": chosen[0] if chosen else "momentum"}

    return TrialComposer(compose, ["dataset=moons"], {"optimizer"}), calls


def plain(cfg: DictConfig) -> Any:
    return OmegaConf.to_container(cfg, resolve=True)


def test_each_trial_sees_only_its_own_values_on_the_base() -> None:
    trials, calls = composer()
    a, _ = trials({"lr": 0.5, "optimizer.beta": 0.99, "x": [3]})
    assert plain(a) == {
        "lr": 0.5,
        "optimizer": {"lr": 0.5, "beta": 0.99},
        "progress": False,
        "x": [3],
    }
    b, _ = trials({"optimizer.lr": 0.2})  # beta, lr and x back to the base's
    assert plain(b) == {
        "lr": 0.01,
        "optimizer": {"lr": 0.2, "beta": 0.9},
        "progress": False,
        "x": [1, 2],
    }
    c, _ = trials({"lr": 0.3})  # optimizer.lr follows lr again: its interpolation is back
    assert plain(c)["optimizer"] == {"lr": 0.3, "beta": 0.9}
    assert calls == [["dataset=moons"]]  # composed once


def test_group_options_compose_once_each_and_a_key_not_in_the_config_fails_its_trial() -> None:
    trials, calls = composer()
    adam, choices = trials({"optimizer": "adam", "lr": 0.1})
    assert choices == {"optimizer": "adam"}
    trials({"optimizer": "gd", "lr": 0.2})
    again, _ = trials({"optimizer": "adam", "lr": 0.3})
    assert calls == [["dataset=moons", "optimizer=adam"], ["dataset=moons", "optimizer=gd"]]
    assert again is adam and plain(again)["lr"] == 0.3
    with pytest.raises(ConfigAttributeError, match="eps"):  # refused: that trial fails
        trials({"optimizer": "adam", "lr": 0.4, "optimizer.eps": 1e-8})
    after, _ = trials({"optimizer": "adam", "lr": 0.5})
    assert after is adam and plain(after) == {
        **plain(again),
        "lr": 0.5,
        "optimizer": {"lr": 0.5, "beta": 0.9},
    }
