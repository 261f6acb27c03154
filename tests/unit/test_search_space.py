"""Search spaces: parsing, the scales, conditional parameters, grids and replayed values,
first by examples that pin numbers, then as properties of random specs (hypothesis): every
value a space can produce lies in its range, on its scale; overrides replay the same
numbers; a bad spec is always a ConfigError naming it, never another exception.

Here: the pieces on their own; integration/test_search_space.py holds the rest."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

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


# --- properties of random specs ---------------------------------------------------------

# Derandomized: CI runs the same examples every time (a new one found is a new test case).
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PARSER = OverridesParser.create()

# --- strategies: valid specs ----------------------------------------------------------------

MAGNITUDE = 1e12  # ranges as wide as a search space may sensibly be
finite = st.floats(-MAGNITUDE, MAGNITUDE, allow_nan=False, allow_infinity=False)
positive = st.floats(1e-12, MAGNITUDE, allow_nan=False, allow_infinity=False)
unit = st.floats(0.0, 1.0, exclude_max=True, allow_nan=False)


def ordered(values: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, Any]]:
    return st.tuples(values, values).filter(lambda lh: lh[0] < lh[1])


@st.composite
def float_specs(draw: st.DrawFn) -> dict[str, Any]:
    scale = draw(st.sampled_from(["linear", "log", "one_minus_log", "auto"]))
    pool = {"linear": finite, "log": positive, "one_minus_log": unit, "auto": finite}[scale]
    low, high = draw(ordered(pool))
    # A one_minus_log range so narrow that 1 - low == 1 - high in floats is refused: invalid.
    assume(scale != "one_minus_log" or 1 - high < 1 - low)
    spec: dict[str, Any] = {"low": low, "high": high, "scale": scale, "type": "float"}
    if draw(st.booleans()):
        spec["grid"] = draw(st.integers(1, 7))
    return spec


@st.composite
def int_specs(draw: st.DrawFn) -> dict[str, Any]:
    scale = draw(st.sampled_from(["linear", "log", "auto"]))
    pool = st.integers(1, 10**6) if scale == "log" else st.integers(-(10**6), 10**6)
    low, high = draw(ordered(pool))
    spec: dict[str, Any] = {"low": low, "high": high, "scale": scale}
    if draw(st.booleans()):
        spec["type"] = "int"
    if draw(st.booleans()):
        spec["grid"] = draw(st.integers(1, 7))
    return spec


specs = st.one_of(float_specs(), int_specs())


def within(p: space.Param, v: Any) -> None:
    """`v` is a value of `p`: in [low, high], an int for an int parameter."""
    if p.kind == "int":
        assert isinstance(v, int) and not isinstance(v, bool), (p, v)
    else:
        assert isinstance(v, float), (p, v)
    assert p.low <= v <= p.high, (p, v)


def study_of(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(sampler=sampler)  # in memory


# --- valid specs: accepted, and every value in range --------------------------------------


@SETTINGS
@given(spec=specs, seed=st.integers(0, 2**16), naive=st.booleans())
def test_sampled_values_lie_in_range(spec: dict[str, Any], seed: int, naive: bool) -> None:
    (p,) = space.parse({"x": spec})
    assert p.scale in ("linear", "log", "one_minus_log")
    study = study_of(optuna.samplers.RandomSampler(seed=seed))
    for _ in range(4):
        trial = study.ask()
        v = p.sample(trial, naive=naive)
        within(p, v)
        # Optuna stores a one_minus_log parameter as 1 - x, in its own range
        if p.scale == "one_minus_log" and not naive:
            assert 1 - p.high <= trial.params[p.optuna_name] <= 1 - p.low
        study.tell(trial, 0.0)


@SETTINGS
@given(spec=specs, seed=st.integers(0, 2**16), naive=st.booleans())
def test_quantiles_lie_in_range_and_ascend(spec: dict[str, Any], seed: int, naive: bool) -> None:
    (p,) = space.parse({"x": spec})
    qs = space.quantiles(p, naive=naive, n=500, seed=seed)
    assert len(qs) == 5
    for q in qs:
        within(p, q)
    assert qs == sorted(qs)


@SETTINGS
@given(spec=specs)
def test_grid_points_replay_in_range(spec: dict[str, Any]) -> None:
    """Every grid point, asked for through a real trial of a grid study, gives a value in
    range: the sampler's value is the parameter's (one_minus_log: 1 - the value)."""
    (p,) = space.parse({"x": spec})
    points = p.grid_points()
    assert 1 <= len(points) <= p.grid
    assert points == sorted(points)
    study = study_of(optuna.samplers.GridSampler(space.grid_space([p]), seed=0))
    seen = []
    for _ in range(len(points)):  # (told, the last one would stop the study: no objective)
        trial = study.ask()  # a grid point no running trial has
        v = p.sample(trial)
        within(p, v)
        seen.append(trial.params[p.optuna_name])
    assert sorted(seen) == points


@SETTINGS
@given(low_high=ordered(st.floats(0.0, 0.999999, allow_nan=False)), n=st.integers(2, 9))
def test_one_minus_log_grid_is_even_in_log_of_one_minus_x(
    low_high: tuple[float, float], n: int
) -> None:
    low, high = low_high
    assume(1 - high < 1 - low)
    (p,) = space.parse({"beta": {"low": low, "high": high, "scale": "one_minus_log", "grid": n}})
    points = np.array(p.grid_points(), dtype=float)  # Optuna's values: 1 - beta
    assert len(points) == n
    steps = np.diff(np.log(points))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6, atol=1e-12)
    betas = 1 - points
    assert np.all((betas >= low - 1e-15) & (betas <= high + 1e-15))


@SETTINGS
@given(low_high=ordered(positive), n=st.integers(2, 9))
def test_log_grid_is_geometric(low_high: tuple[float, float], n: int) -> None:
    low, high = low_high
    (p,) = space.parse({"x": {"low": low, "high": high, "scale": "log", "grid": n}})
    points = np.array(p.grid_points())
    assert points[0] == low and points[-1] == high
    ratios = points[1:] / points[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-6)


@SETTINGS
@given(beta=unit)
def test_one_minus_round_trip(beta: float) -> None:
    """beta -> 1 - beta (what Optuna stores) -> beta, within the rounding of a subtraction."""
    assert abs((1 - (1 - beta)) - beta) <= 1.2e-16
    p = space.Param("b", "float", 0.0, 0.999999, "one_minus_log")
    study = study_of(optuna.samplers.RandomSampler(seed=0))
    u_range = optuna.distributions.FloatDistribution(1 - p.high, 1 - p.low, log=True)
    trial = study.ask({p.optuna_name: u_range})
    u = trial.params[p.optuna_name]
    assert abs((1 - p.sample(trial)) - u) <= 1.2e-16


@SETTINGS
@given(low_high=ordered(st.floats(-1e6, 1e6, allow_nan=False)))
def test_auto_scale_rules_hold_for_any_range(low_high: tuple[float, float]) -> None:
    low, high = low_high
    scale = space.auto_scale(low, high)
    if low > 0 and high / low >= 10:
        assert scale == "log"
    elif 0 < low < high < 1 and high >= 0.9 and (1 - low) / (1 - high) >= 10:
        assert scale == "one_minus_log"
    else:
        assert scale == "linear"
    # auto resolves to a scale the range can be searched on
    (p,) = space.parse({"x": {"low": low, "high": high}})
    assert p.scale == scale
    if scale == "log":
        assert p.low > 0
    if scale == "one_minus_log":
        assert 0 < p.low < p.high < 1


# --- overrides replay the same values ---------------------------------------------------------

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**20), 10**20),
    st.booleans(),
)


@SETTINGS
@given(value=numbers)
def test_overrides_round_trip_through_hydras_parser(value: float | int | bool) -> None:
    (line,) = space.overrides({"optimizer.beta": value})
    (parsed,) = PARSER.parse_overrides([line])
    assert parsed.key_or_group == "optimizer.beta"
    got = parsed.value()
    assert type(got) is type(value)
    assert got == value
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)


words = st.text(
    st.characters(
        whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_-. ,=:/+", max_codepoint=127
    ),
    min_size=1,
    max_size=12,
)


@SETTINGS
@given(value=words)
def test_string_choices_round_trip(value: str) -> None:
    """A categorical string (a group option, an activation) replays as the same string,
    quoted where Hydra would read it as something else."""
    assume(value.strip() == value)
    (line,) = space.overrides({"model.activation": value})
    (parsed,) = PARSER.parse_overrides([line])
    assert parsed.value() == value


def test_group_options_stay_bare() -> None:
    assert space.overrides({"optimizer": "adam", "normalization": "none"}) == [
        "optimizer=adam",
        "normalization=none",
    ]


# --- invalid specs: always a ConfigError --------------------------------------------------------

nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])


@SETTINGS
@given(low_high=st.tuples(finite, finite).filter(lambda lh: lh[0] >= lh[1]))
def test_low_not_below_high_is_rejected(low_high: tuple[float, float]) -> None:
    low, high = low_high
    with pytest.raises(ConfigError, match="must be below") as e:
        space.parse({"x": {"low": low, "high": high}})
    assert e.value.fix


@SETTINGS
@given(bad=nonfinite, other=finite, which=st.sampled_from(["low", "high"]))
def test_non_finite_bounds_are_rejected(bad: float, other: float, which: str) -> None:
    spec = {"low": other, "high": other, which: bad}
    with pytest.raises(ConfigError, match="not a finite number"):
        space.parse({"x": spec})


@SETTINGS
@given(low=st.floats(-MAGNITUDE, 0.0), high=positive, kind=st.sampled_from(["float", "int"]))
def test_log_scale_needs_a_positive_low(low: float, high: float, kind: str) -> None:
    spec: dict[str, Any] = {"low": low, "high": high, "scale": "log", "type": kind}
    if kind == "int":
        spec.update(low=math.floor(low), high=max(1, math.ceil(high)))
    with pytest.raises(ConfigError, match="low > 0"):
        space.parse({"x": spec})


@SETTINGS
@given(
    spec=specs,
    extra=st.text(min_size=1, max_size=8).filter(
        lambda k: k not in ("low", "high", "scale", "type", "choices", "when", "grid")
    ),
)
def test_unknown_settings_are_rejected(spec: dict[str, Any], extra: str) -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        space.parse({"x": {**spec, extra: 1}})


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(),  # NaN and infinities included
    st.text(max_size=6),
)
garbage = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
SETTING_NAMES = ["low", "high", "scale", "type", "choices", "when", "grid", "lo"]
VALUES = {
    "scale": st.sampled_from(["auto", "linear", "log", "one_minus_log", "cubic"]) | garbage,
    "type": st.sampled_from(["int", "float", "str"]) | garbage,
    "when": st.dictionaries(st.sampled_from(["a", "b"]), garbage, max_size=2) | garbage,
}
entries = st.one_of(
    garbage,
    st.fixed_dictionaries(
        {},
        optional={
            name: VALUES.get(name, scalars | st.floats(-10, 10) | garbage) for name in SETTING_NAMES
        },
    ),
)


@settings(max_examples=150, deadline=None)
@given(spec=st.dictionaries(st.sampled_from(["a", "b", "lr"]), entries, max_size=3) | garbage)
def test_any_spec_parses_or_raises_config_error(spec: Any) -> None:
    """Whatever a space file holds, parse either accepts it, and then every value it
    samples is in range, or raises ConfigError: never another exception."""
    try:
        params = space.parse(spec)
    except ConfigError as e:
        assert e.problem and e.fix
        return
    study = study_of(optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = space.suggest(trial, params)
    for p in params:
        if p.key in values and p.kind != "categorical":
            within(p, values[p.key])
    space.overrides(values)
