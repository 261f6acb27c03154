"""A population of K trials trained as one stacked model, against the same K trials trained
one after another by hyperlab's loop, measured side by side in one process.

    python bench/population_speed.py [--rounds N] [--epochs E] [--quick]

For the course's moons network ([2, 10, 5, 2], ReLU, Adam, batch 64) and the digits MLP
(64-128-128-10 with batch norm, Adam, batch 64), at several population sizes K and 1 or 2
threads: the wall time of hyperlab.population.fit_population over K members against K
calls of hyperlab.loop.fit on the same members (same initializations, data order and
learning rates, log-spaced in [1e-4, 1e-1]). The sequential loop always runs on one thread,
as a worker trains one model today; rounds alternate A and B so that drift hits both, and
the median of the per-round ratios is reported. It also prints the median and the largest
relative difference between a member's final dev loss and its trial trained alone. The
largest is the chaotic member's: at lr 0.1, Adam on the digits MLP with batch norm turns
float rounding into visible differences, and the sequential loop on two threads differs
from itself on one thread by as much (0.337 against 0.357 after 3 epochs, measured here).

This measures training only: the study-level goals of the population (trials per minute of
a whole `hyperlab` study, bookkeeping per trial) are measured by the sweep benchmarks.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from hyperlab import data, init, optim, splitting
from hyperlab.loop import Metrics, fit
from hyperlab.models import MLP, batchnorm
from hyperlab.population import Member, fit_population
from hyperlab.schedules import Constant

Split = tuple[torch.Tensor, torch.Tensor]


def splits(name: str) -> tuple[Split, Split, int, int]:
    """Train and dev tensors of a bundled or generated data set, standardized."""
    x, y = data.digits() if name == "digits" else data.moons(n_samples=400)
    x, y, classes = data.check(x, y)
    s = splitting.split_standardize(
        x, y, classes, {"train": 0.7, "dev": 0.15, "test": 0.15, "seed": 0}
    )
    return (s.x_train, s.y_train), (s.x_dev, s.y_dev), s.n_features, s.n_classes


def members(task: str, k: int, n_features: int, n_classes: int) -> list[Member]:
    hidden, norm = ([10, 5], None) if task == "moons" else ([128, 128], batchnorm())
    out = []
    for i in range(k):
        lr = 10 ** (-4 + 3 * i / max(k - 1, 1))
        torch.manual_seed(i)
        model = MLP(n_features, n_classes, hidden, normalization=norm)
        init.he(model)
        out.append(Member(model, optim.adam(model.parameters(), lr=lr), Constant(), lr=lr, seed=i))
    return out


def sequential(ms: list[Member], train: Split, dev: Split, epochs: int) -> list[list[Metrics]]:
    torch.set_num_threads(1)
    return [
        fit(
            m.model,
            m.optimizer,
            m.schedule,
            train,
            dev,
            lr=m.lr,
            epochs=epochs,
            batch_size=64,
            generator=torch.Generator().manual_seed(m.seed),
        )
        for m in ms
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="toy sizes: shows it runs")
    args = parser.parse_args()
    rounds, epochs = (1, 3) if args.quick else (args.rounds, args.epochs)
    sizes = (
        {"moons": [8, 32], "digits": [8]}
        if args.quick
        else {
            "moons": [8, 32, 128],
            "digits": [8, 20, 32],
        }
    )
    print(f"# population vs sequential, {epochs} epochs, {rounds} round(s)")
    cpu = platform.processor() or platform.machine()
    print(f"# {cpu}, {os.cpu_count()} cores, torch {torch.__version__}")
    print("| task | K | threads | stacked s | sequential s | speed-up | dev loss rel diff |")
    print("|---|---|---|---|---|---|---|")
    for task, ks in sizes.items():
        train, dev, n_features, n_classes = splits(task)
        sequential(members(task, 1, n_features, n_classes), train, dev, 1)  # warm up
        for k in ks:
            for threads in (1, 2):
                ratios, stacked_s, seq_s, diffs = [], [], [], []
                for _ in range(rounds):
                    a = members(task, k, n_features, n_classes)
                    torch.set_num_threads(threads)
                    start = time.perf_counter()
                    results = fit_population(a, train, dev, epochs=epochs, batch_size=64)
                    stacked_s.append(time.perf_counter() - start)
                    b = members(task, k, n_features, n_classes)
                    start = time.perf_counter()
                    alone = sequential(b, train, dev, epochs)
                    seq_s.append(time.perf_counter() - start)
                    ratios.append(seq_s[-1] / stacked_s[-1])
                    for r, h in zip(results, alone, strict=True):
                        got, want = r.history[-1]["dev_loss"], h[-1]["dev_loss"]
                        diffs.append(abs(got - want) / abs(want))
                print(
                    f"| {task} | {k} | {threads} | {statistics.median(stacked_s):.2f} | "
                    f"{statistics.median(seq_s):.2f} | {statistics.median(ratios):.1f}x | "
                    f"median {statistics.median(diffs):.1e}, max {max(diffs):.1e} |"
                )


if __name__ == "__main__":
    main()
