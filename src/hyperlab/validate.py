"""Range checks on a composed config: every bad value is reported with its key, the allowed
range and a fix, before anything is trained or recorded.

Beyond the ranges of single keys: the data file must exist and the tracking URI must name a
store MLflow can open (hyperlab.stores), and a search space must be well formed, name keys
the config has, and keep every value it can sample inside its key's allowed range
(hyperlab.search.space_check, told the ranges here through rule_for)."""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from hyperlab.allowlist import check_config
from hyperlab.errors import ConfigError
from hyperlab.schema import LABELS
from hyperlab.search.space_check import check_search, group_options
from hyperlab.stores import check_data_path, check_tracking_uri

# The names the builders accept (hyperlab.models maps them to modules; a test keeps them in
# step). Spelled out here so that checking a config does not import torch.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu")
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
COUNT = at_least(1, integer=True)

# The seeds each library accepts: torch.manual_seed takes any 64-bit integer, signed or
# unsigned; NumPy's RandomState (scikit-learn's random_state, Optuna's samplers) takes
# [0, 2**32 - 1]. Outside them a run stops with the library's traceback.
TORCH_SEED_MAX = 2**64 - 1
NUMPY_SEED_MAX = 2**32 - 1


def _integer_in(low: int, high: int) -> Check:
    return lambda v: _integer(v) and low <= v <= high


TORCH_SEED = _integer_in(-(2**63), TORCH_SEED_MAX)
NUMPY_SEED = _integer_in(0, NUMPY_SEED_MAX)
TORCH_RANGE = "an integer in [-2**63, 2**64 - 1] (torch's seeds)"
NUMPY_RANGE = "an integer in [0, 2**32 - 1] (NumPy's and scikit-learn's seeds)"

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
    ("seed", TORCH_SEED, TORCH_RANGE, "0"),
    ("threads", COUNT, "an integer >= 1", "1"),
    ("optimizer.beta*", PROBABILITY, "a number in [0, 1)", "0.9"),
    ("optimizer.eps", POSITIVE, "a number > 0", "1e-8"),
    ("optimizer.weight_decay", NON_NEGATIVE, "a number >= 0", "0.01"),
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
    ("dataset.split.seed", NUMPY_SEED, NUMPY_RANGE, "0"),
    ("dataset.seed", NUMPY_SEED, NUMPY_RANGE, "0"),
    ("dataset.n_samples", at_least(10, integer=True), "an integer >= 10", "1000"),
    ("dataset.noise", NON_NEGATIVE, "a number >= 0", "0.2"),
    ("dataset.factor", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.5"),
    ("dataset.n_features", COUNT, "an integer >= 1", "2"),
    ("dataset.centers", at_least(2, integer=True), "an integer >= 2", "4"),
    ("dataset.n_classes", at_least(2, integer=True), "an integer >= 2", "3"),
    ("model.hidden_units", _hidden_units, "an integer >= 1 or a list of them", "128"),
    ("model.layers", at_least(0, integer=True), "an integer >= 0", "2"),
    ("model.activation", one_of(*ACTIVATIONS), f"one of {ACTIVATIONS}", "relu"),
    ("init.scale", POSITIVE, "a number > 0", "10.0"),
    ("objective.metric", one_of(*METRICS), f"one of {METRICS}", "dev_acc"),
    (
        "objective.direction",
        one_of("auto", "maximize", "minimize"),
        "auto, maximize or minimize",
        "auto",
    ),
    ("bayes_error", PROBABILITY, "a number in [0, 1)", "0.0"),
    ("diagnosis_threshold", interval(0, 1), "a number in [0, 1]", "0.05"),
    ("sweep.n_trials", COUNT, "an integer >= 1", "20"),
    ("sweep.workers", COUNT, "an integer >= 1", "2"),
    ("sweep.seed", NUMPY_SEED, NUMPY_RANGE + ": the samplers' seeds", "0"),
    ("sweep.max_failure_rate", interval(0, 1), "a number in [0, 1]", "0.5"),
    ("sweep.heartbeat_seconds", COUNT, "an integer >= 1", "60"),
    ("sweep.retry_failed", at_least(0, integer=True), "an integer >= 0", "1"),
    ("sweep.population", COUNT, "an integer >= 1", "16"),
    ("sweep.retry_seconds", NON_NEGATIVE, "a number >= 0", "60"),
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


def _rule_error(key: str, value: Any) -> ConfigError | None:
    """The error for `key=value` if a rule forbids it, else None."""
    for pattern, check, allowed, example in RULES:
        if fnmatch.fnmatchcase(key, pattern) and not check(value):
            return ConfigError(
                f"{key}={value!r} is not allowed: {key} must be {allowed}",
                f"set it on the command line, e.g. {key}={example}",
            )
    return None


def rule_for(key: str) -> Callable[[Any], ConfigError | None] | None:
    """The check of `key`'s rules (the error for a value they forbid, else None), or None
    where no rule covers `key`: how a search space's values are checked against RULES."""
    if not any(fnmatch.fnmatchcase(key, rule[0]) for rule in RULES):
        return None
    return functools.partial(_rule_error, key)


def _label_error(plain: Mapping[str, Any]) -> ConfigError | None:
    """A group's label (schema.LABELS) must name the function its `_target_` builds: an
    override of the label alone (`init.scheme=xavier`) would be recorded, not built."""
    for group, label in LABELS.items():
        node = plain.get(group)
        if not isinstance(node, Mapping) or label not in node:
            continue
        built = str(node.get("_target_", ""))
        if built.rsplit(".", 1)[-1] != node[label]:
            return ConfigError(
                f"{group}.{label}={node[label]!r} does not name what {group} builds "
                f"({built}): {group}.{label} records the chosen option, it does not choose it",
                f"choose the option with its group instead, e.g. {group}={node[label]} "
                "(hyperlab --help lists the options)",
            )
    return None


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Check every key that has a rule; return the resolved config or raise ConfigError
    (DataError for a data file that is not there)."""
    plain = resolved(cfg)
    check_config(plain)  # the code a config may name: before any value is looked at
    leaves = flatten({k: v for k, v in plain.items() if k != "hydra"})
    # Shallow keys first: `lr=-1` is reported as lr, not as the optimizer.lr it feeds.
    for key, value in sorted(leaves, key=lambda kv: kv[0].count(".")):
        error = _rule_error(key, value)
        if error:
            raise error
    error = _label_error(plain)
    if error:
        raise error
    plain["objective"]["direction"] = direction_of(plain["objective"])
    _check_derived_seeds(plain)
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
    if plain.get("task") == "retest" and not plain.get("study"):
        raise ConfigError("task=retest needs the study to retest", "add study=NAME")
    check_data_path(plain.get("dataset") or {})
    tracking = plain.get("tracking") or {}
    if tracking.get("enabled") or plain.get("resume"):
        check_tracking_uri(str(tracking.get("uri", "")))
    if plain.get("search") is not None:
        check_search(plain, group_options, rule_for)
    return plain


def direction_of(objective: Mapping[str, Any]) -> str:
    """The direction an objective is optimized in: `auto` follows the metric (a loss is
    minimized, an accuracy maximized); a direction set against its metric is refused, as
    it would search for the worst model. Every reader of objective.direction goes through
    here (validate() returns the config with it resolved)."""
    metric, direction = str(objective["metric"]), str(objective["direction"])
    natural = "minimize" if metric.endswith("_loss") else "maximize"
    if direction in ("auto", natural):
        return natural
    raise ConfigError(
        f"objective.direction={direction} with objective.metric={metric}: this would "
        f"{direction} {'a loss' if natural == 'minimize' else 'an accuracy'}, i.e. search "
        "for the worst model",
        f"drop objective.direction (it follows the metric: {natural} {metric}), or set "
        f"objective.direction={natural}",
    )


def _check_derived_seeds(plain: Mapping[str, Any]) -> None:
    """The seeds a run derives from its settings stay in their library's range too: seed
    repeats train seeds seed .. seed+repeats-1 (a retest, seed .. seed+seeds-1), and a
    study's workers seed their samplers with sweep.seed + their worker id."""
    seed = plain.get("seed")
    counts = [("repeats", plain.get("repeats"))]
    if plain.get("task") == "retest":
        counts.append(("seeds", plain.get("seeds")))
    for key, n in counts:
        if isinstance(seed, int) and isinstance(n, int) and seed + n - 1 > TORCH_SEED_MAX:
            raise ConfigError(
                f"seed={seed} with {key}={n}: the repeats train seeds {seed}..{seed + n - 1}, "
                "past torch's largest seed 2**64 - 1",
                f"use a smaller seed, e.g. seed=0 (seed + {key} - 1 must be at most 2**64 - 1)",
            )
    sweep = plain.get("sweep") or {}
    first, workers = sweep.get("seed"), sweep.get("workers")
    if (
        plain.get("search") is not None
        and isinstance(first, int)
        and isinstance(workers, int)
        and first + workers - 1 > NUMPY_SEED_MAX
    ):
        raise ConfigError(
            f"sweep.seed={first} with sweep.workers={workers}: the workers seed their "
            f"samplers with {first}..{first + workers - 1}, past the samplers' largest "
            "seed 2**32 - 1",
            "use a smaller seed, e.g. sweep.seed=0 "
            "(sweep.seed + sweep.workers - 1 must be at most 2**32 - 1)",
        )
