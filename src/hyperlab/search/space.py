"""Search spaces: parameters named by their override keys, each sampled on its scale.

A space file maps override keys to a range or choices:

    lr:                 {low: 1.0e-4, high: 1.0, scale: log}
    optimizer.beta:     {low: 0.9, high: 0.999, scale: one_minus_log}
    model.hidden_units: {low: 50, high: 100, type: int}
    optimizer:          {choices: [momentum, rmsprop, adam]}
    optimizer.beta2:    {low: 0.99, high: 0.9999, when: {optimizer: adam}}

A one_minus_log parameter is handed to Optuna as `1-<key>` on a log scale, so every
sampler, model-based ones included, searches 1 - beta evenly in decades.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hyperlab.errors import ConfigError

if TYPE_CHECKING:
    import optuna

SCALES = ("auto", "linear", "log", "one_minus_log")
SETTINGS = ("low", "high", "scale", "type", "choices", "when", "grid")
Value = float | int | str | bool


def auto_scale(low: float, high: float) -> str:
    """log for a positive range spanning a decade or more; one_minus_log for a range inside
    (0, 1) reaching 0.9 or more whose 1 - x spans a decade or more; linear otherwise."""
    if low > 0 and high / low >= 10:
        return "log"
    if 0 < low < high < 1 and high >= 0.9 and (1 - low) / (1 - high) >= 10:
        return "one_minus_log"
    return "linear"


@dataclass(frozen=True)
class Param:
    """One searched override key."""

    key: str
    kind: str  # float | int | categorical
    low: float = 0.0
    high: float = 0.0
    scale: str = "linear"  # resolved: linear | log | one_minus_log
    choices: tuple[Value, ...] = ()
    when: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)
    grid: int = 5

    @property
    def optuna_name(self) -> str:
        """The name Optuna stores: the key, or `1-<key>` for a one_minus_log parameter."""
        return f"1-{self.key}" if self.scale == "one_minus_log" else self.key

    def sample(self, trial: optuna.Trial, naive: bool = False) -> Value:
        """Ask the trial for this parameter; `naive` samples every range on its linear
        scale (the baseline the practice warns against)."""
        if self.kind == "categorical":
            choice = trial.suggest_categorical(self.optuna_name, self.choices)
            return choice if choice is not None else "null"
        if self.kind == "int":
            log = self.scale == "log" and not naive
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=log)
        if naive or self.scale == "linear":
            return trial.suggest_float(self.key, self.low, self.high)
        if self.scale == "log":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        u = trial.suggest_float(self.optuna_name, 1 - self.high, 1 - self.low, log=True)
        # 1 - (1 - low) can round below low (for low < 0.5): keep the value in its range.
        return min(max(1.0 - u, self.low), self.high)

    def grid_points(self) -> list[Value]:
        """`grid` points evenly spaced on the parameter's scale (Optuna's values)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.scale == "log":
            pts = np.geomspace(self.low, self.high, self.grid)
        elif self.scale == "one_minus_log":
            pts = np.geomspace(1 - self.high, 1 - self.low, self.grid)
        else:
            pts = np.linspace(self.low, self.high, self.grid)
        if self.kind == "int":
            return sorted({round(float(p)) for p in pts})
        return [float(p) for p in pts]

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {list(self.choices)}"
        return f"{self.kind} in [{self.low:g}, {self.high:g}], {self.scale} scale"


def parse(spec: Mapping[str, Any], where: str = "search.params") -> list[Param]:
    """Parse a space spec; a malformed entry raises ConfigError naming it (whatever the
    spec holds, never another exception)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where} must map override keys to ranges or choices, got {spec!r}",
            "write e.g. params: {lr: {low: 1.0e-4, high: 1.0}}",
        )
    params: list[Param] = []
    for key, entry in spec.items():
        params.append(_parse_one(str(key), entry, f"{where}.{key}", params))
    if not params:
        raise ConfigError(f"{where} is empty", "name at least one parameter to search")
    return params


def canonical(params: Sequence[Param], naive: bool = False) -> dict[str, dict[str, Any]]:
    """The space as a study records it, in JSON values: each key's kind, its range and
    the scale it is sampled on (linear for every range when `naive`, as Optuna records
    it) or its choices, and its conditions. The grid size is left out: it is the grid
    sampler's resolution, not the space (as the sampler, n_trials and workers may change
    when a study is resumed)."""
    out: dict[str, dict[str, Any]] = {}
    for p in params:
        spec: dict[str, Any] = {"kind": p.kind}
        if p.kind == "categorical":
            spec["choices"] = list(p.choices)
        else:
            spec.update(low=p.low, high=p.high, scale="linear" if naive else p.scale)
        if p.when:
            spec["when"] = {dep: list(values) for dep, values in p.when.items()}
        out[p.key] = spec
    return out


def changes(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """How space `now` differs from space `before` (both canonical): one phrase per key
    added, removed or changed, from -> to."""
    out = [f"{k} removed (was {_shown(before[k])})" for k in before if k not in now]
    out += [f"{k} added ({_shown(now[k])})" for k in now if k not in before]
    out += [
        f"{k} changed from {_shown(before[k])} to {_shown(now[k])}"
        for k in before
        if k in now and before[k] != now[k]
    ]
    return out


def _shown(spec: Mapping[str, Any]) -> str:
    if spec.get("kind") == "categorical":
        text = f"one of {spec.get('choices')}"
    else:
        low, high = (
            f"{v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else repr(v)
            for v in (spec.get("low"), spec.get("high"))
        )
        text = f"{spec.get('kind')} in [{low}, {high}], {spec.get('scale')} scale"
    for dep, values in (spec.get("when") or {}).items():
        text += f", when {dep} in {values}"
    return text


def _scalar(v: Any) -> bool:
    """A value Optuna can store as a choice, and an override can carry."""
    return (
        v is None or isinstance(v, bool | int | str) or (isinstance(v, float) and math.isfinite(v))
    )


def _parse_one(key: str, entry: Any, where: str, earlier: list[Param]) -> Param:
    def bad(problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{where}: {problem}", fix)

    if not isinstance(entry, Mapping):
        raise bad(
            f"expected a mapping, got {entry!r}", "write {low: ..., high: ...} or {choices: [...]}"
        )
    unknown = [str(k) for k in entry if k not in SETTINGS]
    if unknown:
        raise bad(f"unknown setting(s) {sorted(unknown)}", f"use {', '.join(SETTINGS)}")
    when = {}
    conditions = entry.get("when")
    if conditions is not None and not isinstance(conditions, Mapping):
        raise bad(
            f"when={conditions!r} must map earlier parameters to their values",
            "e.g. when: {optimizer: [momentum, rmsprop]}",
        )
    parents = {p.key: p for p in earlier}
    for dep, allowed in dict(conditions or {}).items():
        if dep not in parents:
            raise bad(
                f"'when' refers to {dep!r}, which is not a parameter listed before it",
                "list the parameter it depends on first",
            )
        values = (
            tuple(allowed)
            if isinstance(allowed, Sequence) and not isinstance(allowed, str)
            else (allowed,)
        )
        if not values or not all(_scalar(v) for v in values):
            raise bad(
                f"when: {dep}={allowed!r} must be a value or a list of values",
                "e.g. when: {optimizer: adam}",
            )
        _check_reachable(parents[dep], values, bad)
        # A sampled null choice is handed on as "null" (see Param.sample): compare alike.
        when[str(dep)] = tuple("null" if v is None else v for v in values)
    grid = entry.get("grid", 5)
    if isinstance(grid, bool) or not (isinstance(grid, int) and grid >= 1):
        raise bad(f"grid={grid!r} must be an integer >= 1", "e.g. grid: 5")
    if "choices" in entry:
        if "low" in entry or "high" in entry:
            raise bad("has both choices and a range", "give either choices or low and high")
        raw = entry["choices"]
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise bad(f"choices={raw!r} must be a list", "e.g. choices: [relu, tanh]")
        choices = tuple(raw)
        if not choices:
            raise bad("choices is empty", "list at least one choice")
        odd = [c for c in choices if not _scalar(c)]
        if odd:
            raise bad(
                f"choice {odd[0]!r} is not a number, a string, a boolean or null",
                "list plain values; for a list-valued setting, search its parts instead",
            )
        if len(set(map(repr, choices))) < len(choices):
            raise bad(f"choices {list(choices)} repeat a value", "list each choice once")
        return Param(key, "categorical", choices=choices, when=when, grid=grid)
    if "low" not in entry or "high" not in entry:
        raise bad("needs low and high, or choices", "e.g. {low: 1.0e-4, high: 1.0}")
    low, high = entry["low"], entry["high"]
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise bad(f"{name}={v!r} is not a finite number", f"give {name} as a number")
    if not low < high:
        raise bad(f"low={low} must be below high={high}", "swap or widen the range")
    if not math.isfinite(float(high) - float(low)):
        raise bad(f"[{low}, {high}] is too wide to sample", "narrow the range")
    kind = entry.get("type") or (
        "int" if isinstance(low, int) and isinstance(high, int) else "float"
    )
    if kind not in ("float", "int"):
        raise bad(f"type={kind!r} is not float or int", "use type: float or type: int")
    if kind == "int":
        if low != math.floor(low) or high != math.floor(high):
            raise bad(
                f"type: int needs whole-number bounds, got [{low}, {high}]",
                "give integer low and high, or type: float",
            )
        low, high = int(low), int(high)
    scale = entry.get("scale", "auto")
    if not isinstance(scale, str) or scale not in SCALES:
        raise bad(f"scale={scale!r} is not one of {SCALES}", "use scale: log, for example")
    if scale == "auto":
        scale = auto_scale(float(low), float(high))
        if kind == "int" and scale == "one_minus_log":
            scale = "linear"
    if scale == "log" and low <= 0:
        raise bad(f"a log scale needs low > 0, got low={low}", "raise low or use scale: linear")
    if scale == "one_minus_log":
        if kind == "int":
            raise bad(
                "one_minus_log is for averaging coefficients, not integers", "use scale: linear"
            )
        if not 0 <= low < high < 1 or not 1 - high < 1 - low:
            raise bad(
                f"one_minus_log needs 0 <= low < high < 1, got [{low}, {high}]",
                "give a range of an averaging coefficient such as [0.9, 0.999]",
            )
    return Param(key, kind, float(low), float(high), scale, when=when, grid=grid)


def _check_reachable(
    parent: Param, values: tuple[Any, ...], bad: Callable[[str, str], ConfigError]
) -> None:
    """A condition on a range must test a value inside it: another would silently turn
    the parameter off for the whole study. (Conditions on choices: see unreachable().)"""
    if parent.kind == "categorical":
        return
    for v in values:
        number = isinstance(v, int | float) and not isinstance(v, bool)
        whole = parent.kind != "int" or (number and float(v).is_integer())
        if not (number and whole and parent.low <= v <= parent.high):
            raise bad(
                f"when: {parent.key}={v!r} can never hold: {parent.key} takes {parent.describe()}",
                f"test a value inside {parent.key}'s range, or drop the condition",
            )


def unreachable(params: Sequence[Param]) -> list[tuple[Param, Param, Value]]:
    """(parameter, parent, value) for each value a condition tests that is not among its
    parent's choices: the condition never holds on it. A typo (`adamm`) to refuse, or the
    parent's choices narrowed on purpose (`search.params.optimizer.choices=[adam]`), which
    only the config can tell apart (hyperlab.search.space_check)."""
    by_key = {p.key: p for p in params}
    out = []
    for p in params:
        for dep, values in p.when.items():
            parent = by_key[dep]
            if parent.kind != "categorical":
                continue
            choices = ["null" if c is None else c for c in parent.choices]
            out += [(p, parent, v) for v in values if v not in choices]
    return out


def active(param: Param, chosen: Mapping[str, Value]) -> bool:
    """Whether a conditional parameter exists given the values chosen so far."""
    return all(chosen.get(dep) in allowed for dep, allowed in param.when.items())


def suggest(
    trial: optuna.Trial,
    params: Sequence[Param],
    fixed: Mapping[str, Value] = {},
    naive: bool = False,
) -> dict[str, Value]:
    """Ask the trial for every active parameter; return {override key: value}.

    `fixed` holds choices made outside the search (e.g. optimizer=adam on the command line)
    that conditions may test."""
    chosen: dict[str, Value] = dict(fixed)
    values: dict[str, Value] = {}
    for p in params:
        if not active(p, chosen):
            continue
        values[p.key] = chosen[p.key] = p.sample(trial, naive)
    return values


def overrides(values: Mapping[str, Value]) -> list[str]:
    """Hydra override strings that replay these values: `lr=0.00123`, `optimizer=adam`."""
    return [f"{k}={_format(v)}" for k, v in values.items()]


# A string Hydra reads back as the same string when written bare (a group option, a name).
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_LITERALS = ("true", "false", "null", "nan", "inf")  # Hydra reads these (any case) as values


def _format(v: Value) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str) and not (_BARE.fullmatch(v) and v.lower() not in _LITERALS):
        return "'" + v.replace("'", "\\'") + "'"  # quoted: Hydra reads it as this string
    return str(v)


def grid_space(params: Sequence[Param]) -> dict[str, list[Value]]:
    """Optuna GridSampler's space: each parameter's grid points on its own scale."""
    return {p.optuna_name: p.grid_points() for p in params}


def quantiles(p: Param, naive: bool = False, n: int = 10_000, seed: int = 0) -> list[Value]:
    """The 5/25/50/75/95% quantiles of values sampled at random from the parameter."""
    if p.kind == "categorical":
        return list(p.choices)
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    if naive or p.scale == "linear":
        x = p.low + u * (p.high - p.low)
    elif p.scale == "log":
        x = np.exp(np.log(p.low) + u * (np.log(p.high) - np.log(p.low)))
    else:
        lo, hi = np.log(1 - p.high), np.log(1 - p.low)
        x = 1 - np.exp(lo + u * (hi - lo))
    # exp and 1 - x round: keep every quantile inside the range
    qs = np.clip(np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95]), p.low, p.high)
    return [round(float(q)) if p.kind == "int" else float(q) for q in qs]
