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

This file orchestrates: the budgets, which sections run in what order, resuming, saving.
measure.py measures each section; figures.py, tables.py and render.py write the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from measure import (
    Budget,
    log,
    machine,
    now,
    overhead,
    pruning,
    samplers_section,
    scaling,
    startup,
    timed_section,
)
from render import findings, jsonable, markdown, write_json

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


Section = tuple[str, tuple[str, ...], Callable[[], dict[str, Any]]]


def plan(b: Budget) -> list[Section]:
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


def arguments() -> argparse.Namespace:
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
    return ap.parse_args()


def rerender(source: Path, out: Path, notes: list[str]) -> None:
    """--from-json: RESULTS.md from a saved results.json (and the notes added to it)."""
    saved = json.loads(source.read_text())
    if notes:
        saved = write_json(
            out / "results.json", {**saved, "notes": [*saved.get("notes", []), *notes]}
        )
    (out / "RESULTS.md").write_text(markdown(saved))


def budget_of(args: argparse.Namespace) -> tuple[Budget, str]:
    budget, name = (QUICK, "quick") if args.quick else (FULL, "full")
    if args.seeds:
        budget = dataclasses.replace(budget, seeds=args.seeds)
    if args.trials:
        budget = dataclasses.replace(budget, trials=args.trials)
    return budget, name


def one_thread() -> int:
    """Every measurement on one torch (and OpenMP) thread; Optuna's notices off. Returns
    torch's default thread count, which the report names."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    default = torch.get_num_threads()
    torch.set_num_threads(1)
    return default


def measure_all(
    results: dict[str, Any], budget: Budget, earlier: dict[str, Any], json_path: Path
) -> None:
    """Measure each section in turn into results, or keep it from an earlier run's, and
    save what is there so far after each."""
    for label, keys, measure in plan(budget):
        if all(k in earlier for k in keys) and label in earlier.get("sections", {}):
            log(f"{label}: kept from the run of {earlier['sections'][label]['date']}")
            results.update({k: earlier[k] for k in keys})
            results["sections"][label] = earlier["sections"][label]
            results["resumed"].append(label)
            continue
        log(label)
        measured, results["sections"][label] = timed_section(measure)
        results.update(measured)
        write_json(json_path, results)


def main() -> None:
    args = arguments()
    if args.from_json:
        rerender(args.from_json, args.out, args.note)
        return
    budget, name = budget_of(args)
    torch_threads = one_thread()  # before anything imports torch
    info = {**machine(), "torch_threads_default": torch_threads}
    command = " ".join(["python", "bench/run.py", *sys.argv[1:]])
    log(f"{command}: {name} budget {dataclasses.asdict(budget)}")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "results.json"
    results: dict[str, Any] = {
        "command": command,
        "date": now(),
        "budget_name": name,
        "budget": dataclasses.asdict(budget),
        "machine": info,
        "sections": {},
        "resumed": [],
        "complete": False,
    }
    measure_all(
        results, budget, previous_results(json_path, budget) if args.resume else {}, json_path
    )
    results["machine"]["load_average_end"] = os.getloadavg()
    results["complete"] = True
    # The report is rendered from what the JSON holds, as --from-json renders it.
    saved = write_json(json_path, results)
    (args.out / "RESULTS.md").write_text(markdown(saved))
    log(f"wrote {args.out / 'RESULTS.md'} and {json_path}")
    print("\n".join(f"- {f}" for f in findings(saved)))


if __name__ == "__main__":
    main()
