"""Population-based training against TPE + Hyperband at equal compute (issue 15): the same
`search=lr_beta` space on the course's moons net, through the `hyperlab` command.

    python bench/pbt_vs_tpe.py [--rounds R] [--quick] [--population K] [--epochs E] [--record]

PBT: one population of K members (sweep.schedule=pbt, sweep.population=K, TPE drawing
their initial values), E epochs each, an exploit every E/8 epochs (at least 1): K * E
epochs in all. TPE + Hyperband (pruner=hyperband, one trial at a time) gets the same
budget of epochs: its study is run, then continued by the same command with more trials
(a study resumes under its name), until the epochs its trials trained reach K * E. Each
round has its own sampler seed (sweep.seed); per round and side: the best dev_acc, the
wall time of its command(s) (start-up included), the epochs trained and the trials. The
median over rounds closes the table. With --record, the report becomes section 10 of
bench/RESULTS.md (kept in results.json).
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
from pathlib import Path

import optuna

from commands import HYPERLAB, StudyRun, fresh_dir, run_command
from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from render import recording

SPACE = ["search=lr_beta", "sampler=tpe", "dataset=moons", "model.hidden_units=[10,5]"]


def _read(cwd: Path, args: list[str], wall: float, cpu: float) -> StudyRun:
    storage = st.storage(str(cwd / DEFAULT_JOURNAL))
    (summary,) = optuna.get_all_study_summaries(storage)
    s = optuna.load_study(study_name=summary.study_name, storage=storage)
    return StudyRun(args, wall, cpu, s.trials)


def pbt(k: int, epochs: int, seed: int, extra: list[str]) -> StudyRun:
    interval = max(1, epochs // 8)
    args = [
        *SPACE,
        *extra,
        f"epochs={epochs}",
        "pruner=none",
        "sweep.schedule=pbt",
        f"sweep.population={k}",
        f"sweep.n_trials={k}",
        f"pbt.interval={interval}",
        f"sweep.seed={seed}",
    ]
    cwd = fresh_dir("pbt")
    try:
        timed = run_command([HYPERLAB, *args], cwd)
        return _read(cwd, args, timed.wall, timed.cpu)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


def tpe_hyperband(budget: int, epochs: int, seed: int, extra: list[str]) -> StudyRun:
    """TPE + Hyperband continued until its trials trained `budget` epochs."""
    cwd = fresh_dir("tpe")
    wall = cpu = 0.0
    n = max(1, budget // epochs)
    try:
        for _ in range(50):  # each pass adds trials for the epochs still unspent
            args = [
                *SPACE,
                *extra,
                f"epochs={epochs}",
                "pruner=hyperband",
                f"sweep.n_trials={n}",
                f"sweep.seed={seed}",
            ]
            timed = run_command([HYPERLAB, *args], cwd)
            wall, cpu = wall + timed.wall, cpu + timed.cpu
            run = _read(cwd, args, wall, cpu)
            if run.epochs >= budget:
                return run
            # A pruned trial trains fewer epochs: the mean so far estimates the next ones'.
            mean = max(1.0, run.epochs / max(1, len(run.trials)))
            n += max(1, math.ceil((budget - run.epochs) / mean))
        return run
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a toy budget: checks the script runs")
    ap.add_argument("--population", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--record", action="store_true", help="keep the report in RESULTS.md")
    a = ap.parse_args()
    with recording("pbt_vs_tpe", a.record):
        measure(a)


def measure(a: argparse.Namespace) -> None:
    k = a.population or (4 if a.quick else 16)
    epochs = a.epochs or (4 if a.quick else 40)
    extra = ["dataset.n_samples=300"] if a.quick else []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = k * epochs
    print(f"PBT (population {k}) against TPE + Hyperband, {budget} epochs each, moons\n")
    print(
        "| round | PBT best dev_acc | PBT wall s | PBT epochs | TPE+HB best dev_acc "
        "| TPE+HB wall s | TPE+HB epochs | TPE+HB trials |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for r in range(a.rounds):
        # Alternate the order so that drift on a shared machine hits both sides.
        if r % 2:
            b = tpe_hyperband(budget, epochs, r, extra)
            p = pbt(k, epochs, r, extra)
        else:
            p = pbt(k, epochs, r, extra)
            b = tpe_hyperband(budget, epochs, r, extra)
        row = (p.best or math.nan, p.wall, p.epochs, b.best or math.nan, b.wall, b.epochs)
        rows.append(row)
        print(
            f"| {r} | {row[0]:.4f} | {row[1]:.1f} | {row[2]} | {row[3]:.4f} | {row[4]:.1f} "
            f"| {row[5]} | {len(b.trials)} |"
        )
    med = [statistics.median(x[i] for x in rows) for i in range(6)]
    print(
        f"| median | {med[0]:.4f} | {med[1]:.1f} | {med[2]:.0f} | {med[3]:.4f} | {med[4]:.1f} "
        f"| {med[5]:.0f} | |"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
