"""Caviar in one process at the study level (issue 13's benchmarks): the same `hyperlab`
study with its trials trained one by one (sweep.population=1) and as one stacked model
(sweep.population=K), side by side, through the command.

    python bench/population_study.py [--rounds R] [--quick] [--record]

With --record, the report becomes section 7 of bench/RESULTS.md (kept in results.json).

1. The course's moons net ([2, 10, 5, 2], ReLU, momentum, mini-batches of 64, 200 epochs),
   32 trials of search=lr_beta, random sampler, no pruner, one worker: trials per minute of
   population=32 over population=1, MLflow on (goal >= 8x) and off; MLflow on over off at
   population=32 (goal <= 1.25x); the best value and every trial's value, population
   against one by one (must agree to float tolerance); the peak RSS of each.
2. The digits MLP (64-128-128-10 with batch norm, Adam), 20 trials x 20 epochs of
   search=lr: the whole command at population=20 against the floor, Optuna calling a
   hand-written loop (bench/floor_study.py; goal <= 0.8x the floor's wall time), and the
   peak RSS at population 1 and 20, with the largest population that fits a memory budget.
3. The fixed cost of a trial (goal <= 5 ms inside a population): one-epoch moons trials,
   the command's wall time at 32 and at 256 trials, its difference per extra trial, at
   population=32 and at 1.

Trials per minute are counted over the study's span, from the first trial's start to the
last one's end (a stack's trials all end together, so there is no steady state to take
apart from the first), which leaves out process start-up and the final report: those are
in the command's wall time, reported beside it. Each study runs in a fresh directory whose
outputs/ holds an empty MLflow store with its tables made, as a user's does after their
first command (a new store's migrations take about 2 s, once). Rounds alternate the order
(A B, B A) so that drift hits both sides; the median per-round ratio is reported.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import optuna

from commands import BENCH, StudyRun, empty_store, floor_study, fresh_dir, study

MOONS = [
    "search=lr_beta",
    "sampler=random",
    "pruner=none",
    "dataset=moons",
    "model.hidden_units=[10,5]",
    "sweep.workers=1",
]
DIGITS = ["search=lr", "sampler=log_uniform", "pruner=none", "dataset=digits", "sweep.workers=1"]
BUDGET_GIB = 4.0  # the memory budget the largest digits population is sized to
STORE = None  # an MLflow store with its tables made, copied into each study's outputs/


def verdict(x: float, goal: float, at_least: bool) -> str:
    """`x` with its goal, met or missed."""
    met = x >= goal if at_least else x <= goal
    return f"{x:.2f}x (goal {'>=' if at_least else '<='} {goal:g}x: {'met' if met else 'MISSED'})"


def per_minute(run: StudyRun) -> float:
    return len(run.finished()) / (run.span / 60)


def run(base: list[str], trials: int, epochs: int, k: int, tracking: bool) -> StudyRun:
    args = [
        *base,
        f"epochs={epochs}",
        f"sweep.n_trials={trials}",
        f"sweep.population={k}",
        f"tracking.enabled={str(tracking).lower()}",
    ]
    return study(args, f"population-{k}", peak=True, store=STORE)


def alternating(rounds: int, make: dict[str, Callable[[], StudyRun]]) -> list[dict[str, StudyRun]]:
    """`rounds` rounds of every command in `make`, the order reversed every other round."""
    out = []
    for r in range(rounds):
        names = list(make) if r % 2 == 0 else list(reversed(make))
        out.append({name: make[name]() for name in names})
    return out


def values_agree(a: StudyRun, b: StudyRun) -> float:
    """The largest relative difference between the two studies' values, trial by trial."""
    va = {t.number: float(t.value or 0.0) for t in a.trials}
    vb = {t.number: float(t.value or 0.0) for t in b.trials}
    assert va.keys() == vb.keys()
    return max(abs(va[n] - vb[n]) / max(abs(vb[n]), 1e-12) for n in va)


def moons(rounds: int, trials: int, epochs: int, k: int) -> None:
    print(
        f"## 1. moons [2, 10, 5, 2], {trials} trials of lr_beta x {epochs} epochs, random "
        f"sampler, no pruner, 1 worker: population={k} against 1\n"
    )
    results = alternating(
        rounds,
        {
            "K=1 on": lambda: run(MOONS, trials, epochs, 1, True),
            f"K={k} on": lambda: run(MOONS, trials, epochs, k, True),
            f"K={k} off": lambda: run(MOONS, trials, epochs, k, False),
            "K=1 off": lambda: run(MOONS, trials, epochs, 1, False),
        },
    )
    for i, r in enumerate(results):
        for name, s in r.items():
            assert len(s.finished()) == trials, (name, s.states())
            print(
                f"  round {i} {name:>8}: command {s.wall:6.1f} s, span {s.span:6.1f} s, "
                f"{per_minute(s):7.1f} trials/min, best {s.best:.4f}, "
                f"peak RSS {s.peak_mib:5.0f} MiB"
            )

    def ratio(f: Callable[[dict[str, StudyRun]], float]) -> float:
        return statistics.median(f(r) for r in results)

    on, off = f"K={k} on", f"K={k} off"
    print(
        f"\n  trials/min, population={k} over 1, MLflow on:  "
        f"{verdict(ratio(lambda r: per_minute(r[on]) / per_minute(r['K=1 on'])), 8, True)}; "
        f"command wall {ratio(lambda r: r['K=1 on'].wall / r[on].wall):.2f}x faster"
    )
    print(
        f"  trials/min, population={k} over 1, MLflow off: "
        f"{ratio(lambda r: per_minute(r[off]) / per_minute(r['K=1 off'])):.2f}x; "
        f"command wall {ratio(lambda r: r['K=1 off'].wall / r[off].wall):.2f}x faster"
    )
    print(
        f"  MLflow on over off at population={k}: command wall "
        f"{verdict(ratio(lambda r: r[on].wall / r[off].wall), 1.25, False)}, span "
        f"{ratio(lambda r: r[on].span / r[off].span):.2f}x"
    )
    last = results[-1]
    print(
        f"  equivalence: best value {last[on].best:.6f} (population) vs "
        f"{last['K=1 on'].best:.6f} (one by one); largest relative difference of a trial's "
        f"value {values_agree(last[on], last['K=1 on']):.2e}"
    )
    print(
        f"  peak RSS (largest process): {last[on].peak_mib:.0f} MiB at population={k}, "
        f"{last['K=1 on'].peak_mib:.0f} MiB at 1\n"
    )


def digits(rounds: int, trials: int, epochs: int, k: int) -> None:
    print(
        f"## 2. digits MLP 64-128-128-10 + batch norm, {trials} trials of lr x {epochs} "
        f"epochs: population={k} against the floor (Optuna + a hand-written loop)\n"
    )
    walls: list[dict[str, float]] = []
    peaks: dict[str, float] = {}
    for i in range(rounds):
        order = ["floor", f"K={k}", "K=1"] if i % 2 == 0 else ["K=1", f"K={k}", "floor"]
        w: dict[str, float] = {}
        for name in order:
            if name == "floor":
                timed, _ = floor_study(trials, epochs)
                w[name] = timed.wall
            else:
                s = run(DIGITS, trials, epochs, 1 if name == "K=1" else k, True)
                assert len(s.finished()) == trials
                w[name], peaks[name] = s.wall, s.peak_mib
        walls.append(w)
        print("  round", i, ", ".join(f"{n} {w[n]:.1f} s" for n in order))
    ratio = statistics.median(w[f"K={k}"] / w["floor"] for w in walls)
    ratio1 = statistics.median(w["K=1"] / w["floor"] for w in walls)
    print(
        f"\n  command wall over the floor's: population={k} {verdict(ratio, 0.8, False)}, "
        f"population=1 {ratio1:.2f}x (MLflow on; the floor records nothing)"
    )
    per_member = (peaks[f"K={k}"] - peaks["K=1"]) / (k - 1)
    fits = math.inf if per_member <= 0 else 1 + int((BUDGET_GIB * 1024 - peaks["K=1"]) / per_member)
    print(
        f"  peak RSS: {peaks['K=1']:.0f} MiB at population=1, {peaks[f'K={k}']:.0f} MiB at "
        f"{k} ({per_member:.1f} MiB a member): about {fits} members fit in {BUDGET_GIB:g} GiB\n"
    )


def fixed_cost(rounds: int, small: int, large: int, k: int) -> None:
    print(
        f"## 3. the fixed cost of a trial: moons [2, 10, 5, 2], one-epoch trials of lr_beta, "
        f"MLflow on, {small} against {large} trials at population={k} and at 1\n"
    )
    costs: dict[int, list[float]] = {k: [], 1: []}
    for i in range(rounds):
        for population in (k, 1) if i % 2 == 0 else (1, k):
            walls = {}
            for n in (small, large) if i % 2 == 0 else (large, small):
                s = run(MOONS, n, 1, population, True)
                assert len(s.finished()) == n, s.states()
                walls[n] = s.wall
            costs[population].append((walls[large] - walls[small]) / (large - small) * 1000)
            print(
                f"  round {i} population={population:>2}: {small} trials {walls[small]:.1f} s, "
                f"{large} trials {walls[large]:.1f} s: {costs[population][-1]:.1f} ms a trial"
            )
    stacked, alone = (statistics.median(costs[p]) for p in (k, 1))
    met = "met" if stacked <= 5 else "MISSED"
    print(
        f"\n  fixed cost a trial (the command's wall per extra trial, its one epoch of "
        f"training included): {stacked:.1f} ms at population={k} (goal <= 5 ms: {met}), "
        f"{alone:.1f} ms at population=1\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a toy budget: checks the script runs")
    ap.add_argument("--only", choices=["moons", "digits", "fixed"], default=None)
    ap.add_argument("--record", action="store_true", help="write the report to RESULTS.md")
    args = ap.parse_args()
    started = time.time()
    tee = Tee(sys.stdout)
    if args.record:  # everything printed is kept for the report
        sys.stdout = tee
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    global STORE
    STORE = empty_store(fresh_dir("store"))
    print(f"machine: {os.cpu_count()} cores; {args.rounds} round(s), order alternating\n")
    if args.only in (None, "moons"):
        moons(args.rounds, *((8, 2, 4) if args.quick else (32, 200, 32)))
    if args.only in (None, "digits"):
        digits(args.rounds, *((4, 2, 4) if args.quick else (20, 20, 20)))
    if args.only in (None, "fixed"):
        fixed_cost(args.rounds, *((4, 12, 4) if args.quick else (32, 256, 32)))
    if args.record:
        record(
            tee.text(),
            " ".join(["python bench/population_study.py", *sys.argv[1:]]),
            (time.time() - started) / 60,
        )


class Tee(io.StringIO):
    """Prints and keeps what is printed."""

    def __init__(self, out: Any) -> None:
        super().__init__()
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text)
        self.out.flush()
        return super().write(text)

    def text(self) -> str:
        return self.getvalue()


def record(report: str, command: str, minutes: float) -> None:
    """The report as section 7 of bench/RESULTS.md, kept in bench/results.json."""
    from render import markdown, write_json

    path = BENCH / "results.json"
    saved = json.loads(path.read_text())
    saved["population"] = {
        "command": command,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "minutes": minutes,
        "report": report,
    }
    (BENCH / "RESULTS.md").write_text(markdown(write_json(path, saved)))


if __name__ == "__main__":
    main()
