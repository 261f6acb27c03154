"""The allowed values of a setting, written beside what they bound.

A range is part of a type: `lr: Positive` in a component's signature (an optimizer, a
data set, a schedule's field) or a root setting's field in hyperlab.schema says what the
setting may be. hyperlab.validate reads them there, so adding an option with a new
argument is its YAML file and its function, never a table elsewhere to keep in step.

A component's ranges are read from its module's source (`declared`), not by importing it:
checking a config must not import torch.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any


@dataclass(frozen=True)
class Range:
    """What a setting may be: `check`, said as `allowed` in the error, with an `example`."""

    check: Callable[[Any], bool]
    allowed: str
    example: str


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def interval(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if not _number(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return bool(above and below)

    return check


def at_least(low: float, *, integer: bool = False, strict: bool = False) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        ok_type = _integer(v) if integer else _number(v)
        return ok_type and (v > low if strict else v >= low)

    return check


def one_of(*options: str) -> Callable[[Any], bool]:
    return lambda v: v in options


def _hidden_units(v: Any) -> bool:
    if isinstance(v, list | tuple):
        return all(_integer(h) and h >= 1 for h in v)
    return _integer(v) and v >= 1


def _integer_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: _integer(v) and low <= v <= high


# The seeds each library accepts: torch.manual_seed takes any 64-bit integer, signed or
# unsigned; NumPy's RandomState (scikit-learn's random_state, Optuna's samplers) takes
# [0, 2**32 - 1]. Outside them a run stops with the library's traceback.
TORCH_SEED_MAX = 2**64 - 1
NUMPY_SEED_MAX = 2**32 - 1
# The names hyperlab.models maps to activation modules (a test keeps the two in step).
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu")
METRICS = ("dev_acc", "dev_loss", "train_acc", "train_loss")

POSITIVE = Range(at_least(0, strict=True), "a number > 0", "1e-3")
NON_NEGATIVE = Range(at_least(0), "a number >= 0", "0.01")
# [0, 1): averaging coefficients (momentum's, RMSprop's and Adam's betas, batch norm's
# running average) and error rates.
AVERAGING = Range(interval(0, 1, high_open=True), "a number in [0, 1)", "0.9")
KEEP_PROB = Range(interval(0, 1, low_open=True), "a number in (0, 1]", "0.8")
FRACTION = Range(interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.5")
UNIT = Range(interval(0, 1), "a number in [0, 1]", "0.5")
HOLD_OUT = Range(interval(0, 1, high_open=True), "a fraction in [0, 1) (0: none)", "0.1")
DEGREES = Range(interval(0, 180), "a number of degrees in [0, 180]", "10")
COUNT = Range(at_least(1, integer=True), "an integer >= 1", "5")
NATURAL = Range(at_least(0, integer=True), "an integer >= 0", "0")
CLASSES = Range(at_least(2, integer=True), "an integer >= 2", "3")
SAMPLES = Range(at_least(10, integer=True), "an integer >= 10", "1000")
HIDDEN_UNITS = Range(_hidden_units, "an integer >= 1 or a list of them", "128")
ACTIVATION = Range(one_of(*ACTIVATIONS), f"one of {ACTIVATIONS}", "relu")
DEVICE_SPELLING = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE = Range(
    lambda v: isinstance(v, str) and DEVICE_SPELLING.fullmatch(v) is not None,
    "auto, cpu, cuda, cuda:N or mps",
    "auto",
)
METRIC = Range(one_of(*METRICS), f"one of {METRICS}", "dev_acc")
TORCH_SEED = Range(
    _integer_in(-(2**63), TORCH_SEED_MAX), "an integer in [-2**63, 2**64 - 1] (torch's seeds)", "0"
)
NUMPY_SEED = Range(
    _integer_in(0, NUMPY_SEED_MAX),
    "an integer in [0, 2**32 - 1] (NumPy's and scikit-learn's seeds)",
    "0",
)

# The types components annotate their arguments with: to a type checker the plain type, to
# hyperlab.validate the range (by name, see `declared`).
Positive = Annotated[float, POSITIVE]
NonNegative = Annotated[float, NON_NEGATIVE]
Averaging = Annotated[float, AVERAGING]
KeepProb = Annotated[float, KEEP_PROB]
Fraction = Annotated[float, FRACTION]
Unit = Annotated[float, UNIT]
HoldOut = Annotated[float, HOLD_OUT]
Degrees = Annotated[float, DEGREES]
Count = Annotated[int, COUNT]
Natural = Annotated[int, NATURAL]
Classes = Annotated[int, CLASSES]
Samples = Annotated[int, SAMPLES]
HiddenUnits = Annotated[int | Sequence[int], HIDDEN_UNITS]
Activation = Annotated[str, ACTIVATION]
NumpySeed = Annotated[int, NUMPY_SEED]

_BY_NAME: dict[str, Range] = {
    name: alias.__metadata__[0]
    for name, alias in list(globals().items())
    if getattr(alias, "__metadata__", None) and isinstance(alias.__metadata__[0], Range)
}


def bounded(default: Any, r: Range) -> Any:
    """A dataclass field with its range (hyperlab.schema's root settings); the example in
    an error is the default."""
    return dataclasses.field(
        default=default, metadata={"range": dataclasses.replace(r, example=str(default))}
    )


def declared(target: str) -> dict[str, Range]:
    """The ranges the component `target` (a dotted name, as a `_target_`) declares for its
    arguments: a function's parameters, a class's __init__ parameters or its dataclass
    fields, annotated with one of this module's types (the example in an error is the
    argument's default, where it has one). Read from the source, without importing it;
    {} where the source cannot be read."""
    module, _, name = target.rpartition(".")
    return _components(module).get(name, {}) if module else {}


def declared_in(module: str) -> dict[str, Range]:
    """The ranges any component of `module` declares, by argument name (the first one
    declared wins): how a group's setting is bounded where its option is not known yet."""
    out: dict[str, Range] = {}
    for args in _components(module).values():
        for arg, r in args.items():
            out.setdefault(arg, r)
    return out


@functools.cache
def _components(module: str) -> dict[str, dict[str, Range]]:
    from hyperlab.allowlist import source_of

    path = source_of(module)
    if path is None:
        return {}
    out: dict[str, dict[str, Range]] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = _of_arguments(node)
        elif isinstance(node, ast.ClassDef):
            init = next(
                (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
                None,
            )
            fields = [n for n in node.body if isinstance(n, ast.AnnAssign)]
            out[node.name] = (
                _of_arguments(init)
                if init is not None
                else {
                    n.target.id: r
                    for n in fields
                    if isinstance(n.target, ast.Name)
                    if (r := _range_of(n.annotation, n.value)) is not None
                }
            )
    return out


def _of_arguments(f: ast.FunctionDef) -> dict[str, Range]:
    args = [*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs]
    defaults: list[ast.expr | None] = [
        *[None] * (len(f.args.posonlyargs) + len(f.args.args) - len(f.args.defaults)),
        *f.args.defaults,
        *f.args.kw_defaults,
    ]
    return {
        a.arg: r
        for a, default in zip(args, defaults, strict=True)
        if a.annotation is not None and (r := _range_of(a.annotation, default)) is not None
    }


def _range_of(annotation: ast.expr, default: ast.expr | None) -> Range | None:
    if isinstance(annotation, ast.Name):
        r = _BY_NAME.get(annotation.id)
    elif isinstance(annotation, ast.Attribute):  # ranges.Positive
        r = _BY_NAME.get(annotation.attr)
    else:
        return None
    if r is not None and isinstance(default, ast.Constant) and r.check(default.value):
        r = dataclasses.replace(r, example=str(default.value))
    return r
