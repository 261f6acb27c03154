"""hyperlab's benchmark report: samplers, the grid-versus-random lesson, pruning, a study's
overhead, parallel workers and start-up, measured side by side in one run.

    python bench/run.py [--quick] [--out DIR] [--seeds N] [--trials N] [--resume]
    python bench/run.py --from-json DIR/results.json [--out DIR] [--note TEXT]  # re-render

Writes DIR/RESULTS.md (tables and findings) and DIR/results.json (every measurement,
saved after each section, so that --resume can continue an interrupted run); DIR
defaults to bench/. The full run took 61 minutes on this 2-core machine, idle otherwise
(sections 1-2 alone 37); --quick (toy budgets; the test suite runs it) a few minutes.

1. Sampler efficiency: every sampler on two tasks, the same trial budget, many seeds,
   in-process (hyperlab's own composer, samplers and runner; no CLI, no MLflow).
2. Grid versus random on search=lr_eps, in-process.
3. Pruning: one study with each pruner, through the `hyperlab` command.
4. A trial's marginal cost in a `hyperlab` study against Optuna + a hand-written loop.
5. One and two workers on a study with pruning: throughput and idle time.
6. Start-up of `hyperlab --help`, `hyperlab --cfg job` and a one-epoch run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import commands
import inprocess
from inprocess import StudyResult, StudySpec, Task

SAMPLERS = ("grid", "random", "log_uniform", "tpe", "gp", "cmaes", "qmc", "coarse_to_fine")
# The order a process runs one seed's studies in: log_uniform first, since tpe, gp, cmaes,
# coarse_to_fine and qmc seeded alike start with its trials (trained once, then reused).
RUN_ORDER = ("log_uniform", "tpe", "gp", "cmaes", "coarse_to_fine", "qmc", "random", "grid")
MODEL_BASED = ("tpe", "gp", "cmaes")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
CHECKPOINTS = (10, 25, 50)
WITHIN = 0.005  # half a point of accuracy
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


FULL = Budget(
    seeds=10,
    trials=50,
    digits_epochs=10,
    moons_epochs=20,
    lesson_seeds=10,
    lesson_trials=25,
    lesson_epochs=20,
    prune_seeds=3,
    prune_trials=40,
    prune_epochs=20,
    overhead_trials=20,
    overhead_epochs=20,
    overhead_reps=3,
    scale_trials=40,
    scale_epochs=20,
    startup_reps=7,
    ceiling=True,
)
# Every section in a few minutes (the test suite runs it): the same tasks and studies on
# toy budgets. Its figures show that the report works, not which sampler is better.
QUICK = dataclasses.replace(
    FULL,
    seeds=2,
    trials=8,
    digits_epochs=2,
    moons_epochs=4,
    lesson_seeds=2,
    lesson_trials=8,
    lesson_epochs=4,
    prune_seeds=1,
    prune_trials=8,
    prune_epochs=4,
    overhead_trials=4,
    overhead_epochs=4,
    overhead_reps=1,
    scale_trials=8,
    scale_epochs=4,
    startup_reps=1,
    ceiling=False,
)


def log(message: str) -> None:
    elapsed = time.perf_counter() - START
    print(f"[{int(elapsed // 60):3d}:{int(elapsed % 60):02d}] {message}", flush=True)


# --- small statistics -------------------------------------------------------------------------


def quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile), inclusive method; one value: itself."""
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def superiority(a: Sequence[float], b: Sequence[float]) -> float:
    """P(a value from a beats one from b), ties counting half."""
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def best_after(values: Sequence[float], n: int) -> float:
    """The best value among the first n trials (failed trials are NaN); NaN if none."""
    finite = [v for v in values[:n] if not math.isnan(v)]
    return max(finite) if finite else math.nan


def trials_to_reach(values: Sequence[float], target: float) -> int | None:
    """The 1-based number of the first trial at or above target, None if none reaches it."""
    for i, v in enumerate(values, 1):
        if not math.isnan(v) and v >= target - 1e-9:
            return i
    return None


def nan_low(v: float | None) -> float:
    """For ranking: a failed trial (NaN, or null in JSON) below every value."""
    return -math.inf if v is None or math.isnan(v) else v


def floats(values: Sequence[float | None]) -> list[float]:
    """Trial values as read back from JSON (null for a failed trial) with NaN again."""
    return [math.nan if v is None else v for v in values]


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}"


def spread(xs: Sequence[float], fmt: Callable[[float], str] = pct) -> str:
    """median (25th–75th percentile) of xs."""
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "–"
    q1, med, q3 = quartiles(xs)
    return fmt(med) if len(xs) == 1 else f"{fmt(med)} ({fmt(q1)}–{fmt(q3)})"


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


def grid_points(r: dict[str, Any], task: str) -> int:
    return int(r["efficiency"][task]["samplers"]["grid"]["grid_points"])


def needed_per_seed(t: dict[str, Any]) -> dict[str, list[int | None]]:
    """Per sampler and seed: the trials needed to come within half a point of the best value
    any sampler found with the same seed (the studies of one seed index)."""
    values = {s: [floats(v) for v in x["values"]] for s, x in t["samplers"].items()}
    n_seeds = min(len(v) for v in values.values())
    tops = [
        max(best_after(values[s][i], len(values[s][i])) for s in values) for i in range(n_seeds)
    ]
    return {
        s: [trials_to_reach(vs[i], tops[i] - WITHIN) for i in range(n_seeds)]
        for s, vs in values.items()
    }


def needed_cell(needed: Sequence[int | None], budget: int) -> str:
    """The median trials needed (a seed that never got there counts as more than the
    budget), and how many seeds got there."""
    reached = sum(n is not None for n in needed)
    med = statistics.median(math.inf if n is None else n for n in needed)
    return f"{f'> {budget}' if math.isinf(med) else f'{med:g}'} ({reached}/{len(needed)})"


def md_efficiency(d: dict[str, Any]) -> list[str]:
    cps = d["checkpoints"]
    lines = []
    for key in ("digits", "moons"):
        t = d[key]
        per_seed = needed_per_seed(t)
        lines += [
            f"**{t['task']}** (`{' '.join(t['overrides'])}`): the best dev accuracy any study "
            f'found is {pct(t["best_any"])}%, so "within 0.5 points" of it is '
            f"{pct(t['target'])}% or more.",
            "",
            "| sampler | "
            + " | ".join(f"best after {c} trials, % (IQR)" for c in cps)
            + " | trials to within 0.5 pt of the best of all studies | of the best of the "
            "same seed | s per study (of which sampler) |",
            "|---|" + "---|" * len(cps) + "---|---|---|",
        ]
        for s, v in t["samplers"].items():
            note = f" (grid of {v['trials']})" if s == "grid" and v["trials"] < cps[-1] else ""
            lines.append(
                f"| {s}{note} | "
                + " | ".join(spread(floats(v["best_after"][str(c)])) for c in cps)
                + f" | {needed_cell(v['trials_to_within'], v['trials'])} | "
                f"{needed_cell(per_seed[s], v['trials'])} | "
                f"{statistics.median(v['seconds']):.1f} "
                f"({statistics.median(v['sampler_seconds']):.1f}) |"
            )
        lines += ["", *shape_lines(t, cps[-1]), ""]
    return lines


@dataclass(frozen=True)
class Comparison:
    """One of the issue's expected comparisons at the last checkpoint."""

    a: str
    b: str
    median_a: float
    median_b: float
    p: float  # P(a study of a beats one of b), ties half
    wins: int  # seeds where a beat b (same sampler seed: they share their first trials)
    ties: int
    losses: int

    @property
    def holds(self) -> bool:
        return self.median_a > self.median_b


def shape(t: dict[str, Any], last: int) -> list[Comparison]:
    pairs = [("log_uniform", "random"), ("random", "grid")]
    pairs += [(s, "log_uniform") for s in (*MODEL_BASED, "coarse_to_fine")]
    out = []
    for a, b in pairs:
        xa = t["samplers"][a]["best_after"][str(last)]
        xb = t["samplers"][b]["best_after"][str(last)]
        paired = list(zip(xa, xb, strict=True))
        out.append(
            Comparison(
                a,
                b,
                statistics.median(xa),
                statistics.median(xb),
                superiority(xa, xb),
                sum(x > y for x, y in paired),
                sum(x == y for x, y in paired),
                sum(x < y for x, y in paired),
            )
        )
    return out


def shape_lines(t: dict[str, Any], last: int) -> list[str]:
    lines = [
        f"Expected shape at {last} trials. P: the chance that a study of the first beats a "
        "study of the second (ties half); seeds: wins/ties/losses of the first against the "
        "second with the same sampler seed.",
        "",
    ]
    for c in shape(t, last):
        verdict = "holds" if c.holds else "tie" if c.median_a == c.median_b else "does not hold"
        lines.append(
            f"- {c.a} over {c.b}: median {pct(c.median_a)} against {pct(c.median_b)}, "
            f"P = {c.p:.2f}, seeds {c.wins}/{c.ties}/{c.losses}: **{verdict}**"
        )
    return lines


def md_lesson(d: dict[str, Any]) -> list[str]:
    g, r = d["samplers"]["grid"], d["samplers"]["log_uniform"]
    p = superiority(r["best"], g["best"])
    lines = [
        f"`{' '.join(d['overrides'])}`, {statistics.median(g['trials']):g} trials, "
        f"{len(g['best'])} seeds (log_uniform is random search on each parameter's scale).",
        "",
        "| sampler | distinct lr: median (range) | distinct eps | best dev acc, % (IQR) "
        "| worst seed | best seed |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in (("grid", g), ("log_uniform", r)):
        lines.append(
            f"| {name} | {statistics.median(v['distinct_lr']):g} "
            f"({min(v['distinct_lr'])}–{max(v['distinct_lr'])}) | "
            f"{statistics.median(v['distinct_eps']):g} | {spread(v['best'])} | "
            f"{pct(min(v['best']))} | {pct(max(v['best']))} |"
        )
    lines += ["", f"A random-search study beats a grid study with P = {p:.2f} (ties half)."]
    return lines


def pruning_summary(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    none = d["runs"]["none"]
    out = {}
    for p, runs in d["runs"].items():
        out[p] = {
            "epochs": [r["epochs"] for r in runs],
            "epochs_ratio": [r["epochs"] / n["epochs"] for r, n in zip(runs, none, strict=True)],
            "wall": [r["wall"] for r in runs],
            "span_ratio": [r["span"] / n["span"] for r, n in zip(runs, none, strict=True)],
            "best": [r["best"] for r in runs],
            "best_delta": [r["best"] - n["best"] for r, n in zip(runs, none, strict=True)],
            "pruned": [r["states"].get("PRUNED", 0) for r in runs],
            "trials": [sum(r["states"].values()) for r in runs],
        }
    return out


def md_pruning(d: dict[str, Any]) -> list[str]:
    s = pruning_summary(d)
    lines = [
        f"`{d['command']}`, seeds S = 0..{len(d['runs']['none']) - 1}, 1 worker, MLflow on. "
        "The sampler is random (log_uniform), so with one seed every pruner sees the same "
        "configurations in the same order, and a completed trial scores what it scores "
        "without pruning: a pruner can only lose the best value by stopping its trial. "
        "Epochs trained: the values each trial reported, one per epoch (without a pruner a "
        "trial reports none, and a complete one trained them all). Medians over seeds; "
        "ratios and differences are against pruner=none with the same seed.",
        "",
        "| pruner | pruned trials | epochs trained | of none's | trial time of none's "
        "| command wall | best dev acc, % | best − none's, points (worst seed) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    med = statistics.median
    for p, v in s.items():
        lines.append(
            f"| {p} | {med(v['pruned']):g} of {med(v['trials']):g} | {med(v['epochs']):g} | "
            f"{100 * med(v['epochs_ratio']):.0f}% | {100 * med(v['span_ratio']):.0f}% | "
            f"{med(v['wall']):.1f} s | {pct(med(v['best']))} | "
            f"{100 * med(v['best_delta']):+.2f} ({100 * min(v['best_delta']):+.2f}) |"
        )
    return lines


def overhead_summary(d: dict[str, Any]) -> dict[str, float]:
    """Medians over rounds: marginal trials, their ratio, and the fixed costs (the time of
    the N-trial command minus N marginal trials), in wall and CPU time."""
    n, reps = d["n"], d["reps"]
    out: dict[str, float] = {}
    for m in ("wall", "cpu"):
        for who in ("hyperlab", "floor"):
            out[f"{who}_{m}"] = statistics.median(r["marginal"][f"{who}_{m}"] for r in reps)
            out[f"fixed_{who}_{m}"] = statistics.median(
                r[m][f"{who}_{n}"] - n * r["marginal"][f"{who}_{m}"] for r in reps
            )
        ratios = [r["marginal"][f"hyperlab_{m}"] / r["marginal"][f"floor_{m}"] for r in reps]
        out[f"ratio_{m}"] = statistics.median(ratios)
        out[f"ratio_{m}_min"], out[f"ratio_{m}_max"] = min(ratios), max(ratios)
    out["floor_trial"] = statistics.median(r["floor_trial_median"] for r in reps)
    out["ratio_in_study"] = d["hyperlab_trial"]["ask_to_tell"] / out["floor_trial"]
    return out


def md_overhead(d: dict[str, Any]) -> list[str]:
    s = overhead_summary(d)
    n, t = d["n"], d["hyperlab_trial"]
    lines = [
        f"hyperlab: `{d['command']}` (MLflow on: a child run per trial, metrics every epoch, "
        f"journal storage); floor: `{d['floor']}` (Optuna ask/tell in memory, the same "
        "learning rates, model, split, batch size and optimizer, a hand-written loop that "
        "also evaluates dev each epoch, no MLflow). N = "
        f"{n} and {2 * n}, each a fresh process in a fresh directory, {len(d['reps'])} "
        "round(s) in alternating order; medians over rounds. CPU time is the command's user "
        "and system time with its child processes (hyperlab's worker and MLflow writer).",
        "",
        "| | marginal trial, wall | fixed cost, wall | marginal trial, CPU | fixed cost, CPU |",
        "|---|---|---|---|---|",
    ]
    for who in ("hyperlab", "floor"):
        lines.append(
            f"| {who} | {s[f'{who}_wall']:.3f} s | {s[f'fixed_{who}_wall']:.1f} s | "
            f"{s[f'{who}_cpu']:.3f} s | {s[f'fixed_{who}_cpu']:.1f} s |"
        )
    lines += [
        f"| hyperlab / floor | **{s['ratio_wall']:.2f}** (rounds {s['ratio_wall_min']:.2f}–"
        f"{s['ratio_wall_max']:.2f}) | | {s['ratio_cpu']:.2f} (rounds {s['ratio_cpu_min']:.2f}–"
        f"{s['ratio_cpu_max']:.2f}) | |",
        "",
        f"Inside hyperlab's {2 * n}-trial study (medians per trial, from the journal): ask to "
        f"tell {t['ask_to_tell']:.3f} s, of which build {t['build']:.3f} s, fit "
        f"{t['fit']:.3f} s, final evaluation and MLflow hand-off {t['finish']:.3f} s; the "
        f"floor's trial {s['floor_trial']:.3f} s (ratio {s['ratio_in_study']:.2f}). Trial "
        f"states: {t['states']}, {t['epochs']} epochs trained.",
    ]
    return lines


def per_min(v: dict[str, Any]) -> tuple[float, float]:
    """A scaling row's trials and epochs per minute: NaN where its study had no steady
    window (too few trials), which results.json holds as null."""
    trials, epochs = floats([v["trials_per_min"], v["epochs_per_min"]])
    return trials, epochs


def md_scaling(d: dict[str, Any]) -> list[str]:
    one, two = d["1"], d["2"]
    lines = [
        f"`{d['command']}` (TPE, the default sampler), MLflow on. Rates count the steady "
        "state: trials started once every worker has finished its first, to the last end. "
        "Idle: a worker's gaps between one trial's end and its next start, plus its tail "
        "after its last trial while another still trains, over workers × span.",
        "",
        "| workers | trials/min | epochs/min | span | idle | gaps (median gap) | tail "
        "| command wall | trials |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w, v in (("1", one), ("2", two)):
        trials, epochs = per_min(v)
        lines.append(
            f"| {w} | {trials:.1f} | {epochs:.0f} | "
            f"{v['span']:.1f} s | {100 * v['idle_fraction']:.1f}% | {v['gaps']:.2f} s "
            f"({1000 * v['median_gap']:.0f} ms) | {v['tail']:.2f} s | {v['wall']:.1f} s | "
            f"{v['states']} |"
        )
    lines += [
        "",
        f"2 workers over 1: {per_min(two)[0] / per_min(one)[0]:.2f} in trials/min, "
        f"{per_min(two)[1] / per_min(one)[1]:.2f} in epochs/min"
        + (
            f"; this machine's ceiling (two hand-written training processes over one, "
            f"bench/sweep_speed.py): {d['ceiling']:.2f}."
            if "ceiling" in d
            else "."
        ),
    ]
    return lines


def md_startup(d: dict[str, Any]) -> list[str]:
    first_wall, first_cpu = d["first_run_new_store"]
    lines = [
        "Median wall and CPU time of each command (a fresh process each time, in a directory "
        "whose MLflow store exists; the very first run, which creates the store, took "
        f"{first_wall:.1f} s, CPU {first_cpu:.1f} s), and where `python -X importtime` puts "
        "the imports: self time summed per top-level package, and the largest imports made "
        "at the top level, at start-up or lazily while running (cumulative).",
        "",
        "| command | wall: median (range) | CPU | imports | by package | largest top-level "
        "imports |",
        "|---|---|---|---|---|---|",
    ]
    for name, ws in d["walls"].items():
        imp = d["imports"].get(name)
        total = f"{imp['total']:.2f} s" if imp else ""
        packages = ", ".join(f"{p} {t:.2f}" for p, t in imp["by_package"][:5]) if imp else ""
        top = ", ".join(f"{p} {t:.2f}" for p, t in imp["top_level"][:4]) if imp else ""
        lines.append(
            f"| `{name}` | {statistics.median(ws):.2f} s ({min(ws):.2f}–{max(ws):.2f}) | "
            f"{statistics.median(d['cpus'][name]):.2f} s | {total} | {packages} | {top} |"
        )
    lines += [
        "",
        "Import times come from a separate `-X importtime` run, which is itself slower. "
        "torch imports torch._dynamo when the first optimizer is built. CPU time includes "
        "the MLflow writer process where tracking is on.",
    ]
    return lines


def findings(r: dict[str, Any]) -> list[str]:
    """The headline of each section, with each goal met or missed, from the numbers."""
    out = []
    e = r["efficiency"]
    last = e["checkpoints"][-1]
    for key in ("digits", "moons"):
        t = e[key]
        held = [f"{c.a} > {c.b}" for c in shape(t, last) if c.holds]
        failed = [f"{c.a} > {c.b}" for c in shape(t, last) if not c.holds]
        ranked = sorted(
            t["samplers"],
            key=lambda s: -statistics.median(t["samplers"][s]["best_after"][str(last)]),
        )
        out.append(
            f"**Samplers, {t['task']}**: at {last} trials the best medians are "
            + ", ".join(
                f"{s} {pct(statistics.median(t['samplers'][s]['best_after'][str(last)]))}%"
                for s in ranked[:3]
            )
            + f"; the worst {ranked[-1]} "
            f"{pct(statistics.median(t['samplers'][ranked[-1]]['best_after'][str(last)]))}%. "
            f"Expected shape held for {', '.join(held) or 'none'}"
            + (f"; not for {', '.join(failed)}." if failed else ".")
        )
    g, lr = r["lesson"]["samplers"]["grid"], r["lesson"]["samplers"]["log_uniform"]
    out.append(
        f"**Grid vs random (lr_eps)**: the grid tried {statistics.median(g['distinct_lr']):g} "
        f"learning rates, random search {statistics.median(lr['distinct_lr']):g}; best dev "
        f"accuracy {pct(statistics.median(g['best']))}% against "
        f"{pct(statistics.median(lr['best']))}% (medians over seeds)."
    )
    p = pruning_summary(r["pruning"])["hyperband"]
    ratio, delta = statistics.median(p["epochs_ratio"]), statistics.median(p["best_delta"])
    met = ratio <= 0.40 and abs(delta) <= WITHIN
    out.append(
        f"**Pruning**: hyperband trained {100 * ratio:.0f}% of the epochs of no pruning, best "
        f"value {100 * delta:+.2f} points (medians over seeds; worst seed "
        f"{100 * min(p['best_delta']):+.2f}). Goal (≤ 40% at ±0.5 points): "
        f"{'met' if met else 'missed'}."
    )
    o = overhead_summary(r["overhead"])
    out.append(
        f"**Study overhead**: a marginal trial costs {o['hyperlab_wall']:.3f} s in hyperlab "
        f"with MLflow on, {o['floor_wall']:.3f} s with Optuna and a hand-written loop: "
        f"{o['ratio_wall']:.2f} × the floor in wall time ({o['ratio_cpu']:.2f} × in CPU time, "
        f"{o['ratio_in_study']:.2f} × trial for trial inside the studies). "
        f"Goal (≤ 1.10): {'met' if o['ratio_wall'] <= 1.10 else 'missed'}."
    )
    s = r["scaling"]
    two_over_one = per_min(s["2"])[1] / per_min(s["1"])[1]
    out.append(
        f"**Parallel workers**: 2 workers train {two_over_one:.2f} × the epochs per minute of 1"
        + (f" (machine ceiling {s['ceiling']:.2f})" if "ceiling" in s else "")
        + f"; with Hyperband pruning, the workers were idle {100 * s['2']['idle_fraction']:.1f}% "
        f"of their time (median gap between trials {1000 * s['2']['median_gap']:.0f} ms)."
    )
    w, cpu = r["startup"]["walls"], r["startup"]["cpus"]
    med = {k: statistics.median(v) for k, v in w.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    h, c, one = (med[f"hyperlab {k}"] for k in ("--help", "--cfg job", "epochs=1"))
    out.append(
        f"**Start-up**: `hyperlab --help` {h:.2f} s, `hyperlab --cfg job` {c:.2f} s, a one-epoch "
        f"run {one:.2f} s (CPU {med_cpu['hyperlab --help']:.2f}, "
        f"{med_cpu['hyperlab --cfg job']:.2f} and {med_cpu['hyperlab epochs=1']:.2f} s). "
        f"Goal (under 1.5 s for the first two): {'met' if max(h, c) < 1.5 else 'missed'}."
    )
    return out


def md_sections(r: dict[str, Any]) -> list[str]:
    lines = [
        "| section | wall | CPU (all processes) | 1-min load average, start → end | measured |",
        "|---|---|---|---|---|",
    ]
    for label, x in r["sections"].items():
        lines.append(
            f"| {label} | {x['seconds'] / 60:.1f} min | {x['cpu_seconds'] / 60:.1f} min | "
            f"{x['load'][0]:.1f} → {x['load'][1]:.1f} | {x['date']} |"
        )
    return lines


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    v = m["versions"]
    wall = sum(x["seconds"] for x in r["sections"].values()) / 60
    cpu = sum(x["cpu_seconds"] for x in r["sections"].values()) / 60
    resumed = (
        f" Sections {', '.join(r['resumed'])} were kept from earlier invocations with the "
        "same budget (`--resume`, which measures only the sections results.json lacks); "
        "each section's date and load are in the last table."
        if r.get("resumed")
        else ""
    )
    where = "by bench/run.py on this machine" if resumed else "in this run"
    lines = [
        "# hyperlab benchmarks",
        "",
        f"Generated by `{r['command']}` on {r['date']} ({r['budget_name']} budget): "
        f"{wall:.1f} minutes of wall time and {cpu:.1f} minutes of CPU time in all. Every "
        f"figure below was measured {where}.{resumed}"
        + "".join(f" {n}" for n in r.get("notes", []))
        + (
            " The quick budget's studies are toys (two seeds, a few trials of a few epochs):"
            " they show that every section works, not how samplers, pruners or a trial's"
            " cost compare; `python bench/run.py` measures those."
            if r["budget_name"] == "quick"
            else ""
        ),
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['platform']}; torch on "
        f"{m['torch_threads_used']} thread per process (hyperlab's `threads=1`; torch's default "
        f"here is {m['torch_threads_default']}). Load average (1, 5, 15 min) at the start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_start'])}, at the end "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_end'])}: the machine was shared. "
        f"Python {m['python']}, " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".",
        "",
        "## Findings",
        "",
        *(f"- {f}" for f in findings(r)),
        "",
        "## 1. Sampler efficiency",
        "",
        f"Each sampler ran {r['budget']['seeds']} studies (sampler seeds "
        f"0..{r['budget']['seeds'] - 1}, "
        f"`sweep.seed`) of {r['budget']['trials']} trials on each task, in-process with "
        "hyperlab's composer, samplers and runner (tracking and progress off, one torch "
        f"thread, {r['budget']['processes']} processes). The training seed is fixed, so a "
        "configuration always scores the same; a process trains each distinct configuration "
        "once. Medians over seeds with the 25th–75th percentiles. Trials to within 0.5 points "
        "are counted two ways: against the best value any study found on the task (every "
        "sampler and seed: a single lucky study may set it), and against the best value any "
        "sampler found with the same seed (eight studies). The median counts a seed that "
        "never got there as more than the budget; the seeds that got there are in brackets.",
        "",
        "Notes: `random` samples every range on its linear scale (the naive baseline). `grid` "
        "takes the points of its lattice in random order (Optuna's GridSampler): on "
        f"adam_full's 11 parameters the lattice has {grid_points(r, 'digits'):,} points, so "
        "the budget covers a random subset of it; on lr_beta's 2 parameters the grid is "
        "sized to the budget (the largest square grid that fits, "
        f"{grid_points(r, 'moons')} points). tpe, gp and cmaes draw their start-up trials "
        "(10, 10 and 5) with a random sampler of the same seed as log_uniform's, and "
        "coarse_to_fine its first stage (half the budget): with the same seed they begin "
        "with the same trials, which pairs the comparisons below. CMA-ES samples the "
        "categorical parameters (batch_size, normalization) at random.",
        "",
        *md_efficiency(r["efficiency"]),
        "## 2. Grid versus random: the lesson",
        "",
        *md_lesson(r["lesson"]),
        "",
        "## 3. Pruning",
        "",
        *md_pruning(r["pruning"]),
        "",
        "## 4. Study overhead",
        "",
        *md_overhead(r["overhead"]),
        "",
        "## 5. Parallel scaling",
        "",
        *md_scaling(r["scaling"]),
        "",
        "## 6. Start-up",
        "",
        *md_startup(r["startup"]),
        "",
        "## The run",
        "",
        *md_sections(r),
        "",
    ]
    return "\n".join(lines)


def jsonable(x: Any) -> Any:
    """NaN and infinity as null, tuples as lists: strict JSON."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    return x


def cpu_seconds() -> float:
    """CPU time of this process and every child it has waited for (commands, pool workers)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def samplers_section(b: Budget) -> dict[str, Any]:
    studies = inprocess_studies(b)
    return {"efficiency": efficiency(studies, b), "lesson": lesson(studies, b)}


def plan(b: Budget) -> list[tuple[str, tuple[str, ...], Callable[[], dict[str, Any]]]]:
    """The sections: label, the result keys each fills, and how to measure it."""
    return [
        ("1-2. samplers, grid vs random", ("efficiency", "lesson"), lambda: samplers_section(b)),
        ("3. pruning", ("pruning",), lambda: {"pruning": pruning(b)}),
        ("4. study overhead", ("overhead",), lambda: {"overhead": overhead(b)}),
        ("5. parallel scaling", ("scaling",), lambda: {"scaling": scaling(b)}),
        ("6. start-up", ("startup",), lambda: {"startup": startup(b)}),
    ]


def previous_results(path: Path, budget: Budget) -> dict[str, Any]:
    """The sections an earlier run with the same budget saved in `path`, for --resume."""
    if not path.is_file():
        return {}
    earlier: dict[str, Any] = json.loads(path.read_text())
    if earlier.get("budget") != jsonable(dataclasses.asdict(budget)):
        log(f"{path} holds another budget: measuring everything")
        return {}
    return earlier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few minutes: toy budgets")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--seeds", type=int, help="sampler seeds per task (section 1)")
    ap.add_argument("--trials", type=int, help="trial budget per study (section 1)")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the sections DIR/results.json already holds from an interrupted run",
    )
    ap.add_argument(
        "--from-json", type=Path, help="measure nothing: write RESULTS.md from this results.json"
    )
    ap.add_argument(
        "--note",
        action="append",
        default=[],
        help="with --from-json: a sentence for the report's opening (kept in the JSON)",
    )
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        if args.note:
            saved["notes"] = [*saved.get("notes", []), *args.note]
            (args.out / "results.json").write_text(json.dumps(saved, indent=1) + "\n")
        (args.out / "RESULTS.md").write_text(markdown(saved))
        return
    budget, name = (QUICK, "quick") if args.quick else (FULL, "full")
    if args.seeds:
        budget = dataclasses.replace(budget, seeds=args.seeds)
    if args.trials:
        budget = dataclasses.replace(budget, trials=args.trials)
    os.environ["OMP_NUM_THREADS"] = "1"
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    info = {**machine(), "torch_threads_default": torch_threads}
    command = " ".join(["python", "bench/run.py", *sys.argv[1:]])
    log(f"{command}: {name} budget {dataclasses.asdict(budget)}")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "results.json"
    earlier = previous_results(json_path, budget) if args.resume else {}
    results: dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "budget_name": name,
        "budget": dataclasses.asdict(budget),
        "machine": info,
        "sections": {},
        "resumed": [],
        "complete": False,
    }
    for label, keys, measure in plan(budget):
        if all(k in earlier for k in keys) and label in earlier.get("sections", {}):
            log(f"{label}: kept from the run of {earlier['sections'][label]['date']}")
            results.update({k: earlier[k] for k in keys})
            results["sections"][label] = earlier["sections"][label]
            results["resumed"].append(label)
            continue
        log(label)
        start, cpu, load = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
        results.update(measure())
        results["sections"][label] = {
            "seconds": time.perf_counter() - start,
            "cpu_seconds": cpu_seconds() - cpu,
            "load": [load, os.getloadavg()[0]],
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        }
        json_path.write_text(json.dumps(jsonable(results), indent=1) + "\n")  # so far
    results["machine"]["load_average_end"] = os.getloadavg()
    results["complete"] = True
    # The report is rendered from what the JSON holds, as --from-json renders it.
    saved = jsonable(results)
    json_path.write_text(json.dumps(saved, indent=1) + "\n")
    (args.out / "RESULTS.md").write_text(markdown(saved))
    log(f"wrote {args.out / 'RESULTS.md'} and {json_path}")
    print("\n".join(f"- {f}" for f in findings(saved)))


if __name__ == "__main__":
    main()
