"""A study's speed: parallel workers and the overhead a trial carries beyond training.

    python bench/sweep_speed.py [--trials N] [--epochs E]

Runs the same study (search=lr on digits, log-uniform sampler, no pruning, MLflow on)
through the `hyperlab` command with 1 and with 2 workers, each in a fresh directory, and
reads the timings back from the study's journal:

1. trials per minute, first trial start to last trial end (process start-up excluded),
   and the 2-worker/1-worker ratio. Goal: >= 1.8 on 2 cores.
2. per trial, the wall time from ask to tell (claim, compose, build, train, MLflow, tell)
   over the time spent training in fit(). Goal: under 1.10 for 20-epoch trials.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import optuna

from commands import StudyRun, per_minute, study


def run_study(workers: int, trials: int, epochs: int) -> StudyRun:
    args = ["search=lr", "sampler=log_uniform", "pruner=none", f"sweep.n_trials={trials}"]
    return study([*args, f"sweep.workers={workers}", f"epochs={epochs}"], f"sweep-{workers}w")


HAND_LOOP = """
import time, torch, torch.nn as nn, torch.nn.functional as F
from sklearn.datasets import load_digits
torch.set_num_threads(1)
d = load_digits()
x = torch.tensor(d.data[:1257], dtype=torch.float32)
y = torch.tensor(d.target[:1257])
m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                  nn.Linear(128, 10))
opt = torch.optim.Adam(m.parameters(), 1e-3)
start, steps = time.time(), 0
while time.time() - start < 10:
    perm = torch.randperm(1257)
    for i in range(0, 1257, 64):
        loss = F.cross_entropy(m(x[perm[i:i + 64]]), y[perm[i:i + 64]])
        opt.zero_grad(); loss.backward(); opt.step(); steps += 1
print(steps / (time.time() - start))
"""


def machine_ceiling() -> float:
    """Steps/s of two hand-written training processes at once over one alone: what two
    cores give two workers on this machine before any runner is involved."""

    def together(n: int) -> float:
        procs = [
            subprocess.Popen([sys.executable, "-c", HAND_LOOP], stdout=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        return sum(float(p.communicate()[0]) for p in procs)

    return together(2) / together(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"machine: {os.cpu_count()} cores; study: search=lr on digits, {args.trials} trials "
        f"of {args.epochs} epochs, MLflow on\n"
    )
    results = {w: run_study(w, args.trials, args.epochs) for w in (1, 2)}
    rates = {w: per_minute(r.trials) for w, r in results.items()}
    for w, r in results.items():
        print(
            f"  {w} worker(s): {rates[w]:6.1f} trials/min  ({len(r.trials)} trials, command "
            f"{r.wall:.1f} s with start-up)"
        )
    print(f"  ratio 2/1 workers: {rates[2] / rates[1]:.2f}  (goal >= 1.8)")
    print(f"  this machine's ceiling, two hand-written loops over one: {machine_ceiling():.2f}\n")

    one = results[1]
    overheads = [
        (t.datetime_complete - t.datetime_start).total_seconds() / t.user_attrs["seconds"]["fit"]
        for t in one.finished()
        if t.datetime_complete and t.datetime_start
    ]
    print(
        f"per trial, 1 worker (median of {len(one.trials)}): "
        f"ask-to-tell {one.ask_to_tell():.3f} s, "
        f"fit {one.median_attr('fit'):.3f} s; build {one.median_attr('build'):.3f} s, "
        f"final evaluation and MLflow hand-off {one.median_attr('finish'):.3f} s"
    )
    print(f"  ask-to-tell / fit: {statistics.median(overheads):.3f}  (goal < 1.10)")


if __name__ == "__main__":
    main()
