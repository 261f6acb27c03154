"""Seed repeats: one configuration trained with several seeds, judged by its spread.

A single run's dev accuracy mixes the configuration's merit with the luck of its seed
(initialization, dropout masks, mini-batch order; the data split stays fixed). With
`repeats=R` a configuration is trained with seeds seed, seed+1, ..., seed+R-1 and judged by
the mean, or by a pessimistic bound on it, so that a lucky seed does not win a study.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from hyperlab import display
from hyperlab.build import build_data
from hyperlab.errors import masked
from hyperlab.run import Job, RunResult, run
from hyperlab.schema import Config, as_dict
from hyperlab.tracking import default_tags, params_of, start_run
from hyperlab.validate import checked


@dataclass(frozen=True)
class Spread:
    """A configuration's objective over seeds."""

    seeds: list[int]
    values: list[float]  # NaN where a seed diverged
    mean: float
    std: float  # sample standard deviation (0 for one seed)
    objective: float  # the mean, or the bound: what a study sees
    runs: tuple[RunResult, ...] = ()  # each seed's run, as it ended

    def describe(self) -> str:
        if len(self.values) == 1:
            return f"{self.values[0]:.4f}"
        return f"{self.mean:.4f} ± {self.std:.4f} over {len(self.values)} seeds"


def spread(
    seeds: Sequence[int],
    values: Sequence[float],
    *,
    direction: str = "maximize",
    over_seeds: str = "mean",
    z: float = 1.0,
) -> Spread:
    """Summarize per-seed values. `over_seeds=bound` takes z standard errors off the mean on
    the pessimistic side (below for maximize, above for minimize). A diverged seed makes the
    whole configuration NaN: it is not robust."""
    values = list(values)
    if any(math.isnan(v) for v in values):
        nan = math.nan
        return Spread(list(seeds), values, nan, nan, nan)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    objective = mean
    if over_seeds == "bound":
        margin = z * std / math.sqrt(len(values))
        objective = mean - margin if direction == "maximize" else mean + margin
    return Spread(list(seeds), values, mean, std, objective)


def of_one(config: Config, result: RunResult) -> Spread:
    """The spread of one run: its objective, for `config`'s single seed."""
    one = spread([config.seed], [result.objective], direction=config.objective.direction)
    return dataclasses.replace(one, runs=(result,))


def train(cfg: Config | DictConfig | Mapping[str, Any], job: Job | None = None) -> Spread:
    """Train the configuration `repeats` times (once by default) and return its spread.

    Each seed is its own MLflow run, under the job's parent run (a study's or a
    multirun's), or under a new parent run holding the mean and the standard deviation."""
    job = job or Job()
    config = checked(cfg)
    objective = config.objective
    repeats, first = config.repeats, config.seed
    if repeats == 1:
        return of_one(config, run(config, job))
    seeds = list(range(first, first + repeats))
    build_data(config.dataset)  # bad data fails here, before a parent run is recorded
    tracking = config.tracking
    parent = None
    if tracking.enabled and job.parent_run_id is None:
        name = job.run_name or " ".join(job.overrides) or "defaults"
        parent = start_run(
            tracking.uri,
            tracking.experiment,
            tracking.artifacts,
            run_name=masked(f"{repeats} seeds: {name}")[:250],
            tags={**default_tags(job.command), **job.tags, "hyperlab.repeats": str(repeats)},
            params=params_of(as_dict(config), job.choices),
        )
    runs = []
    for i, seed in enumerate(seeds):
        label = f"seed {seed} ({i + 1} of {repeats})"
        if config.progress:
            display.console.rule(label)
        runs.append(
            run(
                dataclasses.replace(config, seed=seed),
                dataclasses.replace(
                    job,
                    # A pruner judges the first seed: the others would report the same steps.
                    listeners=job.listeners if i == 0 else (),
                    run_name=f"{job.run_name or ' '.join(job.overrides) or 'defaults'} {label}",
                    output_dir=job.output_dir / f"seed_{seed}" if job.output_dir else None,
                    parent_run_id=parent.run_id if parent else job.parent_run_id,
                    tags={**job.tags, "hyperlab.repeat": str(i), "hyperlab.seed": str(seed)},
                    on_opened=None,  # the caller learns of the seeds' runs from this parent
                ),
            )
        )
    values = [r.objective for r in runs]
    result = spread(
        seeds,
        values,
        direction=objective.direction,
        over_seeds=objective.over_seeds,
        z=objective.z,
    )
    result = dataclasses.replace(result, runs=tuple(runs))
    metric = objective.metric
    if config.progress:
        how = "mean" if objective.over_seeds == "mean" else f"bound (z={objective.z:g})"
        display.console.print(
            f"[bold]{metric} over seeds {seeds[0]}..{seeds[-1]}[/]: {result.describe()}; "
            f"per seed {', '.join(f'{v:.4f}' for v in values)}; objective ({how}) "
            f"{result.objective:.4f}"
        )
    if parent:
        finite = not math.isnan(result.mean)
        parent.finish(
            "FINISHED" if finite else "FAILED",
            metrics={
                f"{metric}_mean": result.mean,
                f"{metric}_std": result.std,
                "objective": result.objective,
            }
            if finite
            else {},
            tags={"hyperlab.per_seed": " ".join(f"{v:.6g}" for v in values)},
        )
    return result
