"""hyperlab's training loop and MLflow logging against their floors, measured side by side.

    python bench/loop_speed.py [--rounds N] [--record]

With --record, the report becomes section 9 of bench/RESULTS.md (kept in results.json).

1. Steps per second of hyperlab's fit() (which also evaluates dev and reduces the epoch's
   metrics) against a minimal hand-written torch loop: same model, data, batch size,
   optimizer, one thread. Goal: ratio >= 0.95.
2. The cost of data augmentation on fit(): augment=shift (1 pixel; and with 10 degrees of
   rotation) and augment=noise against augment=none, same model and data, side by side.
   augment=none builds no transform, so it is the loop of item 1.
3. The cost of diagnostics=layers on fit(): each epoch's per-layer statistics (a forward
   and backward pass on a 512-example probe) against the same fit() without them. With
   diagnostics off nothing is added: that is the loop of item 1.
4. A 20-epoch digits run through run() with MLflow tracking on against off, in one warm
   process as a sweep or multirun runs its jobs, and with a drain() after each run as a
   single `hyperlab` command waits at exit. Goal: on/off <= 1.05.

Rounds alternate A and B so that drift on a shared machine hits both; the medians of the
per-round ratios are reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn

from hyperlab.build import Parts, _instantiate, build, build_augment, build_model
from hyperlab.cli import CONFIG_DIR
from hyperlab.loop import fit
from hyperlab.run import run
from hyperlab.schema import Config, register
from hyperlab.tracking import drain
from hyperlab.validate import validate
from render import recording

EPOCHS = 20
BATCH = 64


def hand_written(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    g: torch.Generator,
    dev: tuple[torch.Tensor, torch.Tensor] | None,
) -> None:
    """The floor: shuffle, slice, forward, loss, backward, step; with `dev`, also the dev
    loss and accuracy after each epoch, as a script that watches dev must compute them."""
    m = len(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(m, generator=g)
        xs, ys = x[perm], y[perm]
        for i in range(0, m, BATCH):
            loss = F.cross_entropy(model(xs[i : i + BATCH]), ys[i : i + BATCH])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev is not None:
            model.eval()
            with torch.no_grad():
                logits = model(dev[0])
                F.cross_entropy(logits, dev[1]).item()
                (logits.argmax(1) == dev[1]).float().mean().item()


def build_model_and_optimizer(
    config: Config, parts: Parts
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh model and optimizer, seeded alike, so that both loops start from the same
    weights."""
    torch.manual_seed(0)
    model = build_model(config, parts.data.n_features, parts.data.n_classes)
    return model, _instantiate(config.optimizer)(model.parameters())


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def spread(xs: list[float]) -> str:
    """The interquartile range, or the one value of a single round."""
    if len(xs) < 2:
        return f"[{xs[0]:.3f}]"
    q = statistics.quantiles(xs, n=4)
    return f"[{q[0]:.3f}, {q[2]:.3f}]"


def loop_ratio(
    rounds: int, normalization: str, evaluate_dev: bool
) -> tuple[list[float], float, float]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        config = validate(
            compose(
                "config",
                overrides=[
                    "progress=false",
                    "tracking.enabled=false",
                    f"normalization={normalization}",
                ],
            )
        )
    parts = build(config)
    x, y = parts.data.x_train, parts.data.y_train
    steps = EPOCHS * -(-len(y) // BATCH)

    dev = (parts.data.x_dev, parts.data.y_dev)

    def ours() -> float:
        p = build_model_and_optimizer(config, parts)
        return timed(
            lambda: fit(
                p[0],
                p[1],
                parts.schedule,
                (x, y),
                dev,
                lr=config.lr,
                epochs=EPOCHS,
                batch_size=BATCH,
                generator=torch.Generator(),
            )
        )

    def floor() -> float:
        p = build_model_and_optimizer(config, parts)
        return timed(
            lambda: hand_written(
                p[0], p[1], x, y, EPOCHS, torch.Generator(), dev if evaluate_dev else None
            )
        )

    ours()  # warm up
    floor()
    ratios, ours_sps, floor_sps = [], [], []
    for _ in range(rounds):
        a, b = ours(), floor()
        ratios.append(b / a)  # (steps/s ours) / (steps/s floor)
        ours_sps.append(steps / a)
        floor_sps.append(steps / b)
    return ratios, statistics.median(ours_sps), statistics.median(floor_sps)


def timed_fit(
    config: Config, parts: Parts, model: nn.Module, opt: torch.optim.Optimizer, **extra: Any
) -> float:
    """Seconds of one fit() of `model` on digits, EPOCHS epochs, with `extra` arguments."""
    return timed(
        lambda: fit(
            model,
            opt,
            parts.schedule,
            (parts.data.x_train, parts.data.y_train),
            (parts.data.x_dev, parts.data.y_dev),
            lr=config.lr,
            epochs=EPOCHS,
            batch_size=BATCH,
            generator=torch.Generator().manual_seed(0),
            **extra,
        )
    )


AUGMENTS = {
    "shift": ["augment=shift"],
    "shift+rotate": ["augment=shift", "augment.max_degrees=10"],
    "noise": ["augment=noise"],
}


def augment_ratios(rounds: int) -> dict[str, tuple[list[float], float, float]]:
    """Per augment: (per-round time ratios augmented/none, median steps/s augmented,
    median steps/s none) of fit() on digits, the rounds alternating none and each."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        base = ["progress=false", "tracking.enabled=false"]
        configs = {
            name: validate(compose("config", overrides=[*base, *extra]))
            for name, extra in {"none": [], **AUGMENTS}.items()
        }
    parts = build(configs["none"])
    y = parts.data.y_train
    steps = EPOCHS * -(-len(y) // BATCH)
    transforms = {name: build_augment(c, parts.data.n_features) for name, c in configs.items()}

    def once(name: str) -> float:
        model, opt = build_model_and_optimizer(configs["none"], parts)
        return timed_fit(configs["none"], parts, model, opt, augment=transforms[name])

    for name in transforms:  # warm up
        once(name)
    times: dict[str, list[float]] = {name: [] for name in transforms}
    for _ in range(rounds):
        for name in transforms:
            times[name].append(once(name))
    none = times["none"]
    return {
        name: (
            [a / b for a, b in zip(times[name], none, strict=True)],
            steps / statistics.median(times[name]),
            steps / statistics.median(none),
        )
        for name in AUGMENTS
    }


def diagnostics_ratio(rounds: int) -> tuple[list[float], float, float]:
    """(per-round time ratios with/without diagnostics=layers, median steps/s with, without)
    of fit() on digits, the rounds alternating."""
    from hyperlab.layer_stats import LayerStats

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        config = validate(compose("config", ["progress=false", "tracking.enabled=false"]))
    parts = build(config)
    x, y = parts.data.x_train, parts.data.y_train
    steps = EPOCHS * -(-len(y) // BATCH)

    def once(layers: bool) -> float:
        model, opt = build_model_and_optimizer(config, parts)
        assert isinstance(model, nn.Sequential)
        listeners = [LayerStats(model, x, y)] if layers else []
        return timed_fit(config, parts, model, opt, listeners=listeners)

    once(True), once(False)  # warm up
    on: list[float] = []
    off: list[float] = []
    for i in range(rounds):
        for layers in (True, False) if i % 2 == 0 else (False, True):
            (on if layers else off).append(once(layers))
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    return ratios, steps / statistics.median(on), steps / statistics.median(off)


def tracking_ratio(
    rounds: int, drain_each: bool, uri: str, curve: bool = False
) -> tuple[list[float], float, float]:
    """run() with tracking on (with or without the learning curve) over tracking off."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        on, off = (
            compose(
                "config",
                overrides=[
                    "progress=false",
                    f"epochs={EPOCHS}",
                    f"tracking.enabled={t}",
                    f"tracking.uri={uri}",
                    "tracking.experiment=bench",
                    f"tracking.curve={str(curve).lower()}",
                ],
            )
            for t in ("true", "false")
        )

    def with_tracking() -> None:
        run(on)
        if drain_each:
            drain()

    with_tracking()  # warm up: the writer process, the store, the imports
    run(off)
    drain()
    ratios, t_on, t_off = [], [], []
    for _ in range(rounds):
        a, b = timed(with_tracking), timed(lambda: run(off))
        ratios.append(a / b)
        t_on.append(a)
        t_off.append(b)
    drain()
    return ratios, statistics.median(t_on), statistics.median(t_off)


def command_ratio(rounds: int, workdir: str) -> tuple[list[float], float, float]:
    """Whole `hyperlab epochs=20` commands (defaults: learning curve on), tracking on and
    off, each a fresh process."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).parent / "hyperlab")

    def command(tracking: str) -> float:
        return timed(
            lambda: subprocess.run(
                [exe, "progress=false", f"epochs={EPOCHS}", f"tracking.enabled={tracking}"],
                cwd=workdir,
                check=True,
                capture_output=True,
            )
        )

    command("true")  # creates the store's tables once
    ratios, t_on, t_off = [], [], []
    for _ in range(rounds):
        a, b = command("true"), command("false")
        ratios.append(a / b)
        t_on.append(a)
        t_off.append(b)
    return ratios, statistics.median(t_on), statistics.median(t_off)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--command-rounds", type=int, default=7)
    ap.add_argument("--skip-loop", action="store_true", help="only the MLflow measurements")
    ap.add_argument("--workdir", default="/tmp/hyperlab-bench")
    ap.add_argument("--record", action="store_true", help="keep the report in RESULTS.md")
    args = ap.parse_args()
    with recording("loop_speed", args.record):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    register()
    torch.set_num_threads(1)
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__} on {torch.get_num_threads()} thread"
    )
    print(
        f"task: MLP 64-128-128-10 on digits (1257 train), Adam, batch {BATCH}, {EPOCHS} "
        f"epochs; {args.rounds} alternating rounds\n"
    )
    print("steps/s of hyperlab's fit() over a hand-written loop (goal >= 0.95); median [IQR]")
    for norm in ("none", "batchnorm") if not args.skip_loop else ():
        for evaluate_dev, label in ((False, "bare steps"), (True, "steps + dev eval")):
            ratios, ours, floor = loop_ratio(args.rounds, norm, evaluate_dev)
            print(
                f"  normalization={norm:<9} vs {label:<16}  hyperlab {ours:6.0f} steps/s  "
                f"hand-written {floor:6.0f} steps/s  ratio {statistics.median(ratios):.3f} "
                f"{spread(ratios)}"
            )
    if not args.skip_loop:
        print("\ntime of fit() with data augmentation over augment=none (training batches only)")
        for name, (ratios, augmented, none) in augment_ratios(args.rounds).items():
            print(
                f"  augment={name:<13} {augmented:6.0f} steps/s  augment=none {none:6.0f} "
                f"steps/s  augmented/none {statistics.median(ratios):.3f} {spread(ratios)}"
            )
    if not args.skip_loop:
        ratios, on, off = diagnostics_ratio(args.rounds)
        print(
            "\ntime of fit() with diagnostics=layers over without\n"
            f"  diagnostics=layers {on:6.0f} steps/s  none {off:6.0f} steps/s  "
            f"layers/none {statistics.median(ratios):.3f} {spread(ratios)}"
        )
    print("\nwall time of a 20-epoch run() with MLflow on over off (goal <= 1.05); median [IQR]")
    store = f"sqlite:///{args.workdir}/mlflow.db"
    cases = (
        (False, False, "jobs in one process"),
        (True, False, "drain after each run"),
        (True, True, "same, + learning curve"),
    )
    for drain_each, curve, label in cases:
        ratios, on, off = tracking_ratio(args.rounds, drain_each, store, curve)
        print(
            f"  {label:<22} on {on:.3f} s  off {off:.3f} s  on/off "
            f"{statistics.median(ratios):.3f} {spread(ratios)}"
        )
    ratios, on, off = command_ratio(args.command_rounds, args.workdir)
    print(
        f"  {'cold command, defaults':<22} on {on:.3f} s  off {off:.3f} s  on/off "
        f"{statistics.median(ratios):.3f} {spread(ratios)}"
    )


if __name__ == "__main__":
    main()
