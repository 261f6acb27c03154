"""Job: what the caller of a run (the command, a sweeper's worker, a test) knows about it
beyond its config. Its own module so that what a run is made of (its record, its
listeners) can name it without importing the run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hyperlab.checkpoint import Checkpoint
    from hyperlab.loop import Listener
    from hyperlab.tracking import Tracker


@dataclass
class Job:
    """What the caller knows about a job beyond its config."""

    choices: Mapping[str, str] = field(default_factory=dict)  # group -> option
    overrides: Sequence[str] = ()
    command: str = "hyperlab"
    parent_run_id: str | None = None
    listeners: Sequence[Listener] = ()  # e.g. a sweeper's pruning reporter
    tags: Mapping[str, str] = field(default_factory=dict)
    run_name: str = ""  # default: the overrides
    output_dir: Path | None = None  # learning curve and checkpoints (default: a temp dir)
    resume: Checkpoint | None = None  # continue from this checkpoint
    announced: bool = False  # its header line is printed already (by the command, at once)
    # Told of the run's MLflow client once the run is opened: a caller whose run is then
    # stopped or fails learns that the run recorded it (and its id, from the client).
    on_opened: Callable[[Tracker], None] | None = None
