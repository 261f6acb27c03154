"""The floor of a study: Optuna's ask/tell around a hand-written torch loop, nothing else.

    python bench/floor_study.py --trials 40 [--epochs 20] [--seed 0]

The same task as `hyperlab search=lr sampler=log_uniform`: Adam's lr on a log scale in
[1e-4, 1], an MLP 64-128-128-10 on hyperlab's digits split (the same tensors), mini-batches
of 64, dev loss and accuracy after every epoch, the final dev accuracy told to the study.
Optuna's RandomSampler with the same seed proposes the same learning rates as hyperlab's
log_uniform sampler. No MLflow, no config composition, an in-memory study. Prints the
per-trial wall times as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import optuna
import torch
from torch import nn

from hyperlab.build import build_data
from loop_speed import BATCH, hand_written

# conf/dataset/digits.yaml
DIGITS = {
    "_target_": "hyperlab.data.digits",
    "split": {"train": 0.7, "dev": 0.15, "test": 0.15, "seed": 0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = build_data(DIGITS)
    x, y = data.x_train, data.y_train
    dev = (data.x_dev, data.y_dev)
    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=args.seed), direction="maximize"
    )
    seconds = []
    for _ in range(args.trials):
        start = time.perf_counter()
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
        )
        opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
        hand_written(model, opt, x, y, args.epochs, torch.Generator().manual_seed(0), dev)
        model.eval()
        with torch.no_grad():
            acc = (model(dev[0]).argmax(1) == dev[1]).float().mean().item()
        study.tell(trial, acc)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"trial_seconds": seconds, "best": study.best_value, "batch": BATCH}))


if __name__ == "__main__":
    main()
