"""run(config, job) -> RunResult: one training job, as the CLI, the sweeper and the tests
call it.

Top to bottom as run() calls them: prepare (validate, build the parts), resume from a
checkpoint, open the MLflow run, fit with listeners, record a run that ended early (the
outcome sorting), finish (the final evaluation, recorded) and summarize."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from hyperlab import display, stages, stops
from hyperlab.build import Parts, build, build_data
from hyperlab.checkpoint import Checkpoint
from hyperlab.data import Splits
from hyperlab.devices import threads
from hyperlab.diagnose import Reading, bias_variance
from hyperlab.early_stopping import EarlyStopping
from hyperlab.errors import ConfigError, masked
from hyperlab.hearing import hearing
from hyperlab.job import Job as Job  # re-exported: run(config, Job(...)) is one import
from hyperlab.loop import Diverged, Listener, evaluate, fit
from hyperlab.models import layer_sizes
from hyperlab.objectives import EPOCH_METRICS, RUN_METRICS
from hyperlab.record import Record, open_record
from hyperlab.schema import Config
from hyperlab.tracking import TrackingError
from hyperlab.validate import checked


@dataclass(frozen=True)
class RunResult:
    """How a run that trained ended: the objective (NaN when training diverged), its MLflow
    run (None with tracking off), seconds spent building, fitting and finishing, and the
    hash of the data it trained on."""

    objective: float
    run_id: str | None
    timings: dict[str, float]
    data_sha256: str
    # Every metric a study may optimize (hyperlab.objectives): the final epoch's, the fit's
    # seconds and the model's parameter count. Empty for a run that diverged.
    measures: dict[str, float] = field(default_factory=dict)


def run(cfg: Config | DictConfig | Mapping[str, Any], job: Job | None = None) -> RunResult:
    """Train the configured model and return how it ended.

    Bad config values raise ConfigError and bad data DataError, before anything is
    recorded. A run pruned, stopped or failed is recorded as such, and its error raised."""
    job = job or Job()
    start = time.perf_counter()
    config, parts = prepare(cfg)
    timings = {"build": time.perf_counter() - start}
    sha256 = parts.data.sha256
    generator = torch.Generator().manual_seed(config.seed)  # mini-batch shuffles
    start_epoch, resume_tags = _resume(config, parts, generator, job.resume)
    _announce(config, parts.data, job)
    record = open_record(config, job, sha256, resume_tags)
    if record.tracker and job.on_opened:
        job.on_opened(record.tracker)
    hear = hearing(config, parts, generator, job, record, start_epoch)
    start = time.perf_counter()
    try:
        with hear.progress or contextlib.nullcontext():
            history = fit_parts(
                config,
                parts,
                generator,
                listeners=hear.listeners,
                start_epoch=start_epoch,
                stop=hear.stop,
            )
    except BaseException as e:
        if isinstance(e, Diverged):  # the layers show where it blew up
            hear.report_layers(record, config.progress)
        run_id = end_early(e, config, record)
        if isinstance(e, Diverged):
            return RunResult(math.nan, run_id, timings, sha256)
        raise
    timings["fit"] = time.perf_counter() - start
    measured = run_metrics(timings["fit"], parts.model)
    # Trained: a stop from here on would lose the result for a moment's work. It is kept
    # for the caller (stops.take), which records this run as it ended, then stops.
    with stops.held(until_checked=True):
        start = time.perf_counter()
        hear.report_layers(record, config.progress)
        final, run_id = finish(
            config, parts, history, job, record, start_epoch, hear.stopper, measured
        )
        timings["finish"] = time.perf_counter() - start
        _summarize(config, final, run_id, record)
    return RunResult(final.value, run_id, timings, sha256, final.measures)


def run_metrics(fit_seconds: float, model: torch.nn.Module) -> dict[str, float]:
    """The metrics measured once per run (hyperlab.objectives.RUN_METRICS): the fit's wall
    time and the model's parameter count, which a study may trade against accuracy."""
    return {
        "train_seconds": fit_seconds,
        "n_params": float(sum(p.numel() for p in model.parameters())),
    }


# A limit on what a config may ask of this machine: (config, the model's layer sizes from
# input to output, the machine's memory in bytes or None where unknown) -> None, or raises.
SizeCheck = Callable[[Config, list[int], int | None], None]


def prepare(
    cfg: Config | DictConfig | Mapping[str, Any], *, check: SizeCheck | None = None
) -> tuple[Config, Parts]:
    """The config, typed (validated unless it is a Config already), after setting threads
    and the seed, and the parts of a run. `check` refuses, before the model is built, what
    another task (the gradient check) would need beyond the memory training takes."""
    config = checked(cfg)
    torch.set_num_threads(threads(config))
    torch.manual_seed(config.seed)  # initialization and dropout masks
    data = build_data(config.dataset)  # kept: build() below gets the same splits
    sizes = layer_sizes(config.model, data.n_features, data.n_classes)
    memory = _memory_bytes()
    _check_model_size(config, sizes, memory)
    if check:
        check(config, sizes, memory)
    try:
        return config, build(config)
    except Exception as e:  # torch's allocator error comes wrapped by Hydra's instantiate
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        lines = str(e).splitlines() or [type(e).__name__]
        why = next((line for line in lines if "allocate" in line), lines[0])
        raise _too_big(config, f"the model cannot be allocated ({why.strip()})") from None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_model_size(config: Config, sizes: list[int], memory: int | None) -> None:
    """A model whose weights, gradients and optimizer state exceed the machine's memory
    fails here, before torch allocates it (a typo such as model.hidden_units=1000000 would
    otherwise exhaust the memory or stop with an allocator's traceback)."""
    weights = sum(a * b + b for a, b in itertools.pairwise(sizes))
    # float32 weights, their gradients and up to two optimizer moments (Adam)
    if memory and weights * 4 * 4 > memory:
        raise _too_big(
            config,
            f"the model has {weights:.3g} weights: with their gradients and the optimizer's "
            f"state that is {weights * 16 / 2**30:.3g} GiB, more than this machine's "
            f"{memory / 2**30:.3g} GiB of memory",
        )


def _too_big(config: Config, why: str) -> ConfigError:
    model = config.model
    return ConfigError(
        f"model.hidden_units={model['hidden_units']}, model.layers={model['layers']}: {why}",
        "use fewer hidden units or layers, e.g. model.hidden_units=128",
    )


def _resume(
    config: Config,
    parts: Parts,
    generator: torch.Generator,
    ckpt: Checkpoint | None,
) -> tuple[int, dict[str, str]]:
    """The epoch to start at, and the tags saying where from: with a checkpoint, its
    model, optimizer and shuffle state restored."""
    if ckpt is None:
        return 0, {}
    if config.epochs <= ckpt.epoch:
        raise ConfigError(
            f"epochs={config.epochs}: the checkpoint has trained {ckpt.epoch} epochs already",
            f"ask for more in all, e.g. epochs={ckpt.epoch + max(ckpt.epoch, 10)}",
        )
    ckpt.restore(parts.model, parts.optimizer, generator)
    # The optimizer's state brings back the checkpoint's betas, eps and weight decay: the
    # command's own are set again (a babysitter nudges them as it nudges lr, which the loop
    # sets each epoch).
    stages.set_optimizer(parts.optimizer, stages.optimizer_values(config))
    return ckpt.epoch, {
        "hyperlab.resumed_from": ckpt.run_id,
        "hyperlab.resumed_at_epoch": str(ckpt.epoch),
        "hyperlab.resumed_checkpoint": str(ckpt.path),
    }


def _announce(config: Config, data: Splits, job: Job) -> None:
    """With the progress display on: one line on what is trained on what, where the run's
    files go, and what a resumed run continues."""
    if not config.progress:
        return
    if not job.announced:
        display.console.print(display.header(config, job.choices))
    shape = (
        "data: "
        + " / ".join(f"{len(data.split(n)[1])} {n.replace('_', '-')}" for n in data.names)
        + ", "
        f"{data.n_features} features, {data.n_classes} classes"
    )
    display.console.print(shape, highlight=False)
    if job.output_dir:
        display.console.print(f"run dir: {display.plain(job.output_dir)}", soft_wrap=True)
    if job.resume:
        ckpt = job.resume
        source = f"{ckpt.path}" + (f" (MLflow run {ckpt.run_id})" if ckpt.run_id else "")
        display.console.print(
            f"resumed from {display.plain(source)} after epoch {ckpt.epoch}: "
            f"training epochs {ckpt.epoch + 1} to {config.epochs}",
            soft_wrap=True,
        )


def fit_parts(
    config: Config,
    parts: Parts,
    generator: torch.Generator,
    *,
    epochs: int | None = None,
    listeners: Sequence[Listener] = (),
    start_epoch: int = 0,
    stop: Callable[[], bool] | None = None,
) -> list[dict[str, float]]:
    """Train the parts as the config says, for `epochs` (default: the config's), in its
    stages if it has any (hyperlab.stages)."""
    data, last = parts.data, config.epochs if epochs is None else epochs

    def train(
        values: Mapping[str, float], start: int, end: int, heard: Sequence[Listener]
    ) -> list[dict[str, float]]:
        return fit(
            parts.model,
            parts.optimizer,
            parts.schedule,
            (data.x_train, data.y_train),
            (data.x_dev, data.y_dev),
            lr=values["lr"],
            epochs=end,
            batch_size=config.batch_size,
            l2=values["regularization.l2"],
            weights=parts.model.weights,
            generator=generator,
            listeners=heard,
            start_epoch=start,
            stop=stop,
            augment=parts.augment,
        )

    base = {"lr": config.lr, "regularization.l2": parts.regularization.l2}
    if not config.stages:
        return train(base, start_epoch, last, listeners)
    staged = stages.of_config(config)
    base |= stages.optimizer_values(config)
    return stages.train_in_stages(
        staged,
        base,
        parts.optimizer,
        train,
        start=start_epoch,
        epochs=last,
        listeners=listeners,
        stop=stop,
    )


def _outcome(e: BaseException, lr: float) -> tuple[str, dict[str, str]]:
    """How a run that did not finish ends in MLflow: its status (FAILED when it diverged
    or failed, KILLED when pruned or stopped) and the tags saying why."""
    if isinstance(e, Diverged):
        outcome = "diverged"
        reason = f"{e}; lower the learning rate (lr={lr:g}) or check the data"
    else:
        stopped = isinstance(e, stops.STOPS)
        outcome = "pruned" if _is_pruned(e) else "stopped" if stopped else "failed"
        reason = f"stopped by {stops.describe(e)}" if stopped else f"{type(e).__name__}: {e}"
    status = "KILLED" if outcome in ("pruned", "stopped") else "FAILED"
    return status, {"hyperlab.failure_reason": reason, "hyperlab.outcome": outcome}


def _is_pruned(e: BaseException) -> bool:
    return type(e).__name__ == "TrialPruned"


def end_early(e: BaseException, config: Config, record: Record) -> str | None:
    """Record a run that did not finish: diverged (said on stderr too), or pruned, stopped
    or failed (then the error goes on up). Returns the MLflow run's id, with tracking on."""
    status, tags = _outcome(e, config.lr)
    if isinstance(e, Diverged):
        reason = tags["hyperlab.failure_reason"]
        display.error_console.print(f"[bold red]diverged:[/] {display.plain(reason)}")
        return record.close(status, tags) if record.tracker else None
    if record.tracker:
        # The original error matters more than a failure to record it.
        with contextlib.suppress(TrackingError):
            return record.close(status, tags)
    return None


@dataclass(frozen=True)
class Final:
    """A trained run's end: loss and accuracy per split, the bias/variance reading, and
    the objective's metric and value."""

    splits: dict[str, tuple[float, float]]
    reading: Reading
    metric: str
    value: float
    best: dict[str, float] = field(default_factory=dict)  # best_dev_acc, best_epoch, ...
    early_stopping: str = ""  # how early stopping ended training, where it was on
    # What a study may optimize: the epoch's metrics and the run's (train_seconds, n_params).
    measures: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        return {
            **self.best,
            **{k: v for k, v in self.measures.items() if k in RUN_METRICS},
            "test_loss": self.splits["test"][0],
            "test_acc": self.splits["test"][1],
            "train_error": 1 - self.splits["train"][1],
            "dev_error": 1 - self.splits["dev"][1],
        } | (
            {"train_dev_loss": held[0], "train_dev_acc": held[1], "train_dev_error": 1 - held[1]}
            if (held := self.splits.get("train_dev"))
            else {}
        )

    def tags(self, direction: str) -> dict[str, str]:
        return {
            "hyperlab.bias_variance": self.reading.verdict,
            "hyperlab.avoidable_bias": f"{self.reading.avoidable_bias:.4f}",
            "hyperlab.variance": f"{self.reading.variance:.4f}",
            **(
                {"hyperlab.data_mismatch": f"{self.reading.data_mismatch:.4f}"}
                if self.reading.data_mismatch is not None
                else {}
            ),
            "hyperlab.next_step": self.reading.advice,
            "hyperlab.objective": f"{self.metric} ({direction})",
            "hyperlab.outcome": "complete",
        } | ({"hyperlab.early_stopping": self.early_stopping} if self.early_stopping else {})


def best(
    points: Mapping[str, Sequence[tuple[int, float]]], metric: str, direction: str
) -> dict[str, float]:
    """The best dev accuracy and dev cost over the epochs, and the epoch where the
    objective's metric was best (the first, on a tie): MLflow's runs table shows a metric's
    last value only, and an overfitting run's last epoch is not its best."""
    sign = 1.0 if direction == "maximize" else -1.0
    epoch = max(points[metric], key=lambda p: (sign * p[1], -p[0]))[0]
    return {
        "best_dev_acc": max(v for _, v in points["dev_acc"]),
        "best_dev_loss": min(v for _, v in points["dev_loss"]),
        "best_epoch": float(epoch),
    }


def finish(
    config: Config,
    parts: Parts,
    history: list[dict[str, float]],
    job: Job,
    record: Record,
    start_epoch: int,
    stopper: EarlyStopping | None = None,
    run: Mapping[str, float] | None = None,
    tags: Mapping[str, str] = {},
) -> tuple[Final, str | None]:
    """The learning curve of an untracked run, the final evaluation (of the best epoch's
    weights, with early stopping), and the run recorded as FINISHED (its id returned with
    the evaluation, with tracking on). `run` holds the run metrics (run_metrics)."""
    points = record.curve_points(history, start_epoch)
    if record.curve and record.tracker is None and job.output_dir:
        from hyperlab.curves import draw

        draw(points, record.curve, record.title)
    metric = config.objective.metric
    bests = best(points, metric, config.objective.direction)
    last = history[-1]
    if stopper and stopper.best_epoch:  # 0: every dev value was NaN, nothing to restore
        stopper.restore()
        last = stopper.best_metrics
        bests |= {
            "best_epoch": float(stopper.best_epoch),
            "stopped_epoch": float(stopper.last_epoch),
        }
    splits = {s: evaluate(parts.model, *parts.data.split(s)) for s in parts.data.names}
    reading = bias_variance(
        1 - splits["train"][1],
        1 - splits["dev"][1],
        config.bayes_error,
        config.diagnosis_threshold,
        1 - splits["train_dev"][1] if "train_dev" in splits else None,
    )
    note = stopper.describe() if stopper else ""
    run = dict(run or {})
    epoch_metrics = {m: last[m] for m in EPOCH_METRICS if m in last}
    final = Final(splits, reading, metric, last[metric], bests, note, epoch_metrics | run)
    run_id = None
    if record.tracker:
        run_id = record.close(
            "FINISHED",
            {**final.tags(config.objective.direction), **tags},
            final.metrics(),
            step=start_epoch + len(history),
        )
    return final, run_id


def _summarize(config: Config, final: Final, run_id: str | None, record: Record) -> None:
    """The end-of-run table, with the progress display on."""
    if config.progress:
        tracked = record.tracker is not None
        display.summary(
            "final evaluation (eval mode)",
            final.splits,
            final.reading,
            (final.metric, final.value),
            run_id if tracked else None,
            masked(config.tracking.uri) if tracked else None,
            display.ui_page(record.tracker.experiment_id, run_id) if record.tracker else "",
            final.early_stopping,
        )
