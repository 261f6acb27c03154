"""Checkpoints for babysitting one model ("panda"): save every N epochs, resume with nudged
hyperparameters.

A checkpoint holds what the next epoch needs to continue exactly: the model's and the
optimizer's state, the epochs done (the schedule is a function of the epoch), the random
states (torch's, the dropout stream's, the mini-batch shuffles'), early stopping's state
(Kept), the overrides of the run, so that a resume composes the same config with only the
user's changes on top, and the metrics of every epoch done, so that a resumed run's
learning curve and best epoch span the whole history.
Files are read back with torch.load(weights_only=True): plain tensors and containers, never
pickled code.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from hyperlab.errors import HyperlabError
from hyperlab.models import dropout_generator

FORMAT = "hyperlab-checkpoint/1"
DIR = "checkpoints"  # under the run's output dir, and the artifact path in MLflow
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# The fix for a checkpoint that cannot be used.
ANOTHER = (
    f"resume from another checkpoint of the run (saved as {DIR}/epoch_NNNN.pt in its run "
    "dir), or from the run dir for its latest"
)


class CheckpointError(HyperlabError):
    """A checkpoint that cannot be found, read or applied."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    path: Path
    epoch: int  # epochs completed: training resumes at epoch `epoch + 1`
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    optimizer_type: str
    torch_rng: torch.Tensor
    generator_rng: torch.Tensor
    overrides: list[str]
    run_id: str  # the MLflow run that wrote it ("" when tracking was off)
    # Metrics of epochs 1..epoch (empty from checkpoints saved before they were kept).
    history: list[dict[str, float]] = field(default_factory=list)
    # With early stopping: what it needs to carry on (None: saved without it).
    early_stopping: Kept | None = None
    # The dropout stream's state (models.seed_dropout; None: no dropout, or an older file).
    dropout_rng: torch.Tensor | None = None

    def restore(self, model: nn.Module, optimizer: Optimizer, generator: torch.Generator) -> None:
        """Put the saved states into freshly built parts."""
        try:
            model.load_state_dict(self.model)
        except RuntimeError as e:
            first = str(e).splitlines()[:3]
            raise CheckpointError(
                f"checkpoint {self.path} holds a different model: {' '.join(first)}",
                "resume with the model settings it was trained with (drop the model.*, "
                "normalization or dataset overrides)",
            ) from None
        # load_state_dict would take another optimizer's state and fail at the first step.
        if type(optimizer).__name__ != self.optimizer_type:
            raise CheckpointError(
                f"checkpoint {self.path} holds the state of another optimizer "
                f"({self.optimizer_type}, not {type(optimizer).__name__})",
                "resume with the optimizer it was trained with; change its lr or betas instead",
            )
        if self.early_stopping and not _fits(self.early_stopping.model, model.state_dict()):
            raise CheckpointError(
                f"checkpoint {self.path} is damaged: its early stopping weights (epoch "
                f"{self.early_stopping.best_epoch}) do not fit the model it holds",
                ANOTHER,
            )
        optimizer.load_state_dict(self.optimizer)
        torch.set_rng_state(self.torch_rng)
        generator.set_state(self.generator_rng)
        dropout = dropout_generator(model)
        if dropout is not None and self.dropout_rng is not None:
            dropout.set_state(self.dropout_rng.to(dropout.get_state().device))


def save(
    path: Path,
    *,
    epoch: int,
    model: nn.Module,
    optimizer: Optimizer,
    generator: torch.Generator,
    overrides: Sequence[str],
    run_id: str = "",
    history: Sequence[Mapping[str, float]] = (),
    early_stopping: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint after `epoch` epochs (with `early_stopping`, what it needs to
    carry on: see Kept); written to a temporary file and renamed, so a kill during the
    write leaves the previous checkpoint whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "optimizer_type": type(optimizer).__name__,
        "torch_rng": torch.get_rng_state(),
        "generator_rng": generator.get_state(),
        "overrides": list(overrides),
        "run_id": run_id,
        "history": [dict(h) for h in history],
    }
    dropout = dropout_generator(model)
    if dropout is not None:
        state["dropout_rng"] = dropout.get_state().cpu()
    if early_stopping:
        state["early_stopping"] = dict(early_stopping)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load(path: Path) -> Checkpoint:
    """Read a checkpoint without executing code; a missing, corrupted, foreign or
    incomplete file raises CheckpointError naming it. Its stored overrides are data: the
    caller composes and validates them as it does a command line (cli._resumed)."""
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}", "give a run dir, a checkpoint file or an MLflow run id"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a text file, a truncated zip, a pickle of objects: not ours
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'})",
            "the file is corrupted or was not written by hyperlab: resume from another "
            f"checkpoint (they are saved as {DIR}/epoch_NNNN.pt in the run dir)",
        ) from None
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a hyperlab checkpoint (no '{FORMAT}' format mark)",
            "resume from a file that hyperlab saved with checkpoint.every=N",
        )
    _check_fields(path, state)
    return Checkpoint(
        path=path,
        epoch=int(state["epoch"]),
        model=state["model"],
        optimizer=state["optimizer"],
        optimizer_type=str(state["optimizer_type"]),
        torch_rng=state["torch_rng"],
        generator_rng=state["generator_rng"],
        overrides=list(state["overrides"]),
        run_id=str(state["run_id"]),
        history=_history(path, state),
        early_stopping=_kept(path, state),
        dropout_rng=_dropout_rng(path, state),
    )


@dataclass(frozen=True)
class Kept:
    """Early stopping's state at a checkpoint: its best epoch so far and that epoch's
    weights, the epoch its patience counts from (a resumed stop's), and its metric."""

    best_epoch: int
    since: int
    metric: str
    model: dict[str, torch.Tensor]


def _kept(path: Path, state: Mapping[str, Any]) -> Kept | None:
    """Early stopping's state, where the checkpoint keeps it."""
    kept = state.get("early_stopping")
    if kept is None:
        return None
    epoch = state["epoch"]
    if not (
        isinstance(kept, Mapping)
        and _is_count(kept.get("best_epoch"))
        and 0 < kept["best_epoch"] <= epoch
        and _is_count(kept.get("since"))
        and kept["since"] <= epoch
        and isinstance(kept.get("metric"), str)
        and _FIELDS["model"][0](kept.get("model"))
        and kept["model"]
    ):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its early_stopping entry is not a best epoch "
            f"(1 to {epoch}), the epoch patience counts from, a metric and that best "
            "epoch's model state",
            ANOTHER,
        )
    return Kept(int(kept["best_epoch"]), int(kept["since"]), kept["metric"], dict(kept["model"]))


def _dropout_rng(path: Path, state: Mapping[str, Any]) -> torch.Tensor | None:
    rng = state.get("dropout_rng")
    if rng is not None and not _is_rng(rng):
        raise CheckpointError(
            f"checkpoint {path} is damaged: dropout_rng={type(rng).__name__} is not the "
            "dropout stream's random state (bytes)",
            ANOTHER,
        )
    return rng


def _fits(state: Mapping[str, torch.Tensor], model: Mapping[str, torch.Tensor]) -> bool:
    """Whether `state` has the model's entries, each of its shape and type."""
    return {k: (t.shape, t.dtype) for k, t in state.items()} == {
        k: (t.shape, t.dtype) for k, t in model.items()
    }


def _history(path: Path, state: Mapping[str, Any]) -> list[dict[str, float]]:
    """The per-epoch metrics a checkpoint keeps: one mapping of names to numbers an epoch
    done, or none from a file saved before they were kept."""
    history = state.get("history", [])
    if not (
        isinstance(history, list)
        and len(history) in (0, state["epoch"])
        and all(
            isinstance(h, Mapping)
            and all(isinstance(k, str) and type(v) in (float, int) for k, v in h.items())
            for h in history
        )
    ):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its history is not one mapping of metric names "
            f"to numbers for each of its {state['epoch']} epochs",
            ANOTHER,
        )
    return [{k: float(v) for k, v in h.items()} for h in history]


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_rng(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1


# What each field must hold: a file that says it is a checkpoint but was edited, or
# written by hand, fails here with the field named, not at the first use of it.
_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epoch": (_is_count, "the number of epochs done, an integer >= 0"),
    "model": (
        lambda v: (
            isinstance(v, Mapping)
            and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())
        ),
        "the model's state: names and tensors",
    ),
    "optimizer": (lambda v: isinstance(v, Mapping), "the optimizer's state"),
    "optimizer_type": (lambda v: isinstance(v, str) and v != "", "the optimizer's class name"),
    "torch_rng": (_is_rng, "torch's random state (bytes)"),
    "generator_rng": (_is_rng, "the shuffling generator's random state (bytes)"),
    "overrides": (
        lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v),
        "the run's overrides, a list of key=value strings",
    ),
    "run_id": (lambda v: isinstance(v, str), "the MLflow run id (a string)"),
}


def _check_fields(path: Path, state: Mapping[str, Any]) -> None:
    for key, (ok, holds) in _FIELDS.items():
        if key not in state:
            raise CheckpointError(
                f"checkpoint {path} is incomplete: it has no {key!r} ({holds})", ANOTHER
            )
        if not ok(state[key]):
            value = state[key]
            shown = repr(value) if isinstance(value, int | str | float) else type(value).__name__
            raise CheckpointError(
                f"checkpoint {path} is damaged: {key}={shown[:80]} is not {holds}", ANOTHER
            )


def _latest(directory: Path) -> Path | None:
    files = sorted(directory.glob("epoch_*.pt"))
    return files[-1] if files else None


def locate(ref: str, tracking_uri: str, runs: Path | None = None) -> Path:
    """The checkpoint `resume=` names: a checkpoint file, a run's output dir (its latest
    checkpoint), an MLflow run id (its latest checkpoint artifact, downloaded), or `last`:
    the newest checkpoint among the run dirs in `runs`."""
    if ref == "last" and runs is not None:
        return _last(runs)
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = _latest(path / DIR) or _latest(path)
        if found is None:
            raise CheckpointError(
                f"{path} holds no checkpoint ({DIR}/epoch_NNNN.pt)",
                "train with checkpoint.every=N to save one every N epochs",
            )
        return found
    if _RUN_ID.match(ref):
        return _download(ref, tracking_uri)
    raise CheckpointError(
        f"resume={ref}: no such file or directory, and not an MLflow run id",
        "give a run dir (outputs/runs/...), a checkpoint file, or a 32-character run id",
    )


def _last(runs: Path) -> Path:
    """The newest checkpoint file of any run dir in `runs` (a run that failed, or saved
    none, has none: the newest run dir is not always the run to continue)."""
    found = [f for d in runs.glob("*") if d.is_dir() and (f := _latest(d / DIR))]
    if not found:
        raise CheckpointError(
            f"resume=last: no run in {runs} has saved a checkpoint",
            "train with checkpoint.every=N to save one every N epochs, or give resume= "
            "a run dir, a checkpoint file or an MLflow run id",
        )
    return max(found, key=lambda f: f.stat().st_mtime_ns)


def _download(run_id: str, uri: str) -> Path:
    from hyperlab.tracking import client

    c = client(uri)
    try:
        names = sorted(a.path for a in c.list_artifacts(run_id, DIR) if a.path.endswith(".pt"))
    except Exception as e:
        raise CheckpointError(
            f"MLflow run {run_id} cannot be read at {uri}: {type(e).__name__}: {e}",
            "check the run id and tracking.uri (the store the run was recorded in)",
        ) from None
    if not names:
        raise CheckpointError(
            f"MLflow run {run_id} has no checkpoint artifacts",
            "train with checkpoint.every=N to save one every N epochs",
        )
    target = Path(tempfile.mkdtemp(prefix="hyperlab-resume-"))
    return Path(c.download_artifacts(run_id, names[-1], str(target)))


class Checkpointer:
    """A listener that saves a checkpoint every `every` epochs and after the last one (the
    one early stopping stops at, where it does), and hands each file to `on_saved` (e.g.
    to log it to MLflow)."""

    def __init__(
        self,
        directory: Path,
        every: int,
        epochs: int,
        model: nn.Module,
        optimizer: Optimizer,
        generator: torch.Generator,
        overrides: Sequence[str],
        run_id: Callable[[], str] = lambda: "",
        on_saved: Callable[[Path], None] = lambda path: None,
        history: Sequence[Mapping[str, float]] = (),
        stopping: Callable[[], bool] = lambda: False,
        early_stopping: Callable[[], Mapping[str, Any] | None] = lambda: None,
    ) -> None:
        self.directory, self.every, self.epochs = directory, every, epochs
        self.stopping = stopping  # early stopping ends training here: the last epoch
        self.early_stopping = early_stopping  # what early stopping needs to carry on
        self.model, self.optimizer, self.generator = model, optimizer, generator
        self.overrides, self.run_id, self.on_saved = list(overrides), run_id, on_saved
        self.saved: list[Path] = []
        self.history = [dict(h) for h in history]  # from epoch 1, a resumed run's included

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.history.append(dict(metrics))
        if epoch % self.every and epoch != self.epochs and not self.stopping():
            return
        path = save(
            self.directory / f"epoch_{epoch:04d}.pt",
            epoch=epoch,
            model=self.model,
            optimizer=self.optimizer,
            generator=self.generator,
            overrides=self.overrides,
            run_id=self.run_id(),
            # Resumed from a checkpoint that kept no history: this one keeps none either.
            history=self.history if len(self.history) == epoch else [],
            early_stopping=self.early_stopping(),
        )
        self.saved.append(path)
        self.on_saved(path)
