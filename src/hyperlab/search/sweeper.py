"""The sweeper's work: the study, its workers, its parent run and its report.

The sweeper creates or loads the study, opens its MLflow parent run, then has the
configured Hydra launcher start `sweep.workers` worker jobs. Each worker loops: claim a
trial, compose its config, train it with the live trial for pruning, tell the study;
until the study holds `sweep.n_trials` finished trials. Workers never wait for each
other, and the same command started elsewhere with the same storage joins the study.

Workers on several machines meet only in the storage, so the worker loop is made to
survive what happens to them there: a trial whose worker died is failed (by its process id
on this machine, by its heartbeat elsewhere) and with `sweep.retry_failed` tried again; a
storage that stops answering is retried with backoff for `sweep.retry_seconds`, then the
worker stops with a message saying how to resume (run the same command again).

A stop (SIGTERM from a cluster's scheduler, SIGHUP, Ctrl-C) reaches the sweeper and every
worker (hyperlab.stops): the workers fail the trials they hold, with the signal as the
reason, close their MLflow runs as KILLED and stop claiming; the sweeper waits for them for
a bounded time, kills what is left (hyperlab.search.launch), closes the study's run and
exits 128 + the signal. A joblib worker killed outright takes no other worker with it.

hydra_plugins.hyperlab_sweeper holds the Sweeper class Hydra finds; it delegates here. This
module is the study's face to Hydra: it reads Hydra's config and composes trial configs
with Hydra; the worker cycle (hyperlab.search.worker) and the study's setup
(hyperlab.search.setup) are Hydra-free.
"""

from __future__ import annotations

import contextlib
import datetime
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hyperlab import stops
from hyperlab.errors import HyperlabError
from hyperlab.schema import Config
from hyperlab.search import budget, report, warm_start
from hyperlab.search import worker as worker_
from hyperlab.search.multi import check_study
from hyperlab.search.parent import close_parent, parent_run
from hyperlab.search.setup import (
    Setup,
    TrialComposer,
    check_not_fixed,
    load_study,
    record_versions,
    setup_of,
    worker_ids,
)
from hyperlab.search.study import Retry, WorkerStopped
from hyperlab.search.worker import SweepFailed
from hyperlab.stores import where
from hyperlab.tracking import PARENT_RUN_ID

if TYPE_CHECKING:
    import optuna


def work(cfg: DictConfig) -> dict[str, int]:
    """One worker job, as the launcher runs it: claim, train and tell trials until the study
    needs none (hyperlab.search.worker). Returns how many trials this worker finished, by
    state, and how many storage calls it retried.

    SIGTERM, SIGHUP and Ctrl-C stop it (see hyperlab.stops): its trial is failed with the
    signal as its reason (sweep.retry_failed runs it again), its MLflow run closed as
    KILLED, and the worker raises the stop instead of claiming another trial."""
    from hyperlab.search import caviar, worker
    from hyperlab.validate import validate

    config = validate(cfg)
    if config.tracking.enabled:
        from hyperlab.tracking import writer

        writer(config.tracking.uri)  # started now: its imports overlap with the study's setup
    population = config.sweep.population
    train = caviar.train_stacked if population > 1 else worker.train_each
    with stops.installed():
        w = _worker(config)
        _warm_up(config)
        return worker.run(w, train, batch=population)


def _warm_up(config: Config) -> None:
    """Build the study's base config once before the first claim: the imports and the data
    set that a first trial would pay while it holds its trial RUNNING (scikit-learn, torch's
    compiler stack that its optimizers import, the splits: about 3 s here) are paid as the
    worker starts, as its writer's are. A config that cannot build fails in its trials."""
    from hyperlab.build import build

    with contextlib.suppress(Exception):
        build(config)


def _worker(config: Config) -> worker_.Worker:
    """The worker's shared state, from Hydra's view of this job."""
    hc = HydraConfig.get()
    base = [o for o in hc.overrides.task if not o.startswith(("sweep.worker=", "sweep.deadline="))]
    config_name = str(hc.job.config_name)
    setup = setup_of(config, base)
    retry = Retry(setup.url, config.sweep.retry_seconds)
    s = load_study(config, setup, config.sweep.worker, retry)
    groups = {g for g in hc.runtime.choices if not g.startswith("hydra/")}
    return worker_.Worker(
        cfg=config,
        setup=setup,
        study=s,
        retry=retry,
        base=base,
        compose=TrialComposer(lambda o: hydra_compose(config_name, o), base, groups),
        root_choices=hydra_choices(config_name, []),
        fixed={g: c for g, c in hc.runtime.choices.items() if c is not None},
        output_dir=Path(hc.runtime.output_dir),
        parent=retry("reading the study", lambda: s.user_attrs.get(PARENT_RUN_ID)),
    )


def hydra_compose(config_name: str, overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """A config composed by Hydra, and its group options (Hydra's own node left out of the
    config: copying it for every trial would cost more than the rest)."""
    from hydra import compose

    return compose(config_name, overrides=overrides), hydra_choices(config_name, overrides)


def hydra_choices(config_name: str, overrides: list[str]) -> dict[str, str]:
    """The group options a config composed with `overrides` selects."""
    from hydra import compose

    with_hydra = compose(config_name, overrides=overrides, return_hydra_config=True)
    return {g: c for g, c in with_hydra.hydra.runtime.choices.items() if c is not None}


def sweep(launcher: Any, cfg: DictConfig, arguments: list[str]) -> Any:
    """Run the study: validate, open it, start the workers through `launcher`, report."""
    from hyperlab.errors import HyperlabError

    # SIGTERM and SIGHUP stop the workers cleanly, as Ctrl-C does (see hyperlab.stops).
    with stops.installed():
        try:
            return _sweep(launcher, cfg, arguments)
        except HyperlabError as e:
            from hyperlab.display import exit_with

            exit_with(e)
        except stops.STOPS as e:  # before the study started
            _exit_stopped(e, "")


def _sweep(launcher: Any, cfg: DictConfig, arguments: list[str]) -> Any:
    from hyperlab.display import console, error_console, plain
    from hyperlab.search import report
    from hyperlab.search.watch import StudyView
    from hyperlab.validate import validate

    started = time.time()  # sweep.timeout counts from here
    config = validate(cfg)  # the base config: a bad value stops the sweep before it starts
    choices = {g: str(c) for g, c in cfg.hydra.runtime.choices.items()}
    check_study(config, choices)  # a multi-objective study's refusals, before anything
    setup = setup_of(config, arguments)
    check_not_fixed(setup, arguments, _required(cfg, setup, arguments))
    if setup.naive:
        wrong = [p.key for p in setup.params if p.kind != "categorical" and p.scale != "linear"]
        if wrong:
            error_console.print(
                "[yellow]warning:[/] sampler=random samples every range on its linear "
                f"scale, though {', '.join(wrong)} should be searched on "
                f"{'/'.join(sorted({p.scale for p in setup.params if p.key in wrong}))}: "
                "the naive baseline. Use sampler=log_uniform for random search done right."
            )
    if config.sweep.dry_run:
        report.show_space(setup, console)
        return None
    if config.dataset.get("path"):
        # A user's file: bad data stops the sweep before the study or its run exists,
        # rather than failing every trial (generated data sets cannot be bad).
        from hyperlab.build import build_data

        build_data(config.dataset)
    warm = warm_start.plan(config, setup)  # before the study is made: a refusal writes nothing
    retry = Retry(setup.url, config.sweep.retry_seconds)
    s = load_study(config, setup, 0, retry, join=True)
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    retry("recording the versions", lambda: record_versions(s))
    from hyperlab.search.listing import counts

    had = retry("reading the study", lambda: report.build(s, None)).counts
    # After the versions: a new study records them only while it has no trial.
    enqueued = retry("warm-starting", lambda: warm_start.enqueue(s, setup, warm)) if warm else 0
    console.print(
        f"[bold]study[/] {plain(setup.name)} in "
        f"{plain(where(setup.url))}: "
        f"{counts(had) if had else 'new'}; "
        f"{setup.n_trials} trials, "
        f"{config.sweep.workers} worker(s), sampler {choices['sampler']}, "
        f"pruner {choices['pruner']}{budget.header(config.sweep.timeout)}"
        f"{warm_start.header(warm, enqueued)}"
    )
    for skipped in warm.skipped if warm else []:
        console.print(f"  warm start: {plain(skipped)}", highlight=False)
    parent = None
    try:
        if config.tracking.enabled:
            parent = retry(
                "opening the study's run",
                lambda: parent_run(config, choices, setup, s, arguments),
            )
        workers = config.sweep.workers
        first = retry("numbering the workers", lambda: worker_ids(s, setup.url, workers))
        # Trials a killed command left RUNNING end now, before this sweep begins: their
        # MLflow runs, whose writer was killed too, are then among those close_stale ends.
        _fail_lost(config, setup, s, retry)
    except stops.STOPS as e:  # before any worker started: only the parent run to close
        if parent is not None:
            close_parent(parent, None, e, datetime.datetime.now())
        _exit_stopped(e, "before its workers started")
    deadline = budget.deadline(config.sweep.timeout, started)
    arguments = [*arguments, *budget.overrides(deadline)]  # the workers' (named already)
    jobs = [[*arguments, f"sweep.worker={first + i}"] for i in range(workers)]
    failure: BaseException | None = None
    launched = datetime.datetime.now()  # Optuna's trial times are local, naive datetimes
    deaths: list[Any] = []

    def replace(death: Any) -> list[str] | None:
        deaths.append(death)
        return _replace_dead(config, setup, s, retry, arguments, death, len(deaths))

    try:
        with StudyView(s, setup.n_trials, config.objective.metric, console):
            returns = _launch(launcher, jobs, replace)
        for r in returns:
            r.return_value  # noqa: B018  (re-raises a worker's exception)
        if deaths:
            failure = _unfinished_after_deaths(setup, s, retry, len(deaths))
    except BaseException as e:
        failure = e
    # What is left is bounded (the storage's and the tracking store's retries): a stop
    # that comes now is kept, and ends the command once the study's records are closed.
    with stops.held(until_checked=True):
        if isinstance(failure, stops.STOPS):
            _fail_lost(config, setup, s, retry)
        rep = report.write(config, setup, sweep_dir, failure, deadline)
        if parent is not None:
            close_parent(parent, rep, failure, launched)
        console.print(f"summary and plots: {plain(sweep_dir)}")
    failure = failure or stops.take()
    if failure is not None:
        if isinstance(failure, stops.STOPS):
            line = _stop_line(failure, config, setup, rep, launched)
            error_console.print(line, highlight=False, soft_wrap=True)
            sys.exit(stops.exit_code(failure))
        if isinstance(failure, SweepFailed):
            error_console.print(f"[bold red]sweep stopped:[/] {plain(failure)}")
            sys.exit(1)
        raise failure
    return rep


def _required(cfg: DictConfig, setup: Setup, arguments: Sequence[str]) -> set[str]:
    """The searched keys the command line sets that the config has no default for (`???`
    without that override): searching them needs a value for the base config."""
    from hydra import compose

    from hyperlab.overrides import override_key

    keys = {p.key for p in setup.params} & {override_key(a) for a in arguments}
    if not keys:
        return set()
    rest = [a for a in arguments if override_key(a) not in keys]
    base = compose(str(cfg.hydra.job.config_name), overrides=rest)
    missing = set()
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(base, parent) if parent else base
        if (
            isinstance(node, DictConfig)
            and leaf in node.keys()  # noqa: SIM118 (`in` is False for a `???` value)
            and OmegaConf.is_missing(node, leaf)
        ):
            missing.add(key)
    return missing


def _launch(launcher: Any, jobs: list[list[str]], replace: Callable[[Any], Any]) -> Any:
    """The workers' JobReturns. The joblib launcher's jobs run one process each, so that a
    worker killed does not take the others down, and a stop reaches every worker."""
    from hyperlab.search.launch import Workers, is_joblib

    if is_joblib(launcher):
        return Workers(launcher).run(jobs, replace)
    return launcher.launch(jobs, initial_job_idx=0)


def _fail_lost(cfg: Config, setup: Setup, s: optuna.Study, retry: Retry) -> None:
    """Fail the trials of workers that are gone (killed when they did not stop in time, or
    died), as the next claim would; with sweep.retry_failed, enqueue them again."""
    from hyperlab.search import study

    with contextlib.suppress(HyperlabError):  # the storage is away: the next claim does it
        retries = cfg.sweep.retry_failed
        retry("failing lost trials", lambda: study.release_lost(s, setup.url, retries))


def _replace_dead(
    cfg: Config,
    setup: Setup,
    s: optuna.Study,
    retry: Retry,
    arguments: list[str],
    death: Any,
    deaths: int,
) -> list[str] | None:
    """A worker process died (killed with -9, or by the out-of-memory killer): fail its
    trial, and return the overrides of a worker to start in its place while the study
    needs trials (at most sweep.n_trials replacements: a worker that dies at every start
    must not be restarted forever)."""
    from hyperlab.display import error_console
    from hyperlab.search import study

    _fail_lost(cfg, setup, s, retry)
    trials = retry("reading the study", lambda: s.get_trials(deepcopy=False))
    lost = [
        f"trial {t.number} failed ({t.user_attrs.get('fail_reason', '')})"
        for t in trials
        if t.state.name == "FAIL" and t.user_attrs.get(study.PID_ATTR) == death.pid
    ]
    needed = setup.n_trials - sum(t.state.name in study.TAKEN for t in trials)
    again = None
    if needed > 0 and deaths <= setup.n_trials:
        first = retry("numbering the workers", lambda: worker_ids(s, setup.url, 1))
        again = [*arguments, f"sweep.worker={first}"]
    error_console.print(
        f"[yellow]warning:[/] worker process {death.pid} died ({death.describe()})"
        + (f": {'; '.join(lost)}" if lost else "")
        + ("; a new worker takes its place" if again else "; the other workers go on"),
        highlight=False,
    )
    return again


def _unfinished_after_deaths(
    setup: Setup, s: optuna.Study, retry: Retry, deaths: int
) -> WorkerStopped | None:
    """The error to end with when workers died and the study is not finished."""
    from hyperlab.search import study

    c = retry("reading the study", lambda: study.counts(s))
    finished = sum(c.get(k, 0) for k in study.FINISHED)
    if finished >= setup.n_trials:
        return None
    return WorkerStopped(
        f"{deaths} worker process(es) died; the study has {finished} of {setup.n_trials} trials",
        "run the same command again to finish the study (the trials it has are kept)",
    )


def _stop_line(
    e: BaseException,
    cfg: Config,
    setup: Setup,
    finished: report.Finished | None,
    launched: datetime.datetime,
) -> str:
    """One line: what the stop stopped, what was recorded, and how to resume."""
    from rich.markup import escape

    from hyperlab.search import study

    what = ""
    if finished is not None:
        trials = finished.study.get_trials(deepcopy=False)
        cut = [
            t
            for t in trials
            if t.state.name == "FAIL"
            and t.datetime_complete is not None
            and t.datetime_complete >= launched
            and str(t.user_attrs.get("fail_reason", "")).startswith(
                (study.STOPPED_WORKER, study.DEAD_WORKER)
            )
        ]
        done = sum(t.state.name in study.FINISHED for t in trials)
        runs = ", their MLflow runs closed as KILLED" if cfg.tracking.enabled else ""
        again = " (sweep.retry_failed runs them again)" if cfg.sweep.retry_failed else ""
        what = (
            f"{len(cut)} trial(s) in progress failed{again}{runs}; "
            f"{done} of {setup.n_trials} trials finished. "
        )
    return (
        f"[bold red]sweep stopped[/] by {stops.describe(e)}: {escape(what)}"
        f"Run the same command again to resume study {escape(setup.name)}."
    )


def _exit_stopped(e: BaseException, when: str) -> NoReturn:
    from hyperlab.display import error_console

    error_console.print(
        f"[bold red]sweep stopped[/] by {stops.describe(e)}{' ' + when if when else ''}; "
        "run the same command again to start it",
        highlight=False,
        soft_wrap=True,
    )
    sys.exit(stops.exit_code(e))
