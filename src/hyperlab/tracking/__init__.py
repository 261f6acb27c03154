"""MLflow records: one run per job, written by a separate writer process.

- tracker.py: the run client. A Tracker per run, fed by the training loop; the handle on
  this process's writer process; drain() waits until what was sent is written.
- writer_process.py: the writer process (`python -m hyperlab.tracking.writer_process`),
  which does MLflow's calls on another core than the training loop's.
- store.py: the writer's MLflow clients, experiments, and retries while a store is down.
- rows.py: the writer's bulk path into a database store: metric rows, and a population's
  runs created and ended in one transaction each.
- metadata.py: what a run records besides its metrics: params, default tags, versions.

Importing this package imports no MLflow: the CLI's --help and the writer process's
start stay fast (MLflow is imported where a store is opened).
"""

from __future__ import annotations

from hyperlab.tracking.metadata import (
    PARENT_RUN_ID,
    PARENT_TAG,
    default_tags,
    git_commit,
    params_of,
    version_changes,
    versions,
)
from hyperlab.tracking.store import client
from hyperlab.tracking.tracker import (
    Tracker,
    TrackingError,
    batched,
    drain,
    start_run,
    writer,
)

__all__ = [
    "PARENT_RUN_ID",
    "PARENT_TAG",
    "Tracker",
    "TrackingError",
    "batched",
    "client",
    "default_tags",
    "drain",
    "git_commit",
    "params_of",
    "start_run",
    "version_changes",
    "versions",
    "writer",
]
