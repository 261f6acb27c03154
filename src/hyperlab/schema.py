"""The typed root of the config, stored in Hydra's ConfigStore as `schema`.

conf/config.yaml lists it first in its defaults, so a typo (`epoch=3`) or a wrong type
(`lr=fast`) fails when the config is composed. Ranges are checked by hyperlab.validate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

# The keys that are not model settings, in one place. Config nodes that define the study,
# not the trained model: a replay line leaves out every override of them (`sampler=grid`,
# `sampler.budgets=[...]`, `+search.params.lr.grid=2`, `sweep.workers=2`,
# `hydra/launcher=...`), which a single run would refuse or ignore.
STUDY_GROUPS = ("search", "sampler", "pruner")
STUDY_NODES = (*STUDY_GROUPS, "sweep", "hydra")
# task=retest's own settings, not its trials'.
RETEST_KEYS = ("task", "study", "top_k", "seeds")
# Left out of a run's MLflow params: Hydra's node and where the run is recorded.
UNRECORDED = ("hydra", "tracking")
# The key of a group's node that names its chosen option (`init.scheme=he`), for the
# recorded params and the checks that read it: not an argument of the function the node's
# `_target_` names, and equal to that function's name (hyperlab.validate).
LABELS = {"init": "scheme", "normalization": "kind"}


@dataclass
class Objective:
    metric: str = "dev_acc"
    direction: str = "auto"  # auto: minimize a loss, maximize an accuracy (validate.py)
    over_seeds: str = "mean"
    z: float = 1.0


@dataclass
class Tracking:
    enabled: bool = True
    uri: str = "sqlite:///outputs/mlflow.db"
    experiment: str = "hyperlab"
    artifacts: str = "outputs/mlartifacts"
    flush_seconds: float = 1.0  # how often metrics go to the store
    curve: bool = True  # draw each run's learning curve (PNG artifact)


@dataclass
class GradCheck:
    eps: float = 1e-7
    batch: int = 32
    max_components: int = 0
    after_epochs: int = 0
    fail_at: float = 1e-3


@dataclass
class CheckpointSettings:
    every: int = 0


@dataclass
class Sweep:
    n_trials: int = 20
    workers: int = 1
    storage: str = ""
    study: str = ""
    seed: int = 0
    dry_run: bool = False
    max_failure_rate: float = 0.5
    heartbeat_seconds: int = 60  # RDB: a dead worker's trial is failed after twice this
    retry_failed: int = 0  # > 0: a dead worker's trial is enqueued again, up to this often
    retry_seconds: float = 60.0  # how long a worker retries an unreachable storage
    worker: int = 0  # which worker a sweep job is: set by the sweeper
    # Caviar in one process: each worker trains this many trials at a time as one stacked
    # model, where their configs allow (hyperlab.search.caviar); 1 trains them one by one.
    population: int = 1


@dataclass
class Root:
    # Config groups: each option file brings its own keys, checked by hyperlab.validate.
    dataset: Any = MISSING
    model: Any = MISSING
    init: Any = MISSING
    normalization: Any = MISSING
    regularization: Any = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    search: Any = None
    sampler: Any = MISSING
    pruner: Any = MISSING
    experiment: Any = None

    task: str = "train"
    # Packages (prefixes ending in ".") or exact names whose classes a config may build,
    # beyond hyperlab's own: hyperlab.allowlist. Only the live command line sets it.
    allow_targets: list[str] = field(default_factory=list)
    gradcheck: GradCheck = field(default_factory=GradCheck)
    lr: float = 1e-3
    epochs: int = 20
    batch_size: int = 64
    seed: int = 0
    repeats: int = 1
    objective: Objective = field(default_factory=Objective)
    study: str = ""
    top_k: int = 5
    seeds: int = 3
    bayes_error: float = 0.0
    diagnosis_threshold: float = 0.05
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    resume: str = ""
    threads: int = 1
    progress: bool = True
    tracking: Tracking = field(default_factory=Tracking)
    sweep: Sweep = field(default_factory=Sweep)


def register() -> None:
    """Store the schema where conf/config.yaml's defaults list finds it."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=Root)
