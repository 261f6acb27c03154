"""Who hears of each epoch of a run, built from its config: the tracker, early stopping,
layer diagnostics, the checkpointer, the job's own listeners (a sweeper's pruning
reporter) and the progress display, in that order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from hyperlab import display, layer_stats
from hyperlab.checkpoint import DIR as CHECKPOINT_DIR
from hyperlab.checkpoint import Checkpointer
from hyperlab.early_stopping import EarlyStopping, early_stopping
from hyperlab.errors import masked
from hyperlab.layer_stats import LayerStats
from hyperlab.loop import Listener

if TYPE_CHECKING:
    from hyperlab.build import Parts
    from hyperlab.job import Job
    from hyperlab.record import Record
    from hyperlab.schema import Config


@dataclass
class Hearing:
    """A run's listeners, and those of them the run reads again after training."""

    listeners: Sequence[Listener]
    progress: display.ProgressDisplay | None
    stopper: EarlyStopping | None
    stats: LayerStats | None

    def stop(self) -> bool:
        """Whether training ends after this epoch (early stopping says so)."""
        return self.stopper is not None and self.stopper.stopping

    def report_layers(self, record: Record, show: bool) -> None:
        """With diagnostics=layers: the per-layer plot (layers.png in the run's directory,
        an MLflow artifact) and, shown, the last epoch's statistics as a table."""
        if not self.stats:
            return
        history = self.stats.history
        path = layer_stats.draw(history, record.out / "layers.png", record.title)
        if record.tracker:
            record.tracker.log_files([path])
        if show:
            layer_stats.show(history)
            display.console.print(f"per-layer plot: {display.plain(str(path))}", soft_wrap=True)


def hearing(
    config: Config,
    parts: Parts,
    generator: torch.Generator,
    job: Job,
    record: Record,
    start_epoch: int,
) -> Hearing:
    """The run's listeners. Early stopping decides before the checkpointer, which then
    saves the epoch training stops at; the checkpointer saves before a pruner among the
    job's listeners may stop the run."""
    tracker = record.tracker
    stopper = early_stopping(config, parts.model)
    stopping: Callable[[], bool] = (lambda: stopper.stopping) if stopper else (lambda: False)
    if stopper and job.resume:
        said = stopper.resume(job.resume)
        if config.progress:
            display.console.print(said, soft_wrap=True, highlight=False)
    progress = None
    if config.progress:
        progress = display.ProgressDisplay(config.epochs, start_epoch, stopping=stopping)
    stats = None
    if config.diagnostics == "layers":
        data = parts.data
        stats = LayerStats(
            parts.model,
            data.x_train,
            data.y_train,
            tracker.log_metrics if tracker else _ignore,
            start_epoch,
        )
    checkpointer = None

    def saved(path: Path) -> None:
        if tracker:
            tracker.log_files([path], CHECKPOINT_DIR)
        if progress:
            display.console.print(f"checkpoint: {display.plain(str(path))}", soft_wrap=True)

    if config.checkpoint.every:
        checkpointer = Checkpointer(
            record.out / CHECKPOINT_DIR,
            config.checkpoint.every,
            config.epochs,
            parts.model,
            parts.optimizer,
            generator,
            # A checkpoint replays its run's overrides on resume, and is logged to MLflow:
            # an override holding a password stays out (give it again).
            [o for o in job.overrides if masked(o) == o],
            run_id=(lambda: tracker.run_id) if tracker else (lambda: ""),
            on_saved=saved,
            history=record.prior,
            stopping=stopping,
            early_stopping=stopper.kept if stopper else lambda: None,
        )
    found = [tracker, stopper, stats, checkpointer, *job.listeners, progress]
    return Hearing([x for x in found if x is not None], progress, stopper, stats)


def _ignore(metrics: object, step: int) -> None:
    pass
