"""Search spaces: parsing, the scales, conditional parameters, and every sampler.

Here: the pieces on their own; integration/test_search_space.py holds the rest."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from hyperlab.errors import ConfigError
from hyperlab.search import space

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    ("low", "high", "scale"),
    [
        (1e-4, 1.0, "log"),  # a positive range over four decades
        (1e-8, 1e-6, "log"),
        (0.9, 0.999, "one_minus_log"),  # 1 - x spans 0.001..0.1
        (0.99, 0.9999, "one_minus_log"),
        (0.5, 0.95, "linear"),  # 1 - x spans 0.05..0.5: less than a decade
        (0.8, 0.89, "linear"),  # never reaches 0.9
        (50, 100, "linear"),
        (-1.0, 1.0, "linear"),
        (1, 10, "log"),
    ],
)
def test_auto_scale_rules(low: float, high: float, scale: str) -> None:
    assert space.auto_scale(low, high) == scale


def test_parse_resolves_auto_and_types() -> None:
    params = space.parse(
        {
            "lr": {"low": 1e-4, "high": 1.0},
            "optimizer.beta": {"low": 0.9, "high": 0.999},
            "model.hidden_units": {"low": 50, "high": 100},
            "optimizer": {"choices": ["momentum", "adam"]},
        }
    )
    assert [(p.key, p.kind, p.scale) for p in params] == [
        ("lr", "float", "log"),
        ("optimizer.beta", "float", "one_minus_log"),
        ("model.hidden_units", "int", "linear"),
        ("optimizer", "categorical", "linear"),
    ]
    assert params[1].optuna_name == "1-optimizer.beta"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"low": 1}, "needs low and high"),
        ({"low": 1, "high": 1}, "must be below"),
        ({"low": 0, "high": 1, "scale": "log"}, "needs low > 0"),
        ({"low": 0.5, "high": 2, "scale": "one_minus_log"}, "0 <= low < high < 1"),
        ({"low": 1, "high": 5, "scale": "one_minus_log"}, "not integers"),
        ({"low": 0.1, "high": 1, "scale": "cubic"}, "not one of"),
        ({"low": "a", "high": 1}, "not a finite number"),
        ({"choices": []}, "empty"),
        ({"low": 0.1, "high": 1, "typo": 3}, "unknown setting"),
        ({"low": 0.1, "high": 1, "when": {"nope": "x"}}, "not a parameter listed before"),
        ("0.1..1", "expected a mapping"),
    ],
)
def test_bad_entries_name_the_parameter(entry: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        space.parse({"lr": entry})
    assert "search.params.lr" in str(e.value)


def sampled(param: space.Param, n: int, naive: bool = False) -> np.ndarray:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.suggest(trial, [param], naive=naive)[param.key])
        study.tell(trial, 0.0)
    return np.array(out, dtype=float)


def test_one_minus_log_puts_half_the_samples_above_0_99() -> None:
    (beta,) = space.parse({"optimizer.beta": {"low": 0.9, "high": 0.999}})
    x = sampled(beta, 2000)
    assert x.min() >= 0.9 and x.max() <= 0.999
    assert (x > 0.99).mean() == pytest.approx(0.5, abs=0.04)
    # Linear sampling would put 1 in 11 there.
    assert (sampled(beta, 2000, naive=True) > 0.99).mean() == pytest.approx(
        0.09 / 0.099 * 0.1, abs=0.03
    )


def test_log_and_naive_linear_on_the_learning_rate() -> None:
    (lr,) = space.parse({"lr": {"low": 1e-4, "high": 1.0}})
    log = sampled(lr, 2000)
    # Each decade gets a quarter of the samples on the log scale.
    for lo in (1e-4, 1e-3, 1e-2, 1e-1):
        assert ((log >= lo) & (log < lo * 10)).mean() == pytest.approx(0.25, abs=0.04)
    naive = sampled(lr, 2000, naive=True)
    assert (naive > 0.1).mean() == pytest.approx(0.9, abs=0.03)  # the practice's warning


def test_conditional_parameters_exist_only_with_their_choice() -> None:
    params = space.parse(
        {
            "optimizer": {"choices": ["momentum", "adam"]},
            "optimizer.beta": {"low": 0.8, "high": 0.99, "when": {"optimizer": "momentum"}},
            "optimizer.beta2": {"low": 0.99, "high": 0.9999, "when": {"optimizer": ["adam"]}},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        t = study.ask()
        values = space.suggest(t, params)
        study.tell(t, 0.0)
        expected = {
            "momentum": {"optimizer", "optimizer.beta"},
            "adam": {"optimizer", "optimizer.beta2"},
        }[values["optimizer"]]  # type: ignore[index]
        assert set(values) == expected
        seen.add(values["optimizer"])
    assert seen == {"momentum", "adam"}
    # A choice fixed outside the search (optimizer=adam on the command line) counts too.
    t = optuna.create_study().ask()
    assert set(space.suggest(t, params[1:], fixed={"optimizer": "adam"})) == {"optimizer.beta2"}


def test_overrides_replay_exact_values() -> None:
    assert space.overrides({"lr": 0.1 + 0.2, "optimizer": "adam", "model.layers": 2}) == [
        "lr=0.30000000000000004",
        "optimizer=adam",
        "model.layers=2",
    ]


def test_grid_points_are_spaced_on_each_scale() -> None:
    lr, beta, units = space.parse(
        {
            "lr": {"low": 1e-4, "high": 1.0, "grid": 5},
            "optimizer.beta": {"low": 0.9, "high": 0.999, "grid": 3},
            "model.hidden_units": {"low": 50, "high": 100, "grid": 3},
        }
    )
    assert lr.grid_points() == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert beta.grid_points() == pytest.approx([0.001, 0.01, 0.1])  # 1 - beta
    assert units.grid_points() == [50, 75, 100]


def test_quantiles_for_the_dry_run() -> None:
    (lr,) = space.parse({"lr": {"low": 1e-4, "high": 1.0}})
    q = space.quantiles(lr)
    assert q[2] == pytest.approx(1e-2, rel=0.1)  # the median of a log range: its middle decade
    assert space.quantiles(lr, naive=True)[2] == pytest.approx(0.5, abs=0.02)


def test_a_replay_line_drops_the_search_a_preset_selects() -> None:
    from hyperlab.search.trial import replay

    choices = {"search": "lr", "optimizer": "adam", "experiment": "panda_vs_caviar"}
    root = {"search": None, "optimizer": "adam"}
    line = replay(["experiment=panda_vs_caviar", "sweep.workers=2"], ["lr=0.01"], choices, root)
    assert line == "hyperlab experiment=panda_vs_caviar lr=0.01 '~search'"
    assert replay(["epochs=3"], ["lr=0.01"], {"search": "lr"}, root) == (
        "hyperlab epochs=3 lr=0.01"
    )
