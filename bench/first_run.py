"""A default one-epoch run as a person starts it, against the same work written by hand.

Side by side, in alternating order (A B C F A B C F ...), each a fresh process:
A `hyperlab epochs=1` (MLflow on, in a directory whose store exists and with the data
cache warm, as from a second run on), B the same with `tracking.enabled=false`, C the
same as A with the data cache off (HYPERLAB_CACHE_DIR=, as a first run ever), and the
floor, F `python bench/handwritten_run.py` (the same data, split, model and optimizer).
Prints, per command, the median seconds to its first line of output and to its exit, and
the ratios to the floor. Goals (issue 14): the first line within 1 s, the
one-epoch run within 1.3x the floor.

    python bench/first_run.py [--rounds 5] [--record]

With --record, the report becomes section 8 of bench/RESULTS.md (kept in results.json).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
BENCH = Path(__file__).resolve().parent
ENV = {**os.environ, "COLUMNS": "200"}

COMMANDS = {
    "A hyperlab epochs=1": [str(BIN / "hyperlab"), "epochs=1"],
    "C hyperlab epochs=1, data cache off": [
        "env",
        "HYPERLAB_CACHE_DIR=",
        str(BIN / "hyperlab"),
        "epochs=1",
    ],
    "B hyperlab epochs=1 tracking.enabled=false": [
        str(BIN / "hyperlab"),
        "epochs=1",
        "tracking.enabled=false",
    ],
    "F hand-written script": [sys.executable, str(BENCH / "handwritten_run.py"), "1"],
}
COMMANDS = dict(sorted(COMMANDS.items()))


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds to the first line of output, seconds to exit)."""
    start = time.perf_counter()
    p = subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    p.stdout.readline()
    first = time.perf_counter() - start
    p.stdout.read()
    if p.wait() != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {p.returncode}")
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="write the report to RESULTS.md")
    args = parser.parse_args()
    began = time.perf_counter()
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        measure(args.rounds)
    print(report.getvalue(), end="")
    if args.record:
        record(report.getvalue(), " ".join(["python bench/first_run.py", *sys.argv[1:]]), began)


def record(report: str, command: str, began: float) -> None:
    """The report as section 8 of bench/RESULTS.md, kept in bench/results.json."""
    sys.path.insert(0, str(BENCH))
    from render import record as keep

    keep("first_run", report, command, (time.perf_counter() - began) / 60)


def measure(rounds: int) -> None:
    cwd = Path(tempfile.mkdtemp(prefix="hyperlab-first-run-"))
    try:
        timed(COMMANDS["A hyperlab epochs=1"], cwd)  # creates the MLflow store once
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
        for r in range(rounds):
            for name, command in COMMANDS.items():
                times[name].append(timed(command, cwd))
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    floor = statistics.median(t for _, t in times["F hand-written script"])
    print(f"{'command':45} {'first line':>11} {'exit':>8} {'exit / floor':>13}")
    for name, ts in times.items():
        first = statistics.median(f for f, _ in ts)
        total = statistics.median(t for _, t in ts)
        print(f"{name:45} {first:10.2f}s {total:7.2f}s {total / floor:12.2f}x")
    first_a = statistics.median(f for f, _ in times["A hyperlab epochs=1"])
    total_a = statistics.median(t for _, t in times["A hyperlab epochs=1"])
    print(
        f"goal first line <= 1 s: {first_a:.2f} s ({'met' if first_a <= 1 else 'missed'}); "
        f"goal run <= 1.3x floor: {total_a / floor:.2f}x "
        f"({'met' if total_a / floor <= 1.3 else 'missed'})"
    )


if __name__ == "__main__":
    main()
