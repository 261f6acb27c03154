"""A study's worker: claim trials, train them, tell the study; Hydra-free.

The cycle: claim up to `batch` trials (study.claim, under the budget lock), sample each
one's values and compose its config (the Worker's `compose`, which the sweeper backs with
Hydra), train them through a `Train` function, tell the study how each ended, and check
the failure rate; until the study needs no more trials. `train_each` trains a batch one
trial after another (a batch of one is a sweep's worker); a trainer of many trials in one
process takes the same batch and returns one Outcome per trial.

What happens to trials is accounted here: a bad sample, a crash or a diverged cost fails
its trial with its reason; a storage or tracking store that stays away stops the worker
(WorkerStopped); a stop signal (hyperlab.stops) fails the trials in hand, records them and
stops the worker.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from hyperlab import stops
from hyperlab.errors import HyperlabError, first_line
from hyperlab.search.budget import expired
from hyperlab.search.setup import DATA_ATTR, FIRST_DATA_ATTR, SEEDS_ATTR, Composer, Setup
from hyperlab.search.study import Retry, stopped_for

if TYPE_CHECKING:
    import optuna

    from hyperlab.repeats import Spread
    from hyperlab.run import Job
    from hyperlab.schema import Config

DIVERGED = "training diverged (the cost became NaN or infinite)"


class SweepFailed(RuntimeError):
    """More trials failed than sweep.max_failure_rate allows."""


@dataclass
class Worker:
    """What a worker's trials share: the study, how to compose and replay a trial, and
    where its runs go."""

    cfg: Config  # the worker's own config, validated: the sweep and tracking settings
    setup: Setup
    study: optuna.Study
    retry: Retry
    base: list[str]  # the command's overrides, under every trial's
    compose: Composer
    root_choices: dict[str, str]  # the group options of the bare config, for replay lines
    fixed: dict[str, str]  # the group options the command fixed
    output_dir: Path
    parent: str | None  # the study's MLflow parent run
    first_data: str | None = None  # the study's first data hash, once this worker knows it
    seconds: dict[str, float] = field(default_factory=dict)  # time in claim, sample, tell


@dataclass
class Claimed:
    """A trial in hand: its values, and its config once composed (compose_trial: the train
    function composes, so that one that needs no config for a trial skips the cost)."""

    trial: optuna.Trial
    values: dict[str, Any]
    overrides: list[str]
    line: str  # the `hyperlab ...` line that trains it alone, once composed
    config: Config | None = None  # composed and validated
    choices: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """How a trial ended; `stop` is set when the worker must stop after telling it."""

    state: Any  # optuna.trial.TrialState
    value: float | list[float] | None = None  # a list: one per objective (multi.told)
    reason: str = ""
    stop: HyperlabError | None = None
    interrupt: BaseException | None = None  # a stop signal: the worker stops after this trial


# Trains a batch of claimed trials: one Outcome per trial, in order.
Train = Callable[[Worker, Sequence[Claimed]], list[Outcome]]


def run(w: Worker, train: Train | None = None, batch: int = 1) -> dict[str, int]:
    """Claim, train and tell trials until the study needs none. Returns how many trials
    this worker finished, by state, and how many storage calls it retried."""
    from hyperlab.search.journal import synced_once
    from hyperlab.tracking import TrackingError, drain

    train = train or train_each
    limit = w.cfg.sweep.max_failure_rate
    done: dict[str, int] = {}
    while not expired(w.cfg.sweep.deadline):  # past sweep.timeout: no more claims
        # Each phase's journal appends reach the disk with one fsync (journal.synced_once).
        with synced_once():
            claimed = _claim(w, batch)
        if not claimed:
            break
        with _Heartbeat(w.study, [c.trial for c in claimed]):
            try:
                stops.check()  # a stop that came during the claim fails these trials
                with synced_once():
                    outcomes = train(w, claimed)
            except stops.STOPS as e:  # the runner closed the trials' MLflow runs as KILLED
                outcomes = [stopped(e) for _ in claimed]
            with stops.held(until_checked=True), _timed(w, "tell"), synced_once():
                for c, outcome in zip(claimed, outcomes, strict=True):
                    _tell(w, c.trial, outcome)
        for outcome in outcomes:
            done[outcome.state.name] = done.get(outcome.state.name, 0) + 1
        # A stop that came while the trials were told: they are told, then the worker stops.
        interrupt = next((o.interrupt for o in outcomes if o.interrupt), None) or stops.take()
        # A stop hidden by a library's handler (an error raised while handling it took its
        # place) still ends the worker: no trial is claimed after a stop.
        interrupt = interrupt or stops.since()
        if interrupt is not None:
            _drain_then_stop(interrupt)
        for outcome in outcomes:
            if outcome.stop is not None:
                raise outcome.stop
        w.retry("counting failures", lambda: _check_failure_rate(w.study, limit))
    try:
        drain()
    except TrackingError as e:
        raise stopped_for(e) from None
    stops.check()
    if w.retry.retries:
        done["storage_retries"] = w.retry.retries
    return done


@contextlib.contextmanager
def _timed(w: Worker, what: str) -> Any:
    import time

    start = time.perf_counter()
    try:
        yield
    finally:
        w.seconds[what] = w.seconds.get(what, 0.0) + time.perf_counter() - start


def _claim(w: Worker, batch: int) -> list[Claimed]:
    """Up to `batch` trials the study still needs, claimed under one hold of its lock, each
    sampled."""
    from hyperlab.search import space, study

    s, setup = w.study, w.setup
    retries, number = w.cfg.sweep.retry_failed, w.cfg.sweep.worker
    with stops.held(until_checked=True), _timed(w, "claim"):  # marked with its process
        trials = w.retry(
            "claiming trials",
            lambda: study.claim_many(s, setup.url, setup.n_trials, batch, retries, number),
        )
    claimed = []
    for trial in trials:
        with _timed(w, "sample"):
            sample = functools.partial(
                space.suggest, trial, setup.params, fixed=w.fixed, naive=setup.naive
            )
            values = w.retry("sampling the trial", sample)
        overrides = space.overrides(values)
        claimed.append(Claimed(trial, values, overrides, "hyperlab " + " ".join(overrides)))
    return claimed


def compose_trial(w: Worker, c: Claimed) -> Config:
    """The claimed trial's config, validated, and its replay line recorded in the study. A
    sample the config refuses raises: it fails this trial only."""
    from hyperlab.search.report import REPLAY_ATTR
    from hyperlab.search.trial import replay
    from hyperlab.validate import validate

    composed, c.choices = w.compose(c.values)
    c.line = replay(w.base, c.overrides, c.choices, w.root_choices)
    c.trial.set_user_attr(REPLAY_ATTR, c.line)
    c.config = validate(composed)  # the one check: the trial's run takes it as it is
    return c.config


def stopped(e: BaseException) -> Outcome:
    """The outcome of a trial that a stop signal cut short."""
    from optuna.trial import TrialState

    from hyperlab.search.study import STOPPED_WORKER

    reason = f"{STOPPED_WORKER} ({stops.describe(e)})"
    return Outcome(TrialState.FAIL, reason=reason, interrupt=e)


def train_each(w: Worker, batch: Sequence[Claimed]) -> list[Outcome]:
    """Train the trials one after another; a stop fails the one in training and the rest."""
    outcomes: list[Outcome] = []
    for c in batch:
        try:
            outcomes.append(train_trial(w, c))
        except stops.STOPS as e:
            outcomes += [stopped(e) for _ in range(len(batch) - len(outcomes))]
            break
    return outcomes


def train_trial(w: Worker, c: Claimed) -> Outcome:
    """Train one claimed trial. A bad sample, a crash in data loading or training, a
    diverged cost or an out-of-memory model fails this trial only, with its reason; a
    storage or tracking store that stays unreachable also stops the worker."""
    from hyperlab.repeats import train

    opened: list[object] = []  # the trial's MLflow run, once opened
    try:
        # A batch trainer may have composed it already (caviar, for a trial it trains alone).
        config = c.config if c.config is not None else compose_trial(w, c)
        return settle(w, c, config, train(config, trial_job(w, c, config, opened.append)))
    except Exception as e:
        return failed(w, c, e, opened=bool(opened))


def trial_job(w: Worker, c: Claimed, config: Config, on_opened: Callable[[Any], None]) -> Job:
    """What a trial's run knows beyond its config: its name, tags, parent run, directory,
    and the pruning reporter that reports each epoch to the study."""
    from hyperlab.run import Job
    from hyperlab.search.trial import PruningReporter

    trial = c.trial
    return Job(
        choices={g: o for g, o in c.choices.items() if not g.startswith("hydra/")},
        overrides=c.overrides,
        command=c.line,
        run_name=f"trial {trial.number}: {' '.join(c.overrides)}",
        output_dir=w.output_dir / f"trial_{trial.number}",
        parent_run_id=w.parent,
        listeners=[PruningReporter(trial, config.objective.metric, config.epochs)],
        tags=_trial_tags(w, trial, c.line),
        on_opened=on_opened,
    )


def settle(w: Worker, c: Claimed, config: Config, result: Spread) -> Outcome:
    """The outcome of a trial that trained: its data hash, seconds and seeds recorded;
    complete, or failed if its cost diverged."""
    from optuna.trial import TrialState

    from hyperlab.search.multi import told

    trial = c.trial
    check_data(w, trial, _data_hash(config))
    # A trial of seed repeats has several runs: its seconds are each seed's run's.
    timings = result.runs[0].timings if len(result.runs) == 1 else {}
    trial.set_user_attr("seconds", {k: round(v, 6) for k, v in timings.items()})
    if len(result.values) > 1:
        trial.set_user_attr(
            SEEDS_ATTR, {str(s): v for s, v in zip(result.seeds, result.values, strict=True)}
        )
        trial.set_user_attr("mean", result.mean)
        trial.set_user_attr("std", result.std)
    if math.isnan(result.objective):
        return Outcome(TrialState.FAIL, reason=DIVERGED)
    return Outcome(TrialState.COMPLETE, told(config, trial, result))


def failed(w: Worker, c: Claimed, e: Exception, opened: bool) -> Outcome:
    """The outcome of a trial whose training raised `e`: pruned, or failed with its reason
    (recorded in MLflow too when its run was not `opened`); a tracking store that cannot
    be written also stops the worker."""
    import optuna
    from optuna.trial import TrialState

    from hyperlab.search import study
    from hyperlab.tracking import TrackingError

    if isinstance(e, optuna.TrialPruned):
        check_data(w, c.trial, _data_hash(c.config))
        return Outcome(TrialState.PRUNED)
    if isinstance(e, TrackingError):  # the run could not be recorded: stop before the next
        return Outcome(TrialState.FAIL, reason=f"TrackingError: {e.problem}", stop=stopped_for(e))
    # A bad sample (HyperlabError) or a crash fails this trial only.
    if study.transient(e):  # the storage went away under the pruner's report
        return Outcome(TrialState.FAIL, reason=f"{study.STORAGE_LOST}: {first_line(e)}")
    reason = f"{type(e).__name__}: {e}"
    if not opened:
        # It failed before its MLflow run was opened (composing the config, loading the
        # data, allocating the model): record the failure there too.
        return Outcome(TrialState.FAIL, reason=reason, stop=_record_failed_run(w, c, reason))
    return Outcome(TrialState.FAIL, reason=reason)


def _data_hash(config: Config | None) -> str:
    """The hash of the data a trial trained on (its splits are cached: no second load)."""
    from hyperlab.build import build_data

    return "" if config is None else build_data(config.dataset).sha256


def check_data(w: Worker, trial: optuna.Trial, sha: str) -> None:
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


def _trial_tags(w: Worker, trial: optuna.Trial, line: str) -> dict[str, str]:
    from hyperlab.search import warm_start
    from hyperlab.search.coarse_to_fine import stage_tag

    return {
        "hyperlab.study": w.setup.name,
        "hyperlab.trial": str(trial.number),
        "hyperlab.replay": line,
        **stage_tag(w.study, trial.number),
        **warm_start.trial_tags(trial),
    }


def _record_failed_run(w: Worker, c: Claimed, reason: str) -> HyperlabError | None:
    """A FAILED child run for a trial that failed before its run was opened, so that the
    MLflow UI lists it with its values and reason. Returns the error to stop on when the
    tracking store cannot be written."""
    from hyperlab.errors import masked
    from hyperlab.tracking import Tracker, TrackingError, default_tags

    tracking = w.cfg.tracking
    if not tracking.enabled or w.cfg.repeats > 1:
        return None
    try:
        run = Tracker(
            tracking.uri,
            tracking.experiment,
            artifact_root=tracking.artifacts,
            run_name=masked(f"trial {c.trial.number}: {' '.join(c.overrides)}")[:250],
            parent_run_id=w.parent,
            params=dict(o.split("=", 1) for o in c.overrides if "=" in o),
            tags={**default_tags(c.line), **_trial_tags(w, c.trial, c.line)},
        )
        run.finish("FAILED", tags={"hyperlab.failure_reason": reason, "hyperlab.outcome": "failed"})
    except TrackingError as e:
        return stopped_for(e)
    return None


def _tell(w: Worker, trial: optuna.Trial, outcome: Outcome) -> None:
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


def _drain_then_stop(stop: BaseException) -> NoReturn:
    """Wait until this worker's MLflow runs are written (the stopped trials' as KILLED),
    then stop the worker with the signal's exception."""
    from hyperlab.tracking import TrackingError, drain

    with contextlib.suppress(TrackingError):  # the stop is what matters now
        drain()
    raise stop


def _check_failure_rate(s: optuna.Study, limit: float) -> None:
    from hyperlab.search.study import counts

    c = counts(s)
    failed, total = c.get("FAIL", 0), sum(c.values())
    if total >= 5 and failed / total > limit:
        raise SweepFailed(
            f"{failed} of {total} trials failed, more than sweep.max_failure_rate={limit}"
        )


class _Heartbeat:
    """Records the heartbeats of the trials in hand every `sweep.heartbeat_seconds` while
    they train, on an RDB storage, so that other workers fail them if this worker dies.

    Optuna's own heartbeat thread runs only inside study.optimize(), which the worker loop
    does not use: without this, a trial whose worker was killed on another machine would
    stay RUNNING, and count against the budget, forever. A beat that fails (the database
    away for a moment) is skipped: the next one may get through."""

    def __init__(self, s: optuna.Study, trials: Sequence[optuna.Trial]) -> None:
        from hyperlab.search.study import heartbeat_storage

        self.storage, self.trial_ids = heartbeat_storage(s), [t._trial_id for t in trials]
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
            for trial_id in self.trial_ids:
                with contextlib.suppress(Exception):
                    storage.record_heartbeat(trial_id)
            if self.stop.wait(self.interval):
                return
