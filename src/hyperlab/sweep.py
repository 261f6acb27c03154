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

hydra_plugins.hyperlab_sweeper holds the Sweeper class Hydra finds; it delegates here.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import math
import sys
import threading
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hyperlab import stops
from hyperlab.errors import HyperlabError, first_line
from hyperlab.tracking import PARENT_RUN_ID
from hyperlab.validate import direction_of

if TYPE_CHECKING:
    import optuna

    from hyperlab.search.space import Param

SEEDS_ATTR = "per_seed"  # with repeats > 1: {seed: value}
WORKERS_ATTR = "hyperlab:workers_started"  # worker ids handed out so far: seeds differ
# What the study was made with: joining it with another space or objective is refused.
SPACE_ATTR = "hyperlab:space"  # {"search": name, "params": space.canonical(...)}
OBJECTIVE_ATTR = "hyperlab:objective"  # {"metric": ..., "direction": ...}
DATA_ATTR = "data.sha256"  # a trial's: the hash of the data it trained on
FIRST_DATA_ATTR = "hyperlab:data.sha256"  # the study's: its first trial's data hash
VERSIONS_ATTR = "hyperlab:versions"  # {package: version} when the study was created
DIVERGED = "training diverged (the cost became NaN or infinite)"
T = TypeVar("T")


class SweepFailed(RuntimeError):
    """More trials failed than sweep.max_failure_rate allows."""


class WorkerStopped(HyperlabError):
    """A worker stopped because the study's storage or the tracking store stayed
    unreachable. Picklable with its fix, since it crosses from a joblib worker process."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problem, self.fix))


def _stopped(e: HyperlabError) -> WorkerStopped:
    """A worker's stop for a tracking store it could not write."""
    return WorkerStopped(
        e.problem, f"{e.fix}; then run the same command again: the study resumes where it is"
    )


# --- retries --------------------------------------------------------------------------------


@dataclass
class Retry:
    """Calls to the study's storage, retried with backoff while it does not answer.

    Waits 0.5, 1, 2 ... seconds (at most 30 between tries) for up to `seconds` in all,
    then raises WorkerStopped: a worker stops cleanly rather than spin or print a traceback.
    A journal or lock file that cannot be written (a full disk, a read-only or deleted
    directory) is not retried: it stops the worker at once, naming the file and the fix.
    Counts its retries, for the worker's summary."""

    url: str
    seconds: float
    retries: int = 0

    def __call__(self, what: str, fn: Callable[[], T]) -> T:
        from hyperlab.display import error_console, plain
        from hyperlab.retry import GaveUp, with_backoff
        from hyperlab.search import study
        from hyperlab.search.journal import JournalError

        def transient(e: BaseException) -> bool:
            if isinstance(e, OSError) and not study.transient(e):
                raise _unwritable(what, e) from None  # the budget lock's file, by the journal
            return study.transient(e)

        def retrying(e: BaseException, delay: float) -> None:
            self.retries += 1
            error_console.print(
                f"[yellow]storage:[/] {what} failed ({plain(first_line(e))}); "
                f"retrying in {delay:g} s",
                markup=True,
                highlight=False,
            )

        try:
            return with_backoff(fn, transient=transient, seconds=self.seconds, on_retry=retrying)
        except JournalError as e:
            raise WorkerStopped(e.problem, e.fix) from None
        except GaveUp as e:
            raise self.stopped(what, e.cause, e.waited) from None

    def stopped(self, what: str, e: BaseException, waited: float) -> WorkerStopped:
        from hyperlab.search.study import where

        return WorkerStopped(
            f"the study's storage {where(self.url)} did "
            f"not answer for {waited:.0f} s ({what}: {first_line(e)})",
            "the trials it recorded are kept; once it is back, run the same command "
            "again to resume the study (sweep.retry_seconds sets how long workers wait)",
        )


def _unwritable(what: str, e: OSError) -> WorkerStopped:
    from hyperlab.search.journal import RESUME

    where = f" {e.filename}" if e.filename else ""
    return WorkerStopped(
        f"{what} failed: the file{where} could not be written ({e.strerror or e})",
        f"free space on its disk, or make its directory writable; {RESUME}",
    )


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
    from hyperlab.build import build_sampler
    from hyperlab.search import space

    # Worker ids grow with every launch of a study: wrapped into the samplers' seed range.
    kwargs: dict[str, Any] = {"seed": (int(cfg.sweep.seed) + worker) % 2**32}
    if _target(cfg.sampler).endswith("GridSampler"):
        kwargs["search_space"] = space.grid_space(setup.params)
    if _target(cfg.sampler).endswith("CoarseToFineSampler"):
        kwargs["n_trials"] = setup.n_trials  # its stages are fractions of the study
    node = OmegaConf.to_container(cfg.sampler, resolve=True)
    return build_sampler(node, cfg.get("allow_targets") or (), **kwargs)  # type: ignore[arg-type]


def load_study(
    cfg: DictConfig, setup: Setup, worker: int, retry: Retry | None = None, join: bool = False
) -> optuna.Study:
    """Create or load the study, retrying an unreachable storage with `retry`.

    Under the budget lock: on an empty database, two processes creating Optuna's tables
    at once collide (a duplicate key on PostgreSQL's enum types), so they take turns.
    With `join` (the sweeper), an existing study made with another search space or
    objective is refused before anything is written to it, and the study records the
    space and objective it is run with (a study made before they were recorded gets
    them now)."""
    import optuna

    from hyperlab.build import build_pruner
    from hyperlab.search import study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # The worker loop keeps its own heartbeat (_Heartbeat): Optuna's warning on every ask
    # that heartbeats belong to Study.optimize does not apply.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    retry = retry or Retry(setup.url, float(cfg.sweep.retry_seconds))

    def create() -> optuna.Study:
        with study.budget_lock(setup.url):
            storage = study.storage(setup.url, int(cfg.sweep.heartbeat_seconds))
            made_with = _made_with(cfg, setup)
            if join:
                _check_joinable(storage, setup, made_with)
            s = optuna.create_study(
                study_name=setup.name,
                storage=storage,
                sampler=make_sampler(cfg, setup, worker),
                pruner=build_pruner(
                    OmegaConf.to_container(cfg.pruner, resolve=True),  # type: ignore[arg-type]
                    cfg.get("allow_targets") or (),
                ),
                direction=made_with[OBJECTIVE_ATTR]["direction"],
                load_if_exists=True,
            )
            if join:
                recorded = s.user_attrs
                for attr, value in made_with.items():
                    if attr not in recorded:
                        s.set_user_attr(attr, value)
            return s

    return retry("opening the study", create)


def _made_with(cfg: DictConfig, setup: Setup) -> dict[str, dict[str, Any]]:
    """The study attributes that say what a study is: its space and its objective."""
    import json

    from hyperlab.search import space

    made_with = {
        SPACE_ATTR: {
            "search": str(cfg.search.name),
            "params": space.canonical(setup.params, setup.naive),
        },
        OBJECTIVE_ATTR: {
            "metric": str(cfg.objective.metric),
            "direction": direction_of(cfg.objective),
        },
    }
    # As the storage gives it back (tuples become lists), so that the two compare equal.
    return json.loads(json.dumps(made_with))  # type: ignore[no-any-return]


def _check_joinable(
    storage: optuna.storages.BaseStorage, setup: Setup, made_with: dict[str, dict[str, Any]]
) -> None:
    """Refuse to join an existing study made with another space or objective: their trials
    would be mixed in one ranking. Reads only: a refused command writes nothing."""
    from hyperlab.errors import ConfigError
    from hyperlab.search import space
    from hyperlab.search.study import where

    try:
        study_id = storage.get_study_id_from_name(setup.name)
    except KeyError:
        return  # a new study
    attrs = storage.get_study_user_attrs(study_id)
    direction = storage.get_study_directions(study_id)[0].name.lower()
    then_space, now_space = attrs.get(SPACE_ATTR), made_with[SPACE_ATTR]
    then_obj, now_obj = attrs.get(OBJECTIVE_ATTR), made_with[OBJECTIVE_ATTR]
    differences = []
    if isinstance(then_space, dict) and isinstance(then_space.get("params"), dict):
        differences += space.changes(then_space["params"], now_space["params"])
    if isinstance(then_obj, dict) and then_obj != now_obj:
        differences.append(
            f"objective changed from {then_obj.get('metric')} ({then_obj.get('direction')}) "
            f"to {now_obj['metric']} ({now_obj['direction']})"
        )
    elif direction != now_obj["direction"]:  # a study made before the objective was kept
        differences.append(
            f"the study {direction}s, this command would {now_obj['direction']} {now_obj['metric']}"
        )
    if not differences:
        return
    how = []
    if isinstance(then_space, dict) and then_space.get("search"):
        how.append(f"search={then_space['search']}")
    if isinstance(then_obj, dict) and then_obj.get("metric"):
        how.append(f"objective.metric={then_obj['metric']}")
    if setup.naive and any("linear scale" in d for d in differences):
        differences.append(
            "sampler=random samples every range on its linear scale (sampler=log_uniform "
            "is random search on each range's own scale)"
        )
    raise ConfigError(
        f"study {setup.name!r} in {where(setup.url)} was "
        f"made with another search space or objective: {'; '.join(differences)}. "
        "Joining it would mix the two searches' trials in one ranking",
        "start a new study under another name (sweep.study=NEW_NAME), or resume this one "
        "with the search it was made with"
        + (f" ({', '.join(how)}, and its search.params overrides)" if how else ""),
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


@dataclass
class _Worker:
    """What a worker's trials share: the study, how to compose and replay a trial, and
    where its runs go."""

    cfg: DictConfig
    setup: Setup
    study: optuna.Study
    retry: Retry
    base: list[str]
    composer: _Composer
    root_choices: dict[str, str]
    fixed: dict[str, str]
    output_dir: Path
    parent: str | None  # the study's MLflow parent run, set by the sweeper before launch
    first_data: str | None = None  # the study's first data hash, once this worker knows it


@dataclass
class _Outcome:
    """How a trial ended; `stop` is set when the worker must stop after telling it."""

    state: Any  # optuna.trial.TrialState
    value: float | None = None
    reason: str = ""
    stop: HyperlabError | None = None
    interrupt: BaseException | None = None  # a stop signal: the worker stops after this trial


def work(cfg: DictConfig) -> dict[str, int]:
    """One worker: claim, train and tell trials until the study needs none. Returns how
    many trials this worker finished, by state, and how many storage calls it retried.

    SIGTERM, SIGHUP and Ctrl-C stop it (see hyperlab.stops): its trial is failed with the
    signal as its reason (sweep.retry_failed runs it again), its MLflow run closed as
    KILLED, and the worker raises the stop instead of claiming another trial."""
    with stops.installed():
        return _work(cfg)


def _work(cfg: DictConfig) -> dict[str, int]:
    from hydra import compose
    from optuna.trial import TrialState

    from hyperlab.search import study
    from hyperlab.tracking import TrackingError, drain

    hc = HydraConfig.get()
    base = [o for o in hc.overrides.task if not o.startswith("sweep.worker=")]
    setup = setup_of(cfg, base)
    retry = Retry(setup.url, float(cfg.sweep.retry_seconds))
    s = load_study(cfg, setup, int(cfg.sweep.worker), retry)
    w = _Worker(
        cfg=cfg,
        setup=setup,
        study=s,
        retry=retry,
        base=base,
        composer=_Composer(
            str(hc.job.config_name),
            base,
            {g for g in hc.runtime.choices if not g.startswith("hydra/")},
        ),
        root_choices=dict(
            compose(hc.job.config_name, return_hydra_config=True).hydra.runtime.choices
        ),
        fixed={g: c for g, c in hc.runtime.choices.items() if c is not None},
        output_dir=Path(hc.runtime.output_dir),
        parent=retry("reading the study", lambda: s.user_attrs.get(PARENT_RUN_ID)),
    )
    limit = float(cfg.sweep.max_failure_rate)
    retries = int(cfg.sweep.retry_failed)
    done: dict[str, int] = {}
    while True:
        with stops.held(until_checked=True):  # a trial claimed is marked with its process
            trial = retry(
                "claiming a trial", lambda: study.claim(s, setup.url, setup.n_trials, retries)
            )
        if trial is None:
            break
        with _Heartbeat(s, trial):
            try:
                stops.check()  # a stop that came during the claim fails this trial
                outcome = _run_trial(w, trial)
            except stops.STOPS as e:  # the runner closed the trial's MLflow run as KILLED
                outcome = _Outcome(
                    TrialState.FAIL, reason=f"{study.STOPPED_WORKER} ({stops.describe(e)})"
                )
                outcome.interrupt = e
            with stops.held(until_checked=True):
                _tell(w, trial, outcome)
        done[outcome.state.name] = done.get(outcome.state.name, 0) + 1
        # A stop that came while the trial was told: it is told, then the worker stops.
        outcome.interrupt = outcome.interrupt or stops.take()
        if outcome.interrupt is not None:
            _drain_then_stop(outcome.interrupt)
        if outcome.stop is not None:
            raise outcome.stop
        retry("counting failures", lambda: _check_failure_rate(s, limit))
    try:
        drain()
    except TrackingError as e:
        raise _stopped(e) from None
    stops.check()
    if retry.retries:
        done["storage_retries"] = retry.retries
    return done


def _drain_then_stop(stop: BaseException) -> NoReturn:
    """Wait until this worker's MLflow runs are written (the stopped trial's as KILLED),
    then stop the worker with the signal's exception."""
    from hyperlab.tracking import TrackingError, drain

    with contextlib.suppress(TrackingError):  # the stop is what matters now
        drain()
    raise stop


def _run_trial(w: _Worker, trial: optuna.Trial) -> _Outcome:
    """Train one claimed trial. A bad sample, a crash in data loading or training, a
    diverged cost or an out-of-memory model fails this trial only, with its reason; a
    storage or tracking store that stays unreachable also stops the worker."""
    import optuna
    from optuna.trial import TrialState

    from hyperlab.repeats import train
    from hyperlab.run import Job
    from hyperlab.search import space, study
    from hyperlab.search.report import REPLAY_ATTR
    from hyperlab.search.trial import PruningReporter, replay
    from hyperlab.tracking import TrackingError

    values = w.retry(
        "sampling the trial",
        lambda: space.suggest(trial, w.setup.params, fixed=w.fixed, naive=w.setup.naive),
    )
    trial_overrides = space.overrides(values)
    line = "hyperlab " + " ".join(trial_overrides)
    job = None
    try:
        tcfg, choices = w.composer(values)
        line = replay(w.base, trial_overrides, choices, w.root_choices)
        trial.set_user_attr(REPLAY_ATTR, line)
        job = Job(
            choices={g: c for g, c in choices.items() if not g.startswith("hydra/")},
            overrides=trial_overrides,
            command=line,
            run_name=f"trial {trial.number}: {' '.join(trial_overrides)}",
            output_dir=w.output_dir / f"trial_{trial.number}",
            parent_run_id=w.parent,
            listeners=[PruningReporter(trial, str(w.cfg.objective.metric), int(tcfg.epochs))],
            tags=_trial_tags(w, trial, line),
        )
        result = train(tcfg, job)
        _check_data(w, trial, job.found.get(DATA_ATTR, ""))
        trial.set_user_attr("seconds", {k: round(v, 6) for k, v in job.timings.items()})
        if len(result.values) > 1:
            trial.set_user_attr(
                SEEDS_ATTR,
                {str(s): v for s, v in zip(result.seeds, result.values, strict=True)},
            )
            trial.set_user_attr("mean", result.mean)
            trial.set_user_attr("std", result.std)
        if math.isnan(result.objective):
            return _Outcome(TrialState.FAIL, reason=DIVERGED)
        return _Outcome(TrialState.COMPLETE, result.objective)
    except optuna.TrialPruned:
        _check_data(w, trial, job.found.get(DATA_ATTR, "") if job else "")
        return _Outcome(TrialState.PRUNED)
    except TrackingError as e:  # the run could not be recorded: stop before the next one
        return _Outcome(TrialState.FAIL, reason=f"TrackingError: {e.problem}", stop=_stopped(e))
    except Exception as e:  # a bad sample (HyperlabError) or a crash fails this trial only
        if study.transient(e):  # the storage went away under the pruner's report
            return _Outcome(TrialState.FAIL, reason=f"{study.STORAGE_LOST}: {first_line(e)}")
        reason = f"{type(e).__name__}: {e}"
        if job is None or "build" not in job.timings:
            # It failed before the runner opened its MLflow run (composing the config,
            # loading the data, allocating the model): record the failure there too.
            stop = _record_failed_run(w, trial, trial_overrides, line, reason)
            return _Outcome(TrialState.FAIL, reason=reason, stop=stop)
        return _Outcome(TrialState.FAIL, reason=reason)


def _check_data(w: _Worker, trial: optuna.Trial, sha: str) -> None:
    """Record the hash of the data the trial trained on; the study's first one is kept as
    a study attribute. A trial on other data (the file changed during the study) gets a
    warning: its value is not comparable with the others'."""
    from hyperlab.display import error_console
    from hyperlab.search.study import budget_lock

    if not sha:
        return
    w.retry("recording the data's hash", lambda: trial.set_user_attr(DATA_ATTR, sha))

    def first() -> str:
        with budget_lock(w.setup.url):
            recorded = w.study.user_attrs.get(FIRST_DATA_ATTR)
            if recorded is None:
                w.study.set_user_attr(FIRST_DATA_ATTR, sha)
            return str(recorded or sha)

    if w.first_data is None:
        w.first_data = w.retry("reading the study's data hash", first)
    if sha != w.first_data:
        error_console.print(
            f"[yellow]warning:[/] trial {trial.number} trained on other data than the "
            f"study's first trial (data.sha256 {sha[:12]}, first {w.first_data[:12]}): the "
            "data changed during the study, so its trials are not comparable",
            highlight=False,
        )


def data_changes(s: optuna.Study) -> str:
    """One line naming the trials that trained on other data than the study's first
    trial, or "" when every trial trained on the same data."""
    first = s.user_attrs.get(FIRST_DATA_ATTR)
    other = [
        t
        for t in s.get_trials(deepcopy=False)
        if first and t.user_attrs.get(DATA_ATTR, first) != first
    ]
    if not other:
        return ""
    hashes = sorted({str(t.user_attrs[DATA_ATTR])[:12] for t in other})
    return (
        f"warning: trial(s) {', '.join(str(t.number) for t in other)} trained on other data "
        f"(data.sha256 {', '.join(hashes)}) than the study's first trial ({str(first)[:12]}): the "
        "data changed during the study, so their values are not comparable with the others'"
    )


def _trial_tags(w: _Worker, trial: optuna.Trial, line: str) -> dict[str, str]:
    return {
        "hyperlab.study": w.setup.name,
        "hyperlab.trial": str(trial.number),
        "hyperlab.replay": line,
        **_stage_tag(w.study, trial.number),
    }


def _record_failed_run(
    w: _Worker, trial: optuna.Trial, overrides: list[str], line: str, reason: str
) -> HyperlabError | None:
    """A FAILED child run for a trial that failed before its run was opened, so that the
    MLflow UI lists it with its values and reason. Returns the error to stop on when the
    tracking store cannot be written."""
    from hyperlab.errors import masked
    from hyperlab.tracking import Tracker, TrackingError, default_tags

    tracking = w.cfg.tracking
    if not tracking.enabled or int(w.cfg.repeats) > 1:
        return None
    try:
        run = Tracker(
            str(tracking.uri),
            str(tracking.experiment),
            artifact_root=str(tracking.artifacts),
            run_name=masked(f"trial {trial.number}: {' '.join(overrides)}")[:250],
            parent_run_id=w.parent,
            params=dict(o.split("=", 1) for o in overrides if "=" in o),
            tags={**default_tags(line), **_trial_tags(w, trial, line)},
        )
        run.finish("FAILED", tags={"hyperlab.failure_reason": reason, "hyperlab.outcome": "failed"})
    except TrackingError as e:
        return _stopped(e)
    return None


def _tell(w: _Worker, trial: optuna.Trial, outcome: _Outcome) -> None:
    """Record the trial's outcome, retrying while the storage does not answer. A trial that
    another worker failed meanwhile (its heartbeat lapsed during an outage) stays failed."""
    import optuna

    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        if outcome.reason:
            w.retry(
                "recording the failure", lambda: trial.set_user_attr("fail_reason", outcome.reason)
            )
        w.retry(
            "telling the study",
            lambda: w.study.tell(trial, outcome.value, state=outcome.state, skip_if_finished=True),
        )


# --- workers that die ----------------------------------------------------------------------


class _Heartbeat:
    """Records a trial's heartbeat every `sweep.heartbeat_seconds` while it trains, on an
    RDB storage, so that other workers fail the trial if this worker dies.

    Optuna's own heartbeat thread runs only inside study.optimize(), which the worker loop
    does not use: without this, a trial whose worker was killed on another machine would
    stay RUNNING, and count against the budget, forever. A beat that fails (the database
    away for a moment) is skipped: the next one may get through."""

    def __init__(self, s: optuna.Study, trial: optuna.Trial) -> None:
        from hyperlab.search.study import heartbeat_storage

        self.storage, self.trial_id = heartbeat_storage(s), trial._trial_id
        self.interval = self.storage.get_heartbeat_interval() if self.storage else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")

    def __enter__(self) -> _Heartbeat:
        if self.interval:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _beat(self) -> None:
        storage = self.storage
        assert storage is not None  # started only with a heartbeat storage
        while True:
            with contextlib.suppress(Exception):
                storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return


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
    from hyperlab.search.study import where
    from hyperlab.validate import validate

    validate(cfg)  # the base config: a bad value stops the sweep before it starts
    setup = setup_of(cfg, arguments)
    _check_not_fixed(setup, arguments, _required(cfg, setup, arguments))
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
    if cfg.dataset.get("path"):
        # A user's file: bad data stops the sweep before the study or its run exists,
        # rather than failing every trial (generated data sets cannot be bad).
        from hyperlab.build import build_data

        build_data(OmegaConf.to_container(cfg.dataset, resolve=True))  # type: ignore[arg-type]
    retry = Retry(setup.url, float(cfg.sweep.retry_seconds))
    s = load_study(cfg, setup, 0, retry, join=True)
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    retry("recording the versions", lambda: _record_versions(s))
    console.print(
        f"[bold]study[/] {plain(setup.name)} in "
        f"{plain(where(setup.url))}: "
        f"{retry('reading the study', lambda: report.build(s, None)).counts or 'new'}; "
        f"{setup.n_trials} trials, "
        f"{cfg.sweep.workers} worker(s), sampler {cfg.hydra.runtime.choices.sampler}, "
        f"pruner {cfg.hydra.runtime.choices.pruner}"
    )
    parent = None
    try:
        if cfg.tracking.enabled:
            parent = retry("opening the study's run", lambda: _parent_run(cfg, setup, s, arguments))
        workers = int(cfg.sweep.workers)
        first = retry("numbering the workers", lambda: _worker_ids(s, setup.url, workers))
    except stops.STOPS as e:  # before any worker started: only the parent run to close
        if parent is not None:
            _close_parent(parent, None, e, datetime.datetime.now())
        _exit_stopped(e, "before its workers started")
    jobs = [[*arguments, f"sweep.worker={first + i}"] for i in range(workers)]
    failure: BaseException | None = None
    launched = datetime.datetime.now()  # Optuna's trial times are local, naive datetimes
    deaths: list[Any] = []

    def replace(death: Any) -> list[str] | None:
        deaths.append(death)
        return _replace_dead(cfg, setup, s, retry, arguments, death, len(deaths))

    try:
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
            _fail_lost(cfg, setup, s, retry)
        rep = _report(cfg, setup, sweep_dir, failure)
        if parent is not None:
            _close_parent(parent, rep, failure, launched)
        console.print(f"summary and plots: {plain(sweep_dir)}")
    failure = failure or stops.take()
    if failure is not None:
        if isinstance(failure, stops.STOPS):
            line = _stop_line(failure, cfg, setup, rep, launched)
            error_console.print(line, highlight=False, soft_wrap=True)
            sys.exit(stops.exit_code(failure))
        if isinstance(failure, SweepFailed):
            error_console.print(f"[bold red]sweep stopped:[/] {plain(failure)}")
            sys.exit(1)
        raise failure
    return rep


def _check_not_fixed(
    setup: Setup, arguments: Sequence[str], required: Collection[str] = ()
) -> None:
    """A key both searched and set on the command line (`search=lr lr=0.5`): every trial
    would override the fixed value, silently. Only the user's own overrides are looked at
    (the sweeper's worker jobs add theirs later), and overrides of the space itself
    (`search.params.lr.low=...`) are no conflict. A key in `required` has no default
    (`dataset.path` of dataset=csv): its value completes the base config, and the line
    printed says that each trial uses its own."""
    from hyperlab.display import error_console, plain
    from hyperlab.errors import ConfigError
    from hyperlab.overrides import override_key

    searched = {p.key: p for p in setup.params}
    for override in arguments:
        key = override_key(override)
        p = searched.get(key)
        if p is None:
            continue
        if key in required:
            error_console.print(
                f"[yellow]note:[/] {plain(key)} is searched: {plain(override)} only completes "
                "the base config, and each trial trains with its own value",
                highlight=False,
            )
            continue
        narrow = (
            f"search.params.{key}.choices=[...]"
            if p.kind == "categorical"
            else f"search.params.{key}.low=... search.params.{key}.high=..."
        )
        raise ConfigError(
            f"{key} is searched ({p.describe()}) and also fixed on the command line "
            f"({override}): every trial would replace {override} with its own value",
            f"to search {key}, remove {override}; to keep it fixed, search without it "
            f"(~search.params.{key}, or another search=...), or narrow its range: {narrow}",
        )


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


# --- stops and dead workers (see hyperlab.stops and hyperlab.search.launch) ----------------


def _launch(launcher: Any, jobs: list[list[str]], replace: Callable[[Any], Any]) -> Any:
    """The workers' JobReturns. The joblib launcher's jobs run one process each, so that a
    worker killed does not take the others down, and a stop reaches every worker."""
    from hyperlab.search.launch import Workers, is_joblib

    if is_joblib(launcher):
        return Workers(launcher).run(jobs, replace)
    return launcher.launch(jobs, initial_job_idx=0)


def _fail_lost(cfg: DictConfig, setup: Setup, s: optuna.Study, retry: Retry) -> None:
    """Fail the trials of workers that are gone (killed when they did not stop in time, or
    died), as the next claim would; with sweep.retry_failed, enqueue them again."""
    from hyperlab.search import study

    with contextlib.suppress(HyperlabError):  # the storage is away: the next claim does it
        retries = int(cfg.sweep.retry_failed)
        retry("failing lost trials", lambda: study.release_lost(s, setup.url, retries))


def _replace_dead(
    cfg: DictConfig,
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
        first = retry("numbering the workers", lambda: _worker_ids(s, setup.url, 1))
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
    cfg: DictConfig,
    setup: Setup,
    finished: _Finished | None,
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
        again = " (sweep.retry_failed runs them again)" if int(cfg.sweep.retry_failed) else ""
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


def _parent_run(cfg: DictConfig, setup: Setup, s: optuna.Study, arguments: list[str]) -> Any:
    """The study's MLflow parent run: created by its first sweeper, reopened by the others.
    Under the lock, so that two sweepers starting at once share one parent run."""
    from hyperlab.search.study import budget_lock
    from hyperlab.tracking import default_tags, start_run

    with budget_lock(setup.url):
        existing = s.user_attrs.get(PARENT_RUN_ID)
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
            s.set_user_attr(PARENT_RUN_ID, parent.run_id)
    return parent


def _record_versions(s: optuna.Study) -> None:
    """A new study records the versions of the libraries that decide its results
    (task=retest compares them); a resumed one whose versions changed since says so."""
    from hyperlab.display import error_console
    from hyperlab.tracking import version_changes, versions

    then = s.user_attrs.get(VERSIONS_ATTR)
    if then is None:
        if not s.get_trials(deepcopy=False):  # (a study made before they were recorded: unknown)
            s.set_user_attr(VERSIONS_ATTR, versions())
    elif changes := version_changes(then, versions()):
        error_console.print(
            f"[yellow]warning:[/] versions changed since this study was created: "
            f"{', '.join(changes)}; its earlier trials ran on the old ones"
        )


def _worker_ids(s: optuna.Study, url: str, workers: int) -> int:
    """The first of `workers` new worker ids. A worker's sampler is seeded with
    sweep.seed + its id: the workers of a resumed study, or of the same command on another
    machine, would otherwise sample the very points the first launch sampled. The first
    launch of a new study gets 0 .. workers-1, so it stays reproducible."""
    from hyperlab.search.study import budget_lock

    with budget_lock(url):
        first = int(s.user_attrs.get(WORKERS_ATTR, 0))
        s.set_user_attr(WORKERS_ATTR, first + workers)
    return first


@dataclass
class _Finished:
    """What the sweeper knows at the end: the report, and the study it was built from."""

    report: Any  # hyperlab.search.report.Report
    study: optuna.Study
    summary: Path  # summary.md in the sweep directory


def _report(
    cfg: DictConfig, setup: Setup, sweep_dir: Path, failure: BaseException | None
) -> _Finished | None:
    """Show and save the study's report; None when the storage cannot be read (a worker
    stopped for it already waited `sweep.retry_seconds`: one more try only)."""
    from hyperlab.display import console, error_console, plain
    from hyperlab.search import report

    seconds = 0.0 if isinstance(failure, WorkerStopped) else float(cfg.sweep.retry_seconds)
    summary = sweep_dir / "summary.md"
    try:
        s = load_study(cfg, setup, 0, Retry(setup.url, seconds))
        rep = report.build(s, sweep_dir)
        report.show(rep, console)
        changed = data_changes(s)
        if changed:
            error_console.print(f"[yellow]{changed}[/]", highlight=False)
        summary.write_text(report.markdown(rep) + (f"\n{changed}\n" if changed else ""))
    except WorkerStopped as e:
        error_console.print(f"[yellow]no report:[/] {plain(e.problem)}")
        return None
    except OSError as e:  # outputs/ full, read-only or deleted: the study itself is kept
        error_console.print(
            f"[yellow]no report:[/] {e.filename or sweep_dir} could not be written "
            f"({e.strerror or e})"
        )
        return None
    return _Finished(rep, s, summary)


def _close_parent(
    parent: Any,
    finished: _Finished | None,
    failure: BaseException | None,
    launched: datetime.datetime,
) -> None:
    """Log the report to the study's parent run and end it; close child runs that a worker
    left RUNNING while the tracking store was away (see the writer's close_stale)."""
    from hyperlab.display import console, plain
    from hyperlab.search import report
    from hyperlab.tracking import TrackingError, drain, writer

    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    if finished is not None:
        rep, s = finished.report, finished.study
        metrics = {f"importance.{k}": v for k, v in rep.importances.items()}
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
                console.print(f"coarse to fine {key}: {plain(region)}")
        parent.log_files([finished.summary, *rep.plots])
        if failure is None:
            # Only trials that ended before this sweep began: a trial that ended since may
            # still have its run's end on its way through another worker's writer.
            ended = [
                t.number
                for t in s.get_trials(deepcopy=False)
                if t.state.is_finished() and t.datetime_complete and t.datetime_complete < launched
            ]
            w = writer(parent.uri)
            w.send(
                ref=next(w.refs),
                op="close_stale",
                uri=parent.uri,
                parent_run_id=parent.run_id,
                ended=ended,
            )
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


def _study_params(cfg: DictConfig, setup: Setup) -> dict[str, str]:
    from hyperlab.search.study import where
    from hyperlab.tracking import versions

    params = {
        "study": setup.name,
        "search": str(cfg.search.name),
        "sampler": str(cfg.hydra.runtime.choices.sampler),
        "pruner": str(cfg.hydra.runtime.choices.pruner),
        "n_trials": str(setup.n_trials),
        "workers": str(cfg.sweep.workers),
        "seed": str(cfg.sweep.seed),
        "objective": f"{cfg.objective.metric} ({direction_of(cfg.objective)})",
        "storage": where(setup.url),
    }
    for p in setup.params:
        params[f"space.{p.key}"] = p.describe()
    params.update({f"version.{name}": v for name, v in versions().items()})
    return params


def _show_space(setup: Setup, console: Any) -> None:
    from rich.table import Table

    from hyperlab.display import plain
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
        row = [p.key, p.kind, rng, scale if p.kind != "categorical" else "", when, *cells]
        table.add_row(*map(plain, row))
    console.print(table)
    console.print(f"study {plain(setup.name)}: {setup.n_trials} trials (dry run: nothing trained)")
