"""The sweeper's work: the study, its workers, its parent run and its report.

The sweeper creates or loads the study, opens its MLflow parent run, then has the
configured Hydra launcher start `sweep.workers` worker jobs. Each worker loops: claim a
trial, compose its config, train it with the live trial for pruning, tell the study;
until the study holds `sweep.n_trials` finished trials. Workers never wait for each
other, and the same command started elsewhere with the same storage joins the study.

hydra_plugins.hyperlab_sweeper holds the Sweeper class Hydra finds; it delegates here.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import optuna

    from hyperlab.search.space import Param

PARENT_ATTR = "mlflow_parent_run_id"
SEEDS_ATTR = "per_seed"  # with repeats > 1: {seed: value}


class SweepFailed(RuntimeError):
    """More trials failed than sweep.max_failure_rate allows."""


# --- what the sweeper and its workers share -----------------------------------------------


@dataclass
class Setup:
    """A study's settings, as the sweeper and every worker derive them from the config."""

    url: str
    name: str
    params: list[Param]
    naive: bool  # sampler=random: every range on its linear scale
    n_trials: int


def setup_of(cfg: DictConfig, overrides: Sequence[str]) -> Setup:
    from hyperlab.search import space, study

    search = cfg.get("search")
    if search is None or "params" not in search:
        from hyperlab.errors import ConfigError

        raise ConfigError("no search space selected", "add search=NAME (see conf/search/)")
    params = space.parse(OmegaConf.to_container(search.params, resolve=True))  # type: ignore[arg-type]
    naive = cfg.sampler.get("scales") == "linear"
    name = cfg.sweep.study or study.study_name(str(search.name), overrides)
    n_trials = int(cfg.sweep.n_trials)
    if _target(cfg.sampler).endswith("GridSampler"):
        size = math.prod(len(p.grid_points()) for p in params)
        n_trials = min(n_trials, size)
    return Setup(str(cfg.sweep.storage), name, params, naive, n_trials)


def _target(node: Any) -> str:
    return str(node.get("_target_", "")) if node is not None else ""


def make_sampler(cfg: DictConfig, setup: Setup, worker: int) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded per worker (workers with one seed would sample the
    same points); grid gets the space's grid points."""
    from hydra.utils import instantiate

    from hyperlab.search import space

    node = {
        k: v
        for k, v in OmegaConf.to_container(cfg.sampler, resolve=True).items()  # type: ignore[union-attr]
        if k != "scales"
    }
    kwargs: dict[str, Any] = {"seed": int(cfg.sweep.seed) + worker}
    if _target(cfg.sampler).endswith("GridSampler"):
        kwargs["search_space"] = space.grid_space(setup.params)
    if _target(cfg.sampler).endswith("CoarseToFineSampler"):
        kwargs["n_trials"] = setup.n_trials  # its stages are fractions of the study
    return instantiate(node)(**kwargs)  # type: ignore[no-any-return]


def load_study(cfg: DictConfig, setup: Setup, worker: int) -> optuna.Study:
    import optuna
    from hydra.utils import instantiate

    from hyperlab.search import study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna.create_study(
        study_name=setup.name,
        storage=study.storage(setup.url),
        sampler=make_sampler(cfg, setup, worker),
        pruner=instantiate(cfg.pruner),
        direction="maximize" if cfg.objective.direction == "maximize" else "minimize",
        load_if_exists=True,
    )


# --- the worker ----------------------------------------------------------------------------


class _Composer:
    """Trial configs: one hydra.compose per combination of group options, then the trial's
    other values set on a copy (a compose costs tens of milliseconds). Returns the config
    and the group options it was composed with."""

    def __init__(self, config_name: str, base: list[str], groups: set[str]) -> None:
        self.config_name, self.base, self.groups = config_name, base, groups
        self.cache: dict[tuple[str, ...], tuple[DictConfig, dict[str, str]]] = {}

    def __call__(self, values: dict[str, Any]) -> tuple[DictConfig, dict[str, str]]:
        from hydra import compose

        from hyperlab.search.space import overrides

        group_part = tuple(overrides({k: v for k, v in values.items() if k in self.groups}))
        if group_part not in self.cache:
            overrides_ = [*self.base, *group_part]
            with_hydra = compose(self.config_name, overrides=overrides_, return_hydra_config=True)
            choices = {g: c for g, c in with_hydra.hydra.runtime.choices.items() if c is not None}
            # Cached without Hydra's own node: copying that would cost more than the rest.
            self.cache[group_part] = (compose(self.config_name, overrides=overrides_), choices)
        cached, choices = self.cache[group_part]
        cfg = copy.deepcopy(cached)
        for key, value in values.items():
            if key not in self.groups:
                OmegaConf.update(cfg, key, value, merge=False)
        OmegaConf.update(cfg, "progress", False)  # workers print the report, not bars
        return cfg, choices


def work(cfg: DictConfig) -> dict[str, int]:
    """One worker: claim, train and tell trials until the study needs none. Returns how
    many trials this worker finished, by state."""
    import optuna
    from hydra import compose
    from optuna.trial import TrialState

    from hyperlab.repeats import train
    from hyperlab.runner import Job
    from hyperlab.search import space, study
    from hyperlab.search.report import REPLAY_ATTR
    from hyperlab.search.trial import PruningReporter, replay
    from hyperlab.tracking import drain

    hc = HydraConfig.get()
    worker = int(cfg.sweep.worker)
    base = [o for o in hc.overrides.task if not o.startswith("sweep.worker=")]
    setup = setup_of(cfg, base)
    s = load_study(cfg, setup, worker)
    parent = s.user_attrs.get(PARENT_ATTR)
    root_choices = dict(compose(hc.job.config_name, return_hydra_config=True).hydra.runtime.choices)
    groups = {g for g in hc.runtime.choices if not g.startswith("hydra/")}
    composer = _Composer(str(hc.job.config_name), base, groups)
    fixed = {g: c for g, c in hc.runtime.choices.items() if c is not None}
    metric = str(cfg.objective.metric)
    done: dict[str, int] = {}
    while True:
        trial = study.claim(s, setup.url, setup.n_trials)
        if trial is None:
            break
        values = space.suggest(trial, setup.params, fixed=fixed, naive=setup.naive)
        trial_overrides = space.overrides(values)
        state, value, reason = TrialState.FAIL, None, ""
        try:
            tcfg, choices = composer(values)
            line = replay(base, trial_overrides, choices, root_choices)
            trial.set_user_attr(REPLAY_ATTR, line)
            job = Job(
                choices={g: c for g, c in choices.items() if not g.startswith("hydra/")},
                overrides=trial_overrides,
                command=line,
                run_name=f"trial {trial.number}: {' '.join(trial_overrides)}",
                output_dir=Path(hc.runtime.output_dir) / f"trial_{trial.number}",
                parent_run_id=parent,
                listeners=[PruningReporter(trial, metric, int(tcfg.epochs))],
                tags={
                    "hyperlab.study": setup.name,
                    "hyperlab.trial": str(trial.number),
                    "hyperlab.replay": line,
                    **_stage_tag(s, trial.number),
                },
            )
            result = train(tcfg, job)
            trial.set_user_attr("seconds", {k: round(v, 6) for k, v in job.timings.items()})
            if len(result.values) > 1:
                trial.set_user_attr(
                    SEEDS_ATTR,
                    {str(s): v for s, v in zip(result.seeds, result.values, strict=True)},
                )
                trial.set_user_attr("mean", result.mean)
                trial.set_user_attr("std", result.std)
            if math.isnan(result.objective):
                reason = "training diverged (the cost became NaN or infinite)"
            else:
                state, value = TrialState.COMPLETE, result.objective
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception as e:  # a bad sample (HyperlabError) or a crash fails this trial only
            reason = f"{type(e).__name__}: {e}"
        if reason:
            trial.set_user_attr("fail_reason", reason)
        s.tell(trial, value, state=state)
        done[state.name] = done.get(state.name, 0) + 1
        _check_failure_rate(s, float(cfg.sweep.max_failure_rate))
    drain()
    return done


def _stage_tag(s: optuna.Study, number: int) -> dict[str, str]:
    from hyperlab.search.coarse_to_fine import CoarseToFineSampler

    if isinstance(s.sampler, CoarseToFineSampler):
        return {"hyperlab.stage": str(s.sampler.stage_of(number))}
    return {}


def _region_tags(s: optuna.Study) -> dict[str, str]:
    """coarse_to_fine: each stage's region, as `region.<stage>.<parameter>` tags."""
    from hyperlab.search.coarse_to_fine import CoarseToFineSampler, regions

    if not isinstance(s.sampler, CoarseToFineSampler):
        return {}
    tags = {"hyperlab.stage_ends": str(s.sampler.stage_ends())}
    for stage, region in regions(s).items():
        for name, bounds in region.items():
            if name.startswith("1-") and len(bounds) == 2 and not isinstance(bounds[0], str):
                # stored as 1 - beta: shown as the beta range the user wrote
                name, bounds = name[2:], [1 - bounds[1], 1 - bounds[0]]
            shown = [f"{b:.4g}" if isinstance(b, float) else str(b) for b in bounds]
            tags[f"region.{stage}.{name}"] = f"[{', '.join(shown)}]"
    return tags


def _check_failure_rate(s: optuna.Study, limit: float) -> None:
    from hyperlab.search.study import counts

    c = counts(s)
    failed, total = c.get("FAIL", 0), sum(c.values())
    if total >= 5 and failed / total > limit:
        raise SweepFailed(
            f"{failed} of {total} trials failed, more than sweep.max_failure_rate={limit}"
        )


# --- the sweeper ---------------------------------------------------------------------------


def sweep(launcher: Any, cfg: DictConfig, arguments: list[str]) -> Any:
    """Run the study: validate, open it, start the workers through `launcher`, report."""
    from hyperlab.errors import HyperlabError

    try:
        return _sweep(launcher, cfg, arguments)
    except HyperlabError as e:
        from hyperlab.cli import exit_with

        exit_with(e)


def _sweep(launcher: Any, cfg: DictConfig, arguments: list[str]) -> Any:
    from hyperlab.display import console, error_console
    from hyperlab.search import report
    from hyperlab.search.study import budget_lock
    from hyperlab.tracking import default_tags, drain, start_run
    from hyperlab.validate import validate

    validate(cfg)  # the base config: a bad value stops the sweep before it starts
    setup = setup_of(cfg, arguments)
    if setup.naive:
        wrong = [p.key for p in setup.params if p.kind != "categorical" and p.scale != "linear"]
        if wrong:
            error_console.print(
                "[yellow]warning:[/] sampler=random samples every range on its linear "
                f"scale, though {', '.join(wrong)} should be searched on "
                f"{'/'.join(sorted({p.scale for p in setup.params if p.key in wrong}))}: "
                "the naive baseline. Use sampler=log_uniform for random search done right."
            )
    if cfg.sweep.dry_run:
        _show_space(setup, console)
        return None
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    s = load_study(cfg, setup, worker=0)
    console.print(
        f"[bold]study[/] {setup.name} in {setup.url or 'outputs/optuna/journal.log'}: "
        f"{report.build(s, None).counts or 'new'}; {setup.n_trials} trials, "
        f"{cfg.sweep.workers} worker(s), sampler {cfg.hydra.runtime.choices.sampler}, "
        f"pruner {cfg.hydra.runtime.choices.pruner}"
    )
    parent = None
    if cfg.tracking.enabled:
        # Under the lock, so that two sweepers starting at once share one parent run.
        with budget_lock(setup.url):
            existing = s.user_attrs.get(PARENT_ATTR)
            parent = start_run(
                str(cfg.tracking.uri),
                str(cfg.tracking.experiment),
                str(cfg.tracking.artifacts),
                run_name=f"study {setup.name}",
                tags={
                    **default_tags("hyperlab " + " ".join(arguments)),
                    "hyperlab.study": setup.name,
                },
                params=_study_params(cfg, setup),
                run_id=existing,
            )
            if existing is None:
                s.set_user_attr(PARENT_ATTR, parent.run_id)
    jobs = [[*arguments, f"sweep.worker={i}"] for i in range(int(cfg.sweep.workers))]
    failure: BaseException | None = None
    try:
        returns = launcher.launch(jobs, initial_job_idx=0)
        for r in returns:
            r.return_value  # noqa: B018  (re-raises a worker's exception)
    except BaseException as e:
        failure = e
    s = load_study(cfg, setup, worker=0)
    rep = report.build(s, sweep_dir)
    report.show(rep, console)
    (sweep_dir / "summary.md").write_text(report.markdown(rep))
    if parent is not None:
        metrics = {f"importance.{k}": v for k, v in rep.importances.items()}
        tags = {}
        if rep.best is not None and rep.best.value is not None:
            metrics["best_value"] = rep.best.value
            tags = {
                "hyperlab.best_trial": str(rep.best.number),
                "hyperlab.best_replay": rep.best.user_attrs.get(report.REPLAY_ATTR, ""),
                **{f"best.{k}": str(v) for k, v in report.values(rep.best).items()},
            }
        tags.update(_region_tags(s))
        for key, region in tags.items():
            if key.startswith("region."):
                console.print(f"coarse to fine {key}: {region}")
        parent.log_files([sweep_dir / "summary.md", *rep.plots])
        status = (
            "FINISHED"
            if failure is None
            else ("KILLED" if isinstance(failure, KeyboardInterrupt) else "FAILED")
        )
        parent.finish(status, metrics=metrics, tags=tags)
        drain()
    console.print(f"summary and plots: {sweep_dir}")
    if failure is not None:
        if isinstance(failure, SweepFailed | KeyboardInterrupt):
            error_console.print(f"[bold red]sweep stopped:[/] {failure or 'interrupted'}")
            sys.exit(1 if isinstance(failure, SweepFailed) else 130)
        raise failure
    return rep


def _study_params(cfg: DictConfig, setup: Setup) -> dict[str, str]:
    from hyperlab.search.study import masked

    params = {
        "study": setup.name,
        "search": str(cfg.search.name),
        "sampler": str(cfg.hydra.runtime.choices.sampler),
        "pruner": str(cfg.hydra.runtime.choices.pruner),
        "n_trials": str(setup.n_trials),
        "workers": str(cfg.sweep.workers),
        "seed": str(cfg.sweep.seed),
        "objective": f"{cfg.objective.metric} ({cfg.objective.direction})",
        "storage": masked(setup.url) or "outputs/optuna/journal.log",
    }
    for p in setup.params:
        params[f"space.{p.key}"] = p.describe()
    return params


def _show_space(setup: Setup, console: Any) -> None:
    from rich.table import Table

    from hyperlab.search.space import quantiles

    how = "every range linear: sampler=random" if setup.naive else "appropriate scales"
    table = Table(title=f"search space ({how})", title_justify="left")
    for col in ("parameter", "type", "range", "scale", "when", "5%", "25%", "50%", "75%", "95%"):
        table.add_column(col)
    for p in setup.params:
        qs = quantiles(p, naive=setup.naive)
        cells = [f"{q:.4g}" if isinstance(q, float) else str(q) for q in qs]
        if p.kind == "categorical":
            cells = [", ".join(map(str, p.choices)), "", "", "", ""]
        scale = "linear" if setup.naive and p.kind != "categorical" else p.scale
        rng = "" if p.kind == "categorical" else f"[{p.low:g}, {p.high:g}]"
        when = ", ".join(f"{k} in {list(v)}" for k, v in p.when.items())
        table.add_row(p.key, p.kind, rng, scale if p.kind != "categorical" else "", when, *cells)
    console.print(table)
    console.print(f"study {setup.name}: {setup.n_trials} trials (dry run: nothing trained)")
