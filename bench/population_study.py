"""Caviar in one process at the study level: the same `hyperlab` study with trials trained
one by one (sweep.population=1) and as stacks of K (sweep.population=K), side by side.

    python bench/population_study.py [--trials N] [--epochs E] [--population K] [--rounds R]

For the course's moons network ([2, 10, 5, 2], ReLU, Adam, batch 64, 1000 examples) and
the default MLP on digits (64-128-128-10), a study of N trials (search=lr, log-uniform
sampler, no pruning, one worker), with MLflow on and off. Rounds alternate the two
settings (A B A B) in fresh directories so that drift hits both; the median per-round
ratio is reported for:

1. the whole command's wall time (start-up, setup and the report included): what a person
   waits for;
2. the steady rate, trials per minute from the first trial's end to the last one's (see
   commands.per_minute): what a longer study gets.

Goals (issue 13): moons >= 8x the trials per minute of population=1; digits, which is
compute-bound on one CPU core, no worse than 0.8x; MLflow on costs no more than 1.25x off.
"""

from __future__ import annotations

import argparse
import os
import statistics

import optuna

from commands import StudyRun, per_minute, study

# The course's moons network [2, 10, 5, 2], and the default MLP (128-128) on digits.
MODELS = {"moons": ["model.hidden_units=[10,5]"], "digits": []}


def run(dataset: str, trials: int, epochs: int, population: int, tracking: bool) -> StudyRun:
    args = [
        "search=lr",
        "sampler=log_uniform",
        "pruner=none",
        f"dataset={dataset}",
        *MODELS[dataset],
        f"epochs={epochs}",
        f"sweep.n_trials={trials}",
        "sweep.workers=1",
        f"sweep.population={population}",
        f"tracking.enabled={str(tracking).lower()}",
    ]
    return study(args, f"population-{population}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--datasets", default="moons,digits")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    k = args.population
    print(
        f"machine: {os.cpu_count()} cores; each study: search=lr, {args.trials} trials of "
        f"{args.epochs} epochs, 1 worker; population=1 against population={k}; "
        f"{args.rounds} round(s), A B alternating\n"
    )
    for dataset in args.datasets.split(","):
        for tracking in (True, False):
            walls, rates = [], []
            for r in range(args.rounds):
                order = (1, k) if r % 2 == 0 else (k, 1)
                runs = {p: run(dataset, args.trials, args.epochs, p, tracking) for p in order}
                one, many = runs[1], runs[k]
                assert len(one.finished()) == len(many.finished()) == args.trials
                walls.append(one.wall / many.wall)
                rates.append(per_minute(many.trials) / per_minute(one.trials))
                print(
                    f"  {dataset}, MLflow {'on ' if tracking else 'off'}, round {r}: command "
                    f"{one.wall:6.1f} s vs {many.wall:6.1f} s; "
                    f"{per_minute(one.trials):7.1f} vs {per_minute(many.trials):7.1f} trials/min"
                )
            print(
                f"{dataset}, MLflow {'on' if tracking else 'off'}: population={k} over 1: "
                f"command wall {statistics.median(walls):.2f}x faster, steady trials/min "
                f"{statistics.median(rates):.2f}x\n"
            )


if __name__ == "__main__":
    main()
