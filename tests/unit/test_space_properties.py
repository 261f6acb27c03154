"""Properties of search spaces, for random specs (hypothesis): every value a space can
produce lies in its range, on its scale; overrides replay the same numbers; a bad spec is
always a ConfigError naming it, never another exception."""

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
def test_auto_scale_rules(low_high: tuple[float, float]) -> None:
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
