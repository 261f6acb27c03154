"""In-process studies for the sampler benchmarks: hyperlab's own pieces, no CLI, no MLflow.

Each study runs the sweep worker's own cycle (hyperlab.search.worker: claim, sample,
compose, train, tell) on a journal file in a temporary directory, its trial configs composed
with Hydra's compose API as a sweep worker composes them, its sampler seeded as a sweep's
first worker's, training on one thread with tracking and progress off. Studies run in a
pool of spawned processes (one torch thread each).

Training is deterministic (the same config and training seed give the same value), so a
process trains each distinct configuration once and reuses its value when a later study
samples it again (the grid's points do, seed after seed).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# The training seed: fixed, so that a configuration scores the same in every study.
TRAIN_SEED = 0


@dataclass(frozen=True)
class Task:
    """A search space on a data set and model, as `hyperlab` overrides."""

    name: str
    overrides: tuple[str, ...]
    # parameter -> grid points, for sampler=grid; "budget" sizes a 2-D grid to the budget
    grid: str = ""


@dataclass(frozen=True)
class StudySpec:
    task: Task
    sampler: str
    seed: int
    n_trials: int


@dataclass
class StudyResult:
    task: str
    sampler: str
    seed: int
    values: list[float]  # per trial in trial order; NaN for a failed (diverged) trial
    params: list[dict[str, Any]]  # per trial: the override keys and values
    seconds: float  # wall time of the whole study in its process
    sample_seconds: float  # of which the sampler (its construction, ask + suggest, tell)
    trained: int  # trials actually trained (others came from the process's cache)
    extra: dict[str, Any] = field(default_factory=dict)


def grid_side(n_trials: int, dims: int) -> int:
    """Points per parameter of a `dims`-dimensional grid of at most n_trials points."""
    side = 2
    while (side + 1) ** dims <= n_trials:
        side += 1
    return side


_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}  # -> worker.Outcome


def _init_worker() -> None:
    import optuna
    import torch

    import hyperlab.cli  # noqa: F401  (registers the schema)

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")


def run_study(spec: StudySpec) -> StudyResult:
    """One study of spec.n_trials trials, in this process."""
    import tempfile
    from pathlib import Path

    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from hyperlab.cli import CONFIG_DIR
    from hyperlab.search import setup as study_setup
    from hyperlab.search import worker
    from hyperlab.search.study import Retry
    from hyperlab.search.sweeper import hydra_choices, hydra_compose
    from hyperlab.validate import validate

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(CONFIG_DIR, version_base=None):
        base = [
            *spec.task.overrides,
            f"sampler={spec.sampler}",
            "tracking.enabled=false",
            "tracking.curve=false",
            "progress=false",
            "threads=1",
            f"seed={TRAIN_SEED}",
            f"sweep.n_trials={spec.n_trials}",
            f"sweep.seed={spec.seed}",
            f"sweep.storage={Path(tmp) / 'journal.log'}",
            "sweep.max_failure_rate=1.0",  # diverged samples are part of what is measured
        ]
        cfg, choices = hydra_compose("config", base)
        if spec.sampler == "grid" and spec.task.grid == "budget":
            names = list(cfg.search.params)
            side = grid_side(spec.n_trials, len(names))
            with open_dict(cfg):
                for name in names:
                    cfg.search.params[name]["grid"] = side
        config = validate(cfg)
        setup = study_setup.setup_of(config, base)
        retry = Retry(setup.url, 60.0)
        t = time.perf_counter()
        study = study_setup.load_study(config, setup, 0, retry)
        built = time.perf_counter() - t  # the sampler's construction: a grid builds its points
        groups = {g for g in choices if not g.startswith("hydra/")}
        w = worker.Worker(
            cfg=config,
            setup=setup,
            study=study,
            retry=retry,
            base=base,
            compose=study_setup.TrialComposer(lambda o: hydra_compose("config", o), base, groups),
            root_choices=hydra_choices("config", []),
            fixed=choices,
            output_dir=Path(tmp),
            parent=None,
        )
        train = _Cached(spec.task.name)
        worker.run(w, train)
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    values = [math.nan if t.value is None else float(t.value) for t in trials]
    params = [train.values[t.number] for t in trials]
    sampling = built + sum(w.seconds.get(k, 0.0) for k in ("claim", "sample", "tell"))
    extra: dict[str, Any] = {}
    if spec.sampler == "grid":
        extra["grid_points"] = math.prod(len(p.grid_points()) for p in setup.params)
    return StudyResult(
        spec.task.name,
        spec.sampler,
        spec.seed,
        values,
        params,
        time.perf_counter() - start,
        sampling,
        train.trained,
        extra,
    )


class _Cached:
    """The worker's train function, training each distinct configuration once per process
    (training is deterministic): a later trial with the same values gets the same outcome."""

    def __init__(self, task: str) -> None:
        self.task, self.trained = task, 0
        self.values: dict[int, dict[str, Any]] = {}

    def __call__(self, w: Any, batch: Sequence[Any]) -> list[Any]:
        from hyperlab.search import worker

        outcomes = []
        for c in batch:
            self.values[c.trial.number] = dict(c.values)
            key = (self.task, tuple(sorted((k, repr(v)) for k, v in c.values.items())))
            if key not in _CACHE:
                _CACHE[key] = worker.train_trial(w, c)
                self.trained += 1
            outcomes.append(_CACHE[key])
        return outcomes


def run_studies(specs: Sequence[StudySpec]) -> list[StudyResult]:
    """Studies one after the other in this process: those of one task and seed share
    configurations (samplers seeded alike start alike), which the cache then trains once."""
    return [run_study(spec) for spec in specs]


def run_all(jobs: Sequence[Sequence[StudySpec]], processes: int) -> Iterable[list[StudyResult]]:
    """Run each job's studies in one of `processes` spawned processes (one torch thread
    each), yielding each job's results as it finishes. Jobs are handed out in order: put
    the long ones first."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(run_studies, jobs)
