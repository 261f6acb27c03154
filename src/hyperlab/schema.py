"""The typed root of the config, stored in Hydra's ConfigStore as `schema`.

conf/config.yaml lists it first in its defaults, so a typo (`epoch=3`) or a wrong type
(`lr=fast`) fails when the config is composed. Ranges are checked by hyperlab.validate,
which returns a `Config`: the one typed object everything below the entry points takes
(attributes, not string keys), and which nothing below validates again. A group's node
(dataset, model, optimizer, ...) stays a mapping: it is the call build.py makes, typed by
the signature of the function its `_target_` names.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from hyperlab.ranges import (
    AVERAGING,
    COUNT,
    DEVICE,
    METRIC,
    NATURAL,
    NON_NEGATIVE,
    NUMPY_SEED,
    POSITIVE,
    TORCH_SEED,
    UNIT,
    Range,
    bounded,
    interval,
    one_of,
)
from hyperlab.search.budget import DURATION

# The keys that are not model settings, in one place. Config nodes that define the study,
# not the trained model: a replay line leaves out every override of them (`sampler=grid`,
# `sampler.budgets=[...]`, `+search.params.lr.grid=2`, `sweep.workers=2`,
# `hydra/launcher=...`), which a single run would refuse or ignore.
STUDY_GROUPS = ("search", "sampler", "pruner")
STUDY_NODES = (*STUDY_GROUPS, "sweep", "pbt", "hydra")
# task=retest's own settings, not its trials'.
RETEST_KEYS = ("task", "study", "top_k", "seeds")
# Left out of a run's MLflow params: Hydra's node and where the run is recorded.
UNRECORDED = ("hydra", "tracking")
# The key of a group's node that names its chosen option (`init.scheme=he`), for the
# recorded params and the checks that read it: not an argument of the function the node's
# `_target_` names, and equal to that function's name (hyperlab.validate).
LABELS = {"init": "scheme", "normalization": "kind", "augment": "kind"}


# A root setting's range is its field's (ranges.bounded); a group's settings are bounded by
# the signature of the function their `_target_` names (hyperlab.ranges).
TASKS = Range(
    one_of("train", "gradcheck", "retest", "studies"),
    "train, gradcheck, retest or studies",
    "gradcheck",
)
DIRECTIONS = Range(one_of("auto", "maximize", "minimize"), "auto, maximize or minimize", "maximize")
SAMPLER_SEED = dataclasses.replace(NUMPY_SEED, allowed=NUMPY_SEED.allowed + ": the samplers' seeds")


@dataclass
class Objective:
    metric: str = bounded("dev_acc", METRIC)
    # auto: minimize a loss, maximize an accuracy (validate.direction_of)
    direction: str = bounded("auto", DIRECTIONS)
    over_seeds: str = bounded("mean", Range(one_of("mean", "bound"), "mean or bound", "bound"))
    # A multi-objective study: two or more metrics (hyperlab.objectives), each with its
    # direction ([] or auto: each metric's own). Checked and resolved by validate().
    metrics: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)
    z: float = bounded(1.0, NON_NEGATIVE)


@dataclass
class Tracking:
    enabled: bool = True
    uri: str = "sqlite:///outputs/mlflow.db"
    experiment: str = "hyperlab"
    artifacts: str = "outputs/mlartifacts"
    flush_seconds: float = bounded(1.0, NON_NEGATIVE)  # how often metrics go to the store
    curve: bool = True  # draw each run's learning curve (PNG artifact)


@dataclass
class GradCheck:
    eps: float = bounded(1e-7, POSITIVE)
    batch: int = bounded(32, COUNT)
    max_components: int = bounded(0, NATURAL)
    after_epochs: int = bounded(0, NATURAL)
    fail_at: float = bounded(1e-3, POSITIVE)


@dataclass
class CheckpointSettings:
    every: int = bounded(0, dataclasses.replace(NATURAL, allowed="an integer >= 0 (0: none)"))


# Early stopping watches a dev metric: the training set's keeps improving as it overfits.
DEV_METRIC = Range(one_of("dev_loss", "dev_acc"), "dev_loss or dev_acc", "dev_loss")


@dataclass
class EarlyStoppingSettings:
    patience: int = bounded(0, dataclasses.replace(NATURAL, allowed="an integer >= 0 (0: off)"))
    metric: str = bounded("dev_loss", DEV_METRIC)
    min_delta: float = bounded(0.0, NON_NEGATIVE)


@dataclass
class Sweep:
    n_trials: int = bounded(20, COUNT)
    workers: int = bounded(1, COUNT)
    storage: str = ""
    study: str = ""
    seed: int = bounded(0, SAMPLER_SEED)
    dry_run: bool = False
    max_failure_rate: float = bounded(0.5, UNIT)
    # RDB: a dead worker's trial is failed after twice this
    heartbeat_seconds: int = bounded(60, COUNT)
    # > 0: a dead worker's trial is enqueued again, up to this often
    retry_failed: int = bounded(0, NATURAL)
    # how long a worker retries an unreachable storage
    retry_seconds: float = bounded(60.0, NON_NEGATIVE)
    worker: int = 0  # which worker a sweep job is: set by the sweeper
    # Caviar in one process: each worker trains this many trials at a time as one stacked
    # model, where their configs allow (hyperlab.search.caviar); 1 trains them one by one.
    population: int = bounded(1, COUNT)
    # pbt: each population trains as population-based training (hyperlab.pbt): every
    # pbt.interval epochs its bottom members copy its top members and perturb their values.
    schedule: str = bounded("none", Range(one_of("none", "pbt"), "none or pbt", "pbt"))
    # Wall time after which workers stop claiming trials (hyperlab.search.budget): 90s, 30m,
    # 2h or seconds; "" or 0 for none. The sweeper hands its workers the absolute deadline.
    timeout: str = field(default="", metadata={"range": DURATION})
    deadline: float = bounded(0.0, NON_NEGATIVE)  # time.time() to stop at: set by the sweeper
    # Enqueue the best trials of an earlier study first (hyperlab.search.warm_start).
    warm_start: str = ""
    warm_start_storage: str = ""  # "" = this study's storage
    warm_start_top: int = bounded(5, COUNT)


QUANTILE = Range(interval(0, 0.5, low_open=True), "a number in (0, 0.5]", "0.25")


@dataclass
class PbtSettings:
    """Population-based training (sweep.schedule=pbt): hyperlab.pbt."""

    interval: int = bounded(5, COUNT)  # epochs between exploits
    # The bottom fraction of the population that copies the top fraction (at most 0.5).
    quantile: float = bounded(0.25, QUANTILE)
    # Explore: each value of a copied member is scaled by one of these, on its own scale.
    perturb: list[float] = field(default_factory=lambda: [0.8, 1.2])


@dataclass
class Config:
    # Config groups: each option file brings its own keys, checked by hyperlab.validate.
    dataset: Any = MISSING
    model: Any = MISSING
    init: Any = MISSING
    normalization: Any = MISSING
    regularization: Any = MISSING
    augment: Any = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    search: Any = None
    sampler: Any = MISSING
    pruner: Any = MISSING
    experiment: Any = None

    task: str = bounded("train", TASKS)
    # Packages (prefixes ending in ".") or exact names whose classes a config may build,
    # beyond hyperlab's own: hyperlab.allowlist. Only the live command line sets it.
    allow_targets: list[str] = field(default_factory=list)
    gradcheck: GradCheck = field(default_factory=GradCheck)
    lr: float = bounded(1e-3, POSITIVE)
    epochs: int = bounded(20, COUNT)
    batch_size: int = bounded(64, COUNT)
    seed: int = bounded(0, TORCH_SEED)
    # Values that change at given epochs (hyperlab.stages): a PBT trial's replay line sets
    # them, e.g. [{epoch:11,lr:0.02,beta1:0.95}]; checked by hyperlab.stages.check.
    stages: list[dict[str, Any]] = field(default_factory=list)
    repeats: int = bounded(1, COUNT)
    objective: Objective = field(default_factory=Objective)
    study: str = ""
    top_k: int = bounded(5, COUNT)
    seeds: int = bounded(3, COUNT)
    bayes_error: float = bounded(0.0, AVERAGING)
    diagnosis_threshold: float = bounded(0.05, UNIT)
    early_stopping: EarlyStoppingSettings = field(default_factory=EarlyStoppingSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    resume: str = ""
    # 0: one for a single model, the cores split between workers for a large stack.
    threads: int = bounded(0, NATURAL)
    # What runs train on: auto is the first GPU where there is one, else the CPU.
    device: str = bounded("auto", DEVICE)
    progress: bool = True
    # layers: each layer's activation and gradient RMS and update ratio, per epoch
    diagnostics: str = bounded("none", Range(one_of("none", "layers"), "none or layers", "layers"))
    tracking: Tracking = field(default_factory=Tracking)
    sweep: Sweep = field(default_factory=Sweep)
    pbt: PbtSettings = field(default_factory=PbtSettings)


def register() -> None:
    """Store the schema where conf/config.yaml's defaults list finds it."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=Config)


def typed(plain: Mapping[str, Any]) -> Config:
    """The Config of a resolved, validated config (hyperlab.validate calls this; build
    one through validate(), never by hand, so that every Config was checked)."""
    config: Config = _typed(Config, plain)
    return config


def bounds() -> dict[str, Range]:
    """The ranges of the root settings (dotted keys), from the schema's field metadata."""
    return dict(_bounds(Config, ""))  # a copy: the caller adds the groups' ranges to it


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Evaluated once per class: validate() runs for every trial of a study.
    return typing.get_type_hints(cls)


@functools.cache
def _bounds(cls: type, prefix: str) -> dict[str, Range]:
    hints = _hints(cls)
    out: dict[str, Range] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_bounds(hints[f.name], f"{prefix}{f.name}."))
        elif "range" in f.metadata:
            out[prefix + f.name] = f.metadata["range"]
    return out


def _typed(cls: type, node: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if f.name in node:
            value = node[f.name]
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = f.default
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = _typed(hint, value)  # type: ignore[arg-type]
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # `lr=1` in a plain mapping, as OmegaConf's float field does
        values[f.name] = value
    return cls(**values)


def as_dict(config: Config) -> dict[str, Any]:
    """The config as plain containers, as it is recorded (MLflow params, config.yaml)."""
    return dataclasses.asdict(config)
