"""What each section of the benchmark report measures, into the dict results.json holds
for it: sections 1-2 with in-process studies (inprocess.py), 3-6 through the `hyperlab`
command (commands.py), and the machine they ran on."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import resource
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import commands
import inprocess
from figures import WITHIN, best_after, nan_low, pct, trials_to_reach
from inprocess import StudyResult, StudySpec, Task

SAMPLERS = ("grid", "random", "log_uniform", "tpe", "gp", "cmaes", "qmc", "coarse_to_fine")
# The order a process runs one seed's studies in: log_uniform first, since tpe, gp, cmaes,
# coarse_to_fine and qmc seeded alike start with its trials (trained once, then reused).
RUN_ORDER = ("log_uniform", "tpe", "gp", "cmaes", "coarse_to_fine", "qmc", "random", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
CHECKPOINTS = (10, 25, 50)
START = time.perf_counter()


@dataclass(frozen=True)
class Budget:
    """How much each section measures."""

    seeds: int  # 1. sampler seeds per task
    trials: int  # 1. trial budget per study
    digits_epochs: int  # 1. digits/adam_full
    moons_epochs: int  # 1. moons/lr_beta
    lesson_seeds: int  # 2.
    lesson_trials: int  # 2.
    lesson_epochs: int  # 2.
    prune_seeds: int  # 3.
    prune_trials: int  # 3.
    prune_epochs: int  # 3.
    overhead_trials: int  # 4. the small study; the large one has twice as many
    overhead_epochs: int  # 4.
    overhead_reps: int  # 4.
    scale_trials: int  # 5.
    scale_epochs: int  # 5.
    startup_reps: int  # 6.
    ceiling: bool  # 5. also measure two hand-written loops against one (20 s)
    pruners: tuple[str, ...] = PRUNERS  # 3.
    processes: int = 2  # 1.-2. parallel in-process studies


def log(message: str) -> None:
    """A progress line, stamped with the minutes and seconds since the run began."""
    elapsed = time.perf_counter() - START
    print(f"[{int(elapsed // 60):3d}:{int(elapsed % 60):02d}] {message}", flush=True)


# --- 1 and 2: in-process studies ---------------------------------------------------------------


def tasks(b: Budget) -> dict[str, Task]:
    """The sampler tasks (1) and the lesson's (2), as hyperlab overrides."""
    return {
        "digits": Task("digits/adam_full", ("search=adam_full", f"epochs={b.digits_epochs}")),
        "moons": Task(
            "moons/lr_beta",
            (
                "search=lr_beta",
                "dataset=moons",
                "dataset.n_samples=2000",
                "model.hidden_units=[10,5]",
                "batch_size=128",
                f"epochs={b.moons_epochs}",
            ),
            grid="budget",
        ),
        "lesson": Task("digits/lr_eps", ("search=lr_eps", f"epochs={b.lesson_epochs}")),
    }


def inprocess_studies(b: Budget) -> list[StudyResult]:
    """Every study of sections 1 and 2 in b.processes processes: one job per task and seed
    (its samplers in RUN_ORDER), the costly digits jobs first."""
    t = tasks(b)
    jobs: list[list[StudySpec]] = [
        [StudySpec(t[task], s, seed, b.trials) for s in RUN_ORDER]
        for task in ("digits", "moons")
        for seed in range(b.seeds)
    ]
    for part in range(min(2, b.lesson_seeds)):  # the grid's points recur: few jobs
        jobs.append(
            [
                StudySpec(t["lesson"], s, seed, b.lesson_trials)
                for seed in range(part, b.lesson_seeds, 2)
                for s in ("grid", "log_uniform")
            ]
        )
    results = []
    for i, done in enumerate(inprocess.run_all(jobs, b.processes), 1):
        log(f"  job {i}/{len(jobs)}: {done[0].task} seed(s) {sorted({r.seed for r in done})}")
        for r in done:
            best = pct(best_after(r.values, len(r.values)))
            log(
                f"    {r.sampler:<14} seed {r.seed}: best {best} in {len(r.values)} trials "
                f"({r.seconds:.1f} s, {r.trained} trained)"
            )
        results += done
    return results


def efficiency(results: list[StudyResult], b: Budget) -> dict[str, Any]:
    """1. Per task and sampler: the best value after each checkpoint over seeds, and the
    trials needed to come within half a point of the best value any study found."""
    out: dict[str, Any] = {"checkpoints": [c for c in CHECKPOINTS if c < b.trials] + [b.trials]}
    for key in ("digits", "moons"):
        task = tasks(b)[key]
        runs = [r for r in results if r.task == task.name]
        top = max(best_after(r.values, len(r.values)) for r in runs)
        per_sampler: dict[str, Any] = {}
        for s in SAMPLERS:
            rs = sorted((r for r in runs if r.sampler == s), key=lambda r: r.seed)
            needed = [trials_to_reach(r.values, top - WITHIN) for r in rs]
            per_sampler[s] = {
                "trials": max(len(r.values) for r in rs),
                "best_after": {
                    str(c): [best_after(r.values, c) for r in rs] for c in out["checkpoints"]
                },
                "trials_to_within": needed,
                "median_trials_to_within": statistics.median(
                    math.inf if n is None else n for n in needed
                ),
                "seconds": [r.seconds for r in rs],
                "sampler_seconds": [r.sample_seconds for r in rs],
                "failed": [sum(math.isnan(v) for v in r.values) for r in rs],
                "grid_points": rs[0].extra.get("grid_points"),
                "values": [r.values for r in rs],
                "best_params": [
                    r.params[max(range(len(r.values)), key=lambda i: nan_low(r.values[i]))]
                    for r in rs
                ],
            }
        out[key] = {
            "task": task.name,
            "overrides": list(task.overrides),
            "best_any": top,
            "target": top - WITHIN,
            "samplers": per_sampler,
        }
    return out


def lesson(results: list[StudyResult], b: Budget) -> dict[str, Any]:
    """2. Grid against random search (log_uniform) on lr_eps: distinct values of each
    parameter tried, and the best value, over seeds."""
    task = tasks(b)["lesson"]
    out: dict[str, Any] = {"task": task.name, "overrides": list(task.overrides), "samplers": {}}
    for s in ("grid", "log_uniform"):
        rs = sorted(
            (r for r in results if r.task == task.name and r.sampler == s), key=lambda r: r.seed
        )
        out["samplers"][s] = {
            "trials": [len(r.values) for r in rs],
            "distinct_lr": [len({p["lr"] for p in r.params}) for r in rs],
            "distinct_eps": [len({p["optimizer.eps"] for p in r.params}) for r in rs],
            "best": [best_after(r.values, len(r.values)) for r in rs],
            "best_lr": [
                r.params[max(range(len(r.values)), key=lambda i: r.values[i])]["lr"] for r in rs
            ],
        }
    return out


def samplers_section(b: Budget) -> dict[str, Any]:
    """Sections 1 and 2, from one set of in-process studies."""
    studies = inprocess_studies(b)
    return {"efficiency": efficiency(studies, b), "lesson": lesson(studies, b)}


# --- 3 to 6: the hyperlab command -------------------------------------------------------------


def pruning(b: Budget) -> dict[str, Any]:
    """3. The same study (log_uniform, so that every pruner sees the same configurations in
    the same order) with each pruner; seeds interleaved so that drift hits all alike."""
    base = [
        "search=adam_full",
        "sampler=log_uniform",
        f"sweep.n_trials={b.prune_trials}",
        f"epochs={b.prune_epochs}",
    ]
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in b.pruners}
    for seed in range(b.prune_seeds):
        for p in b.pruners:
            r = commands.study([*base, f"pruner={p}", f"sweep.seed={seed}"], f"prune-{p}")
            log(
                f"  pruner={p} seed {seed}: {r.epochs} epochs, best {pct(r.best)}, "
                f"{r.wall:.1f} s, {r.states()}"
            )
            runs[p].append(
                {
                    "seed": seed,
                    "epochs": r.epochs,
                    "wall": r.wall,
                    "span": r.span,
                    "best": r.best,
                    "states": r.states(),
                }
            )
    return {"command": "hyperlab " + " ".join([*base, "pruner=P", "sweep.seed=S"]), "runs": runs}


def overhead(b: Budget) -> dict[str, Any]:
    """4. Marginal cost of a trial: (time of a 2N-trial study - time of an N-trial one) / N,
    for hyperlab (MLflow on, as by default) and for Optuna with a hand-written loop; in
    wall time (the goal's measure) and in CPU time (which other users of the machine
    disturb less)."""
    n = b.overhead_trials
    args = ["search=lr", "sampler=log_uniform", f"epochs={b.overhead_epochs}"]
    reps: list[dict[str, Any]] = []
    large: commands.StudyRun | None = None
    for rep in range(b.overhead_reps):
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        floor_trials: list[float] = []
        order = [("hyperlab", n), ("hyperlab", 2 * n), ("floor", n), ("floor", 2 * n)]
        for who, trials in order if rep % 2 == 0 else order[::-1]:
            key = f"{who}_{trials}"
            if who == "hyperlab":
                r = commands.study([*args, f"sweep.n_trials={trials}"], f"overhead-{trials}")
                wall[key], cpu[key] = r.wall, r.cpu
                if trials == 2 * n:
                    large = r
            else:
                timed, per_trial = commands.floor_study(trials, b.overhead_epochs)
                wall[key], cpu[key] = timed.wall, timed.cpu
                if trials == 2 * n:
                    floor_trials = per_trial
        marginal = {
            f"{who}_{m}": (t[f"{who}_{2 * n}"] - t[f"{who}_{n}"]) / n
            for who in ("hyperlab", "floor")
            for m, t in (("wall", wall), ("cpu", cpu))
        }
        reps.append(
            {
                "wall": wall,
                "cpu": cpu,
                "marginal": marginal,
                "floor_trial_median": statistics.median(floor_trials),
            }
        )
        log(
            f"  round {rep}: marginal trial hyperlab {marginal['hyperlab_wall']:.3f} s "
            f"(CPU {marginal['hyperlab_cpu']:.3f}), floor {marginal['floor_wall']:.3f} s "
            f"(CPU {marginal['floor_cpu']:.3f})"
        )
    assert large is not None
    return {
        "command": "hyperlab " + " ".join([*args, "sweep.n_trials=N"]),
        "floor": f"python bench/floor_study.py --trials N --epochs {b.overhead_epochs}",
        "n": n,
        "reps": reps,
        "hyperlab_trial": {
            "ask_to_tell": large.ask_to_tell(),
            "build": large.median_attr("build"),
            "fit": large.median_attr("fit"),
            "finish": large.median_attr("finish"),
            "states": large.states(),
            "epochs": large.epochs,
        },
    }


def scaling(b: Budget) -> dict[str, Any]:
    """5. The same study with 1 and 2 workers, Hyperband pruning on: throughput and idle."""
    args = [
        "search=adam_full",
        "pruner=hyperband",
        f"sweep.n_trials={b.scale_trials}",
        f"epochs={b.scale_epochs}",
    ]
    out: dict[str, Any] = {"command": "hyperlab " + " ".join([*args, "sweep.workers=W"])}
    for w in (1, 2):
        r = commands.study([*args, f"sweep.workers={w}"], f"scale-{w}")
        workers = commands.workers_of(r)
        out[str(w)] = {
            **dataclasses.asdict(workers),
            "idle_fraction": workers.idle_fraction,
            "wall": r.wall,
            "epochs": r.epochs,
            "states": r.states(),
        }
        log(
            f"  {w} worker(s): {workers.trials_per_min:.1f} trials/min, "
            f"{workers.epochs_per_min:.0f} epochs/min, idle {100 * workers.idle_fraction:.1f}%"
        )
    if b.ceiling:
        from sweep_speed import machine_ceiling

        out["ceiling"] = machine_ceiling()
        log(f"  two hand-written loops over one: {out['ceiling']:.2f}")
    return out


def startup(b: Budget) -> dict[str, Any]:
    """6. Wall and CPU times of single commands (median of b.startup_reps, in one directory
    after a first run has created the MLflow store), and where the imports go."""
    cwd = commands.fresh_dir("startup")
    try:
        first_run = commands.timings(["epochs=1"], cwd, 1)[0]  # creates outputs/mlflow.db
        cases = {
            "hyperlab --help": ["--help"],
            "hyperlab --cfg job": ["--cfg", "job"],
            "hyperlab epochs=1": ["epochs=1"],
            "hyperlab epochs=1 tracking.enabled=false": ["epochs=1", "tracking.enabled=false"],
        }
        times = {name: commands.timings(args, cwd, b.startup_reps) for name, args in cases.items()}
        imports = {
            name: commands.import_profile(cases[name], cwd)
            for name in ("hyperlab --help", "hyperlab --cfg job", "hyperlab epochs=1")
        }
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    walls = {name: [w for w, _ in ts] for name, ts in times.items()}
    cpus = {name: [c for _, c in ts] for name, ts in times.items()}
    for name in cases:
        log(
            f"  {name}: {statistics.median(walls[name]):.2f} s "
            f"(CPU {statistics.median(cpus[name]):.2f} s)"
        )
    return {"first_run_new_store": first_run, "walls": walls, "cpus": cpus, "imports": imports}


def machine() -> dict[str, Any]:
    import torch

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {
        name: importlib.metadata.version(name)
        for name in ("hyperlab", "torch", "optuna", "mlflow", "hydra-core", "numpy", "scikit-learn")
    }
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor() or platform.machine(),
        "torch_threads_default": torch.get_num_threads(),
        "torch_threads_used": 1,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average_start": os.getloadavg(),
    }


def cpu_seconds() -> float:
    """CPU time of this process and every child it has waited for (commands, pool workers)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def now() -> str:
    """The date and minute, as the report shows when a section was measured."""
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")


def timed_section(measure: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one section's measure: what it measured, and its wall and CPU time (all
    processes), the 1-minute load average at its start and end, and the date."""
    start, cpu, load = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
    measured = measure()
    return measured, {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": cpu_seconds() - cpu,
        "load": [load, os.getloadavg()[0]],
        "date": now(),
    }
