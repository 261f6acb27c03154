"""Range checks on a composed config: every bad value is reported with its key, the allowed
range and a fix, before anything is trained or recorded."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from hyperlab.errors import ConfigError

# The names the builders accept (hyperlab.models maps them to modules; a test keeps them in
# step). Spelled out here so that checking a config does not import torch.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu")
NORMALIZATIONS = ("none", "batchnorm", "layernorm")
INIT_SCHEMES = ("he", "xavier", "zeros", "random_large")
METRICS = ("dev_acc", "dev_loss", "train_acc", "train_loss")
Check = Callable[[Any], bool]


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def interval(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    def check(v: Any) -> bool:
        if not _number(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return bool(above and below)

    return check


def at_least(low: float, *, integer: bool = False, strict: bool = False) -> Check:
    def check(v: Any) -> bool:
        ok_type = _integer(v) if integer else _number(v)
        return ok_type and (v > low if strict else v >= low)

    return check


def one_of(*options: str) -> Check:
    return lambda v: v in options


def _hidden_units(v: Any) -> bool:
    if isinstance(v, list):
        return all(_integer(h) and h >= 1 for h in v)
    return _integer(v) and v >= 1


POSITIVE = at_least(0, strict=True)
NON_NEGATIVE = at_least(0)
PROBABILITY = interval(0, 1, high_open=True)  # [0, 1): averaging coefficients, error rates
INTEGER = at_least(-(2**63), integer=True)
COUNT = at_least(1, integer=True)

# (key pattern, check, the allowed values as the error message states them, an example)
RULES: list[tuple[str, Check, str, str]] = [
    ("task", one_of("train", "gradcheck", "retest"), "train, gradcheck or retest", "gradcheck"),
    ("checkpoint.every", at_least(0, integer=True), "an integer >= 0 (0: none)", "5"),
    ("repeats", COUNT, "an integer >= 1", "3"),
    ("objective.over_seeds", one_of("mean", "bound"), "mean or bound", "bound"),
    ("objective.z", NON_NEGATIVE, "a number >= 0", "1.0"),
    ("top_k", COUNT, "an integer >= 1", "5"),
    ("seeds", COUNT, "an integer >= 1", "3"),
    ("gradcheck.eps", POSITIVE, "a number > 0", "1e-7"),
    ("gradcheck.batch", COUNT, "an integer >= 1", "32"),
    ("gradcheck.max_components", at_least(0, integer=True), "an integer >= 0", "0"),
    ("gradcheck.after_epochs", at_least(0, integer=True), "an integer >= 0", "0"),
    ("gradcheck.fail_at", POSITIVE, "a number > 0", "1e-3"),
    ("lr", POSITIVE, "a number > 0", "1e-3"),
    ("optimizer.lr", POSITIVE, "a number > 0", "1e-3"),
    ("epochs", COUNT, "an integer >= 1", "20"),
    ("batch_size", COUNT, "an integer >= 1", "64"),
    ("seed", INTEGER, "an integer", "0"),
    ("threads", COUNT, "an integer >= 1", "1"),
    ("optimizer.beta*", PROBABILITY, "a number in [0, 1)", "0.9"),
    ("optimizer.eps", POSITIVE, "a number > 0", "1e-8"),
    ("optimizer.weight_decay", NON_NEGATIVE, "a number >= 0", "0.01"),
    ("normalization.kind", one_of(*NORMALIZATIONS), f"one of {NORMALIZATIONS}", "batchnorm"),
    ("normalization.eps", POSITIVE, "a number > 0", "1e-5"),
    ("normalization.running_beta", PROBABILITY, "a number in [0, 1)", "0.9"),
    ("regularization.l2", NON_NEGATIVE, "a number >= 0", "0.7"),
    ("regularization.keep_prob", interval(0, 1, low_open=True), "a number in (0, 1]", "0.8"),
    ("schedule.decay_rate", NON_NEGATIVE, "a number >= 0", "1.0"),
    ("schedule.rate", interval(0, 1, low_open=True), "a number in (0, 1]", "0.95"),
    ("schedule.interval", COUNT, "an integer >= 1", "5"),
    ("schedule.epochs", COUNT, "an integer >= 1", "20"),
    ("schedule.min_factor", interval(0, 1), "a number in [0, 1]", "0.0"),
    ("dataset.split.train", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.7"),
    ("dataset.split.dev", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.15"),
    ("dataset.split.test", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.15"),
    ("dataset.split.seed", INTEGER, "an integer", "0"),
    ("dataset.seed", INTEGER, "an integer", "0"),
    ("dataset.n_samples", at_least(10, integer=True), "an integer >= 10", "1000"),
    ("dataset.noise", NON_NEGATIVE, "a number >= 0", "0.2"),
    ("dataset.factor", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.5"),
    ("dataset.n_features", COUNT, "an integer >= 1", "2"),
    ("dataset.centers", at_least(2, integer=True), "an integer >= 2", "4"),
    ("dataset.n_classes", at_least(2, integer=True), "an integer >= 2", "3"),
    ("model.hidden_units", _hidden_units, "an integer >= 1 or a list of them", "128"),
    ("model.layers", at_least(0, integer=True), "an integer >= 0", "2"),
    ("model.activation", one_of(*ACTIVATIONS), f"one of {ACTIVATIONS}", "relu"),
    ("init.scheme", one_of(*INIT_SCHEMES), f"one of {INIT_SCHEMES}", "he"),
    ("init.scale", POSITIVE, "a number > 0", "10.0"),
    ("objective.metric", one_of(*METRICS), f"one of {METRICS}", "dev_acc"),
    ("objective.direction", one_of("maximize", "minimize"), "maximize or minimize", "maximize"),
    ("bayes_error", PROBABILITY, "a number in [0, 1)", "0.0"),
    ("diagnosis_threshold", interval(0, 1), "a number in [0, 1]", "0.05"),
    ("sweep.n_trials", COUNT, "an integer >= 1", "20"),
    ("sweep.workers", COUNT, "an integer >= 1", "2"),
    ("sweep.max_failure_rate", interval(0, 1), "a number in [0, 1]", "0.5"),
    ("tracking.flush_seconds", NON_NEGATIVE, "a number >= 0", "1.0"),
]


def flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every leaf of a plain container; lists are leaves."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from flatten(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), node


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers with interpolations resolved; a missing mandatory
    value (`???`) becomes a ConfigError naming the key."""
    # Hydra's own node needs a running job to resolve; it is none of the user's settings.
    ours = (
        OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    )
    try:
        return OmegaConf.to_container(ours, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        key = e.full_key
        raise ConfigError(
            f"{key} is required but not set", f"add {key}=... to the command line"
        ) from None
    except InterpolationResolutionError as e:
        raise ConfigError(f"{e.full_key}: {e.msg}", "fix or remove the interpolation") from None


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Check every key that has a rule; return the resolved config or raise ConfigError."""
    plain = resolved(cfg)
    leaves = flatten({k: v for k, v in plain.items() if k != "hydra"})
    # Shallow keys first: `lr=-1` is reported as lr, not as the optimizer.lr it feeds.
    for key, value in sorted(leaves, key=lambda kv: kv[0].count(".")):
        for pattern, check, allowed, example in RULES:
            if fnmatch.fnmatchcase(key, pattern) and not check(value):
                raise ConfigError(
                    f"{key}={value!r} is not allowed: {key} must be {allowed}",
                    f"set it on the command line, e.g. {key}={example}",
                )
    split = plain["dataset"].get("split", {})
    if split:
        total = sum(float(split[k]) for k in ("train", "dev", "test"))
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(
                f"dataset.split fractions sum to {total:g}, not 1 "
                f"(train={split['train']}, dev={split['dev']}, test={split['test']})",
                "make dataset.split.train + dataset.split.dev + dataset.split.test = 1",
            )
    if plain["normalization"].get("kind") == "batchnorm" and plain["batch_size"] < 2:
        raise ConfigError(
            f"batch_size={plain['batch_size']} with normalization=batchnorm: batch norm needs "
            "at least 2 examples per mini-batch to compute a mean and a variance",
            "use batch_size >= 2, or normalization=layernorm for SGD",
        )
    return plain
