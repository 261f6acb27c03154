"""A multi-objective study (objective.metrics): what it refuses before it starts, and the
list of values a trial tells. Its report is the Pareto front (hyperlab.search.pareto)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from hyperlab.errors import ConfigError
from hyperlab.objectives import describe, directions, is_multi, names, values_of

if TYPE_CHECKING:
    import optuna

    from hyperlab.repeats import Spread
    from hyperlab.schema import Config

# Samplers that optimize one objective only, by their class name, and why.
SINGLE_OBJECTIVE_SAMPLERS = {
    "CmaEsSampler": "Optuna's CMA-ES optimizes a single objective (it raises on a "
    "multi-objective study)",
    "CoarseToFineSampler": "its stages narrow the search around the best trials of a "
    "single objective",
}
MULTI_SAMPLERS = "sampler=tpe, nsga2, gp, random, log_uniform, qmc or grid"


def _option(choices: Mapping[str, str], group: str, node: Mapping[str, object]) -> str:
    """The option a group was given as (`median`), else its class's name."""
    return choices.get(group) or str(node.get("_target_", "")).rpartition(".")[2]


def check_study(config: Config, choices: Mapping[str, str]) -> None:
    """Refuse what a multi-objective study cannot do, before anything is written: prune,
    sample with a single-objective sampler, judge seed repeats or a stacked population by
    one value, or warm-start from one study's best. `choices` are the command's group
    options (group -> option), for the messages."""
    if not is_multi(config):
        return
    n = f"{len(names(config))} objectives"
    pruner = _option(choices, "pruner", config.pruner)
    if not str(config.pruner.get("_target_", "")).endswith("NopPruner"):
        raise ConfigError(
            f"pruner={pruner} with {n}: Optuna cannot prune a multi-objective study "
            "(trial.should_prune raises)",
            "use pruner=none",
        )
    sampler = _option(choices, "sampler", config.sampler)
    cls = str(config.sampler.get("_target_", "")).rpartition(".")[2]
    if cls in SINGLE_OBJECTIVE_SAMPLERS:
        raise ConfigError(
            f"sampler={sampler} with {n}: {SINGLE_OBJECTIVE_SAMPLERS[cls]}",
            f"use a sampler that handles several objectives: {MULTI_SAMPLERS}",
        )
    if config.repeats > 1:
        raise ConfigError(
            f"repeats={config.repeats} with {n}: seed repeats judge a trial by one value "
            "over its seeds (objective.over_seeds), not by a list of them",
            "use repeats=1 in the study, then retrain a front trial with its replay line "
            "and repeats=3",
        )
    if config.sweep.population > 1:
        raise ConfigError(
            f"sweep.population={config.sweep.population} with {n}: a stacked population "
            "tells each trial one value",
            "use sweep.population=1 (the default): workers train trials one by one",
        )
    if config.sweep.warm_start:
        raise ConfigError(
            f"sweep.warm_start={config.sweep.warm_start} with {n}: a warm start enqueues "
            "an earlier study's best trials, ranked by one objective",
            "drop sweep.warm_start (a multi-objective study starts from its sampler's "
            "random trials)",
        )


def label(config: Config) -> str:
    """The objective as the study's header and params name it."""
    return describe(names(config), directions(config))


def told(config: Config, trial: optuna.Trial, result: Spread) -> float | list[float]:
    """What the study is told of a trial that trained: its objective, or with several
    metrics their values in order, its MLflow run's id kept beside them for the front."""
    if not is_multi(config):
        return result.objective
    (run,) = result.runs  # seed repeats are refused (check_study)
    if run.run_id:
        trial.set_user_attr(RUN_ATTR, run.run_id)
    return values_of(config, run.measures)


RUN_ATTR = "mlflow_run_id"  # a multi-objective trial's run, for the parent run's front
