"""Range checks on a composed config: every bad value is reported with its key, the allowed
range and a fix, before anything is trained or recorded. The ranges live beside what they
bound (hyperlab.ranges): the root settings' in the schema's fields, a group's in the
signature of the function its `_target_` names. validate() returns the typed Config that
everything below the entry points takes.

Beyond the ranges of single keys: the data file must exist and the tracking URI must name a
store MLflow can open (hyperlab.stores). A study's search space is checked against the
ranges (rule_for) where the study is set up (hyperlab.search.setup.setup_of), once per
study and worker rather than once per trial."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from hyperlab.allowlist import check_config
from hyperlab.errors import ConfigError
from hyperlab.objectives import resolve as resolve_objective
from hyperlab.ranges import NUMPY_SEED_MAX, TORCH_SEED_MAX, Range, declared, declared_in
from hyperlab.schema import LABELS, Config, bounds, typed
from hyperlab.stages import check as check_stages
from hyperlab.stores import check_data_path, check_tracking_uri

# The config's groups whose `_target_` a range may bound (hyperlab.ranges.declared), and
# the nested node whose keys are a class's fields.
GROUPS = (
    "dataset",
    "model",
    "init",
    "normalization",
    "regularization",
    "augment",
    "optimizer",
    "schedule",
)
NESTED = {"dataset.split": "hyperlab.splitting.Split"}
RuleFor = Callable[[str], Callable[[Any], ConfigError | None] | None]


def rules_of(plain: Mapping[str, Any]) -> dict[str, Range]:
    """Every range that bounds a setting of the config: the root settings' (the schema's
    fields) and those the functions its groups' `_target_`s name declare."""
    rules = bounds()
    for group in GROUPS:
        node = plain.get(group)
        if isinstance(node, Mapping) and isinstance(node.get("_target_"), str):
            rules.update({f"{group}.{k}": r for k, r in declared(node["_target_"]).items()})
    for key, target in NESTED.items():
        rules.update({f"{key}.{k}": r for k, r in declared(target).items()})
    return rules


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


def _error(key: str, value: Any, r: Range) -> ConfigError | None:
    """The error for `key=value` if `r` forbids it, else None."""
    if r.check(value):
        return None
    return ConfigError(
        f"{key}={value!r} is not allowed: {key} must be {r.allowed}",
        f"set it on the command line, e.g. {key}={r.example}",
    )


def rule_for(plain: Mapping[str, Any]) -> RuleFor:
    """How a search space's values are checked against the config's ranges: key -> the
    check of its range (the error for a value it forbids, else None), or None where no
    range bounds the key. A key of a group the search switches between options is bounded
    as any option of the group's module declares it (adam has no beta; momentum does)."""
    rules = rules_of(plain)

    def check(key: str) -> Callable[[Any], ConfigError | None] | None:
        r = rules.get(key)
        group, _, arg = key.partition(".")
        node = plain.get(group)
        if r is None and group in GROUPS and isinstance(node, Mapping):
            module = str(node.get("_target_", "")).rpartition(".")[0]
            r = declared_in(module).get(arg) if module else None
        return None if r is None else functools.partial(_error, key, r=r)

    return check


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


def checked(cfg: Config | DictConfig | Mapping[str, Any]) -> Config:
    """The typed config of `cfg`: as it is when already validated, else validate()d."""
    if isinstance(cfg, Config):
        return cfg
    return validate(cfg if isinstance(cfg, DictConfig) else DictConfig(cfg))


def validate(cfg: DictConfig) -> Config:
    """Check every key that has a rule; return the config resolved and typed (a Config),
    or raise ConfigError (DataError for a data file that is not there)."""
    plain = resolved(cfg)
    check_config(plain)  # the code a config may name: before any value is looked at
    leaves = flatten({k: v for k, v in plain.items() if k != "hydra"})
    rules = rules_of(plain)
    # Shallow keys first: `lr=-1` is reported as lr, not as the optimizer.lr it feeds.
    for key, value in sorted(leaves, key=lambda kv: kv[0].count(".")):
        error = _error(key, value, rules[key]) if key in rules else None
        if error:
            raise error
    error = _label_error(plain)
    if error:
        raise error
    resolve_objective(plain["objective"], direction_of)
    _check_derived_seeds(plain)
    check_stages(plain, rules)
    _check_split(plain["dataset"])
    if plain["normalization"].get("kind") == "batchnorm" and plain["batch_size"] < 2:
        raise ConfigError(
            f"batch_size={plain['batch_size']} with normalization=batchnorm: batch norm needs "
            "at least 2 examples per mini-batch to compute a mean and a variance",
            "use batch_size >= 2, or normalization=layernorm for SGD",
        )
    if plain.get("task") == "retest" and not plain.get("study"):
        raise ConfigError("task=retest needs the study to retest", "add study=NAME")
    check_data_path(plain.get("dataset") or {})
    if plain.get("device") not in ("auto", "cpu"):  # cpu is everywhere; auto falls back to it
        from hyperlab.devices import resolve

        resolve(str(plain["device"]))
    tracking = plain.get("tracking") or {}
    if tracking.get("enabled") or plain.get("resume"):
        check_tracking_uri(str(tracking.get("uri", "")))
    return typed(plain)


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


def _check_split(dataset: Mapping[str, Any]) -> None:
    """The fractions of one file sum to 1; dev and test files come as a pair."""
    split = dataset.get("split", {})
    dev, test = (dataset.get(k) or "" for k in ("dev_path", "test_path"))
    if bool(dev) != bool(test):
        given, missing = ("dev_path", "test_path") if dev else ("test_path", "dev_path")
        raise ConfigError(
            f"dataset.{given} without dataset.{missing}: dev and test come from files of "
            "their own together (the distribution the model will serve)",
            f"give dataset.{missing}=FILE as well, or neither",
        )
    if not split or dev:  # with files of their own, only split.train_dev applies
        return
    keys = (
        ("train", "train_dev", "dev", "test")
        if split.get("train_dev")
        else ("train", "dev", "test")
    )
    total = sum(float(split[k]) for k in keys)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        given = ", ".join(f"{k}={split[k]}" for k in keys)
        raise ConfigError(
            f"dataset.split fractions sum to {total:g}, not 1 ({given})",
            "make " + " + ".join(f"dataset.split.{k}" for k in keys) + " = 1",
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
