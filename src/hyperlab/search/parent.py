"""A study's MLflow parent run: created by its first sweeper with the study's params,
reopened by the others, and closed with the report, the best trial and where to see it."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hyperlab import stops
from hyperlab.schema import Config
from hyperlab.search.setup import Setup
from hyperlab.tracking import PARENT_RUN_ID

if TYPE_CHECKING:
    import optuna

    from hyperlab.search import report


def parent_run(
    cfg: Config,
    choices: Mapping[str, str],
    setup: Setup,
    s: optuna.Study,
    arguments: list[str],
) -> Any:
    """The study's MLflow parent run: created by its first sweeper, reopened by the others.
    Under the lock, so that two sweepers starting at once share one parent run."""
    from hyperlab.search.study import budget_lock
    from hyperlab.tracking import default_tags, start_run

    with budget_lock(setup.url):
        existing = s.user_attrs.get(PARENT_RUN_ID)
        parent = start_run(
            cfg.tracking.uri,
            cfg.tracking.experiment,
            cfg.tracking.artifacts,
            run_name=f"study {setup.name}",
            tags={
                **default_tags("hyperlab " + " ".join(arguments)),
                "hyperlab.study": setup.name,
            },
            params=study_params(cfg, choices, setup),
            run_id=existing,
        )
        if existing is None:
            s.set_user_attr(PARENT_RUN_ID, parent.run_id)
    return parent


def study_params(cfg: Config, choices: Mapping[str, str], setup: Setup) -> dict[str, str]:
    """The parent run's params: the study, its space, sampler and pruner (`choices`: the
    options of the command's config groups), budget and objective, and the versions."""
    from hyperlab.search.multi import label
    from hyperlab.stores import where
    from hyperlab.tracking import versions

    params = {
        "study": setup.name,
        "search": cfg.search["name"],
        "sampler": choices["sampler"],
        "pruner": choices["pruner"],
        "n_trials": str(setup.n_trials),
        "workers": str(cfg.sweep.workers),
        "seed": str(cfg.sweep.seed),
        "objective": label(cfg),
        "storage": where(setup.url),
    }
    if cfg.sweep.timeout not in ("", "0"):
        params["timeout"] = cfg.sweep.timeout
    if cfg.sweep.warm_start:
        params["warm_start"] = f"{cfg.sweep.warm_start} (best {cfg.sweep.warm_start_top})"
        params["warm_start_storage"] = where(cfg.sweep.warm_start_storage or setup.url)
    for p in setup.params:
        params[f"space.{p.key}"] = p.describe()
    params.update({f"version.{name}": v for name, v in versions().items()})
    return params


def close_parent(
    parent: Any,
    finished: report.Finished | None,
    failure: BaseException | None,
    launched: datetime.datetime,
) -> None:
    """Log the report to the study's parent run and end it; close child runs that a worker
    left RUNNING while the tracking store was away (see the writer's close_stale)."""
    from hyperlab.display import console, plain
    from hyperlab.search import coarse_to_fine, pareto, report, warm_start
    from hyperlab.tracking import TrackingError, drain

    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    if finished is not None:
        rep, s = finished.report, finished.study
        metrics = {f"importance.{k}": v for k, v in rep.importances.items()}
        if rep.objectives:  # the front, not a best value
            metrics |= {
                f"importance.{name}.{k}": v
                for name, found in rep.per_objective.items()
                for k, v in found.items()
            }
            metrics["front_size"] = float(len(rep.front))
            tags = {"hyperlab.objectives": rep.direction, "hyperlab.front": pareto.front_tag(rep)}
        if rep.best is not None and rep.best.value is not None:
            metrics["best_value"] = rep.best.value
            tags = {
                "hyperlab.best_trial": str(rep.best.number),
                "hyperlab.best_replay": rep.best.user_attrs.get(report.REPLAY_ATTR, ""),
                **{f"best.{k}": str(v) for k, v in report.values(rep.best).items()},
            }
        tags.update(coarse_to_fine.region_tags(s))
        tags.update(warm_start.parent_tags(s))
        if rep.note:  # the time budget ended it: the same command continues it
            tags.update({"hyperlab.stopped": "time budget", "hyperlab.stop_reason": rep.note})
        for key, region in tags.items():
            if key.startswith("region."):
                console.print(f"coarse to fine {key}: {plain(region)}")
        parent.log_files([finished.summary, *rep.plots, *rep.files])
        if failure is None:
            # Only trials that ended before this sweep began: a trial that ended since may
            # still have its run's end on its way through another worker's writer.
            ended = {
                t.number: str(t.user_attrs.get("fail_reason", ""))
                for t in s.get_trials(deepcopy=False)
                if t.state.is_finished() and t.datetime_complete and t.datetime_complete < launched
            }
            parent.close_stale(ended)
    status = (
        "FINISHED"
        if failure is None
        else ("KILLED" if isinstance(failure, stops.STOPS) else "FAILED")
    )
    parent.finish(status, metrics=metrics, tags=tags)
    try:
        drain()
    except TrackingError:
        if failure is None:
            raise
        # The sweep already failed (maybe for this same store): report that error.
        return
    show_where(parent)


def show_where(parent: Any) -> None:
    """Where to see the study in the MLflow UI: its runs table, the parent run at its top."""
    from hyperlab.display import console, show_where, ui_page

    console.print(f"[bold]MLflow:[/] study run {parent.run_id}, its trials under it")
    show_where(parent.uri, ui_page(parent.experiment_id))
