"""In-process studies for the sampler benchmarks: hyperlab's own pieces, no CLI, no MLflow.

Each study composes its trial configs with Hydra's compose API (as a sweep worker does, via
sweep._Composer), samples with the configured sampler seeded by `sweep.make_sampler`, and
trains with `hyperlab.run.run` on one thread, tracking and progress off. Studies run in a pool
of spawned processes (one torch thread each).

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


_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}


def _init_worker() -> None:
    import optuna
    import torch

    import hyperlab.cli  # noqa: F401  (registers the schema)

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")


def run_study(spec: StudySpec) -> StudyResult:
    """One study of spec.n_trials trials, in this process."""
    import optuna
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict
    from optuna.trial import TrialState

    from hyperlab import sweep
    from hyperlab.cli import CONFIG_DIR
    from hyperlab.run import Job, run
    from hyperlab.search import space

    base = [
        *spec.task.overrides,
        f"sampler={spec.sampler}",
        "tracking.enabled=false",
        "progress=false",
        "threads=1",
        f"seed={TRAIN_SEED}",
        f"sweep.n_trials={spec.n_trials}",
        f"sweep.seed={spec.seed}",
    ]
    start = time.perf_counter()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        with_hydra = compose("config", overrides=base, return_hydra_config=True)
        choices = with_hydra.hydra.runtime.choices
        groups = {g for g in choices if not g.startswith("hydra/")}
        fixed = {g: c for g, c in choices.items() if c is not None}
        cfg = compose("config", overrides=base)
        if spec.sampler == "grid" and spec.task.grid == "budget":
            names = list(cfg.search.params)
            side = grid_side(spec.n_trials, len(names))
            with open_dict(cfg):
                for name in names:
                    cfg.search.params[name]["grid"] = side
        setup = sweep.setup_of(cfg, base)
        t = time.perf_counter()
        study = optuna.create_study(
            sampler=sweep.make_sampler(cfg, setup, worker=0), direction="maximize"
        )
        sampling, trained = time.perf_counter() - t, 0  # a grid builds its points here
        composer = sweep._Composer("config", base, groups)
        values: list[float] = []
        params: list[dict[str, Any]] = []
        for _ in range(setup.n_trials):
            t = time.perf_counter()
            trial = study.ask()
            chosen = space.suggest(trial, setup.params, fixed=fixed, naive=setup.naive)
            sampling += time.perf_counter() - t
            key = (spec.task.name, tuple(sorted((k, repr(v)) for k, v in chosen.items())))
            if key not in _CACHE:
                tcfg, _ = composer(chosen)
                try:
                    _CACHE[key] = run(tcfg, Job())
                except Exception:  # a bad sample fails its trial, as in a sweep
                    _CACHE[key] = math.nan
                trained += 1
            value = _CACHE[key]
            t = time.perf_counter()
            if math.isnan(value):
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
            sampling += time.perf_counter() - t
            values.append(value)
            params.append(dict(chosen))
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
        trained,
        extra,
    )


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
