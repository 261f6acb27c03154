"""What a study optimizes: one metric (objective.metric, as before) or several
(objective.metrics, a multi-objective study), each with its direction.

Resolved once by hyperlab.validate: `objective.directions` comes back with one direction
per metric, `auto` replaced by the metric's natural one (a loss, seconds or a parameter
count minimized, an accuracy maximized). A list of one metric is the single objective.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from hyperlab.errors import ConfigError
from hyperlab.ranges import METRICS

EPOCH_METRICS = METRICS  # the per-epoch metrics objective.metric takes

if TYPE_CHECKING:
    from hyperlab.schema import Config

# Measured once per run rather than per epoch: the fit's wall time and the model's size.
RUN_METRICS = ("train_seconds", "n_params")
OBJECTIVE_METRICS = (*EPOCH_METRICS, *RUN_METRICS)
_WHAT = {"maximize": "an accuracy", "minimize": "a loss"}


def natural(metric: str) -> str:
    """The direction a metric is optimized in when none is given."""
    return "minimize" if metric.endswith("_loss") or metric in RUN_METRICS else "maximize"


def is_multi(config: Config) -> bool:
    """Whether the config asks for a multi-objective study (two metrics or more)."""
    return len(config.objective.metrics) > 1


def names(config: Config) -> list[str]:
    """The metrics a study optimizes, in order: objective.metrics, or objective.metric."""
    return list(config.objective.metrics) or [config.objective.metric]


def directions(config: Config) -> list[str]:
    """One direction per metric of names(config)."""
    return list(config.objective.directions) or [config.objective.direction]


def describe(metrics: Sequence[str], dirs: Sequence[str]) -> str:
    """`dev_acc (maximize), n_params (minimize)`, as messages and params name an objective."""
    return ", ".join(f"{m} ({d})" for m, d in zip(metrics, dirs, strict=True))


def _listed(values: Sequence[Any]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def resolve(objective: MutableMapping[str, Any], direction_of: Any) -> None:
    """Check and resolve the objective node of a plain config in place. With one metric
    (objective.metric, or a list of one), `direction_of` resolves it as it always did and
    the lists are emptied; with several, each gets its direction, and objective.metric
    becomes the first per-epoch metric among them (the epoch a run calls its best)."""
    metrics = [str(m) for m in objective.get("metrics") or []]
    dirs = [str(d) for d in objective.get("directions") or []]
    if dirs and not metrics:
        raise ConfigError(
            f"objective.directions={_listed(dirs)} without objective.metrics: directions are "
            "given one per metric of a multi-objective study",
            "add objective.metrics=[...] (one metric per direction), or use "
            "objective.direction for the single objective.metric",
        )
    if not metrics:
        objective["direction"] = direction_of(objective)
        return
    _check_metrics(metrics)
    if dirs and len(dirs) != len(metrics):
        raise ConfigError(
            f"objective.directions={_listed(dirs)} has {len(dirs)} direction(s) for "
            f"{len(metrics)} metrics (objective.metrics={_listed(metrics)})",
            "give one direction per metric, e.g. objective.directions="
            f"{_listed([natural(m) for m in metrics])}, or drop objective.directions "
            "(auto: each metric's own)",
        )
    dirs = [
        _direction(m, d, i)
        for i, (m, d) in enumerate(zip(metrics, dirs or ["auto"] * len(metrics), strict=True))
    ]
    if len(metrics) == 1:  # exactly the single objective
        objective.update(metric=metrics[0], direction=dirs[0], metrics=[], directions=[])
        return
    objective["metrics"], objective["directions"] = metrics, dirs
    first = next((m for m in metrics if m in EPOCH_METRICS), None)
    if first is not None:
        objective["metric"], objective["direction"] = first, natural(first)
    else:  # only run metrics: the best epoch stays the configured metric's
        objective["direction"] = direction_of({**objective, "directions": []})


def _check_metrics(metrics: list[str]) -> None:
    listed = _listed(metrics)
    for m in metrics:
        if m not in OBJECTIVE_METRICS:
            raise ConfigError(
                f"objective.metrics={listed}: {m!r} is not a metric a study can optimize "
                f"(one of {', '.join(OBJECTIVE_METRICS)})",
                "name metrics from that list, e.g. objective.metrics=[dev_acc,train_seconds]",
            )
    twice = sorted({m for m in metrics if metrics.count(m) > 1})
    if twice:
        raise ConfigError(
            f"objective.metrics={listed} names {', '.join(twice)} twice",
            "name each metric once, e.g. objective.metrics=[dev_acc,n_params]",
        )
    if len(metrics) == 1 and metrics[0] in RUN_METRICS:
        raise ConfigError(
            f"objective.metrics={listed}: {metrics[0]} alone is no study: every trial of a "
            "space would be judged by its time or size, not by how well it learns",
            f"optimize it beside a learning metric, e.g. objective.metrics=[dev_acc,{metrics[0]}]",
        )


def _direction(metric: str, direction: str, i: int) -> str:
    """A metric's resolved direction; one set against the metric is refused, as
    validate.direction_of refuses it for the single objective."""
    want = natural(metric)
    if direction not in ("auto", "maximize", "minimize"):
        raise ConfigError(
            f"objective.directions[{i}]={direction} is not a direction "
            "(auto, maximize or minimize)",
            f"e.g. objective.directions[{i}]={want}",
        )
    if direction in ("auto", want):
        return want
    what = _WHAT[want] if metric in EPOCH_METRICS else f"{metric} (less is better)"
    raise ConfigError(
        f"objective.directions[{i}]={direction} with {metric}: this would {direction} "
        f"{what}, i.e. search for the worst model",
        f"set objective.directions[{i}]={want}, or drop objective.directions (auto: "
        "each metric's own)",
    )


def values_of(config: Config, measures: Mapping[str, float]) -> list[float]:
    """A trained run's value of each objective, in order (its final epoch's metrics and
    its run metrics, as RunResult.measures holds them)."""
    return [float(measures[m]) for m in names(config)]
