"""RESULTS.md as a page (the opening, the findings with each goal met or missed, the
sections in order) and results.json in strict JSON. The page is rendered from what the
JSON holds, so that --from-json renders the same report."""

from __future__ import annotations

import contextlib
import io
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from figures import WITHIN, overhead_summary, pct, per_min, pruning_summary, shape
from tables import (
    md_efficiency,
    md_lesson,
    md_overhead,
    md_pruning,
    md_scaling,
    md_sections,
    md_startup,
)


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
    if r.get("population"):  # section 7's goals, as its script judged them
        goals = [line.strip() for line in r["population"]["report"].splitlines() if "goal" in line]
        out.append("**Caviar in one process** (section 7): " + "; ".join(goals) + ".")
    if r.get("first_run"):
        goals = [line.strip() for line in r["first_run"]["report"].splitlines() if "goal" in line]
        out.append("**A one-epoch run against a hand-written script** (section 8): " + goals[0])
    return out


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
        *md_population(r.get("population")),
        *md_recorded(r.get("first_run"), "8. A one-epoch run against a hand-written script"),
        *md_recorded(r.get("loop_speed"), "9. The training loop: augmentation and diagnostics"),
        *md_recorded(r.get("pbt_vs_tpe"), "10. Population-based training against TPE+Hyperband"),
        "## The run",
        "",
        *md_sections(r),
        "",
    ]
    return "\n".join(lines)


def grid_points(r: dict[str, Any], task: str) -> int:
    return int(r["efficiency"][task]["samplers"]["grid"]["grid_points"])


def jsonable(x: Any) -> Any:
    """NaN and infinity as null, tuples as lists: strict JSON."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    return x


def md_population(p: dict[str, Any] | None) -> list[str]:
    """Section 7, written by bench/population_study.py --record (its own run, not run.py's):
    its report as printed, with the command and the date."""
    return md_recorded(p, "7. Caviar in one process (sweep.population)")


def md_recorded(p: dict[str, Any] | None, title: str) -> list[str]:
    """A section a focused script recorded (--record): its report as printed, with the
    command and the date."""
    if not p:
        return []
    return [
        f"## {title}",
        "",
        f"Measured by `{p['command']}` on {p['date']} ({p['minutes']:.1f} minutes), on the "
        "otherwise idle machine. Its report, as printed:",
        "",
        "```",
        *p["report"].rstrip("\n").splitlines(),
        "```",
        "",
        *p.get("notes", []),
        "",
    ]


class _Tee(io.StringIO):
    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text)
        return super().write(text)

    def flush(self) -> None:
        self.out.flush()


@contextlib.contextmanager
def recording(key: str, on: bool, notes: Sequence[str] = ()) -> Iterator[None]:
    """With `on` (a script's --record), what the block prints is also kept as the script's
    section of bench/RESULTS.md (see record); it is printed as it comes either way."""
    if not on:
        yield
        return
    began = time.perf_counter()
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    command = " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    record(key, tee.getvalue(), command, (time.perf_counter() - began) / 60, notes)


def record(key: str, report: str, command: str, minutes: float, notes: Sequence[str] = ()) -> None:
    """A focused script's report as its section of bench/RESULTS.md, kept in
    bench/results.json under `key` (the scripts' --record)."""
    import datetime

    bench = Path(__file__).resolve().parent
    path = bench / "results.json"
    saved = json.loads(path.read_text())
    saved[key] = {
        "command": command,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "minutes": minutes,
        "report": report,
        "notes": list(notes),
    }
    (bench / "RESULTS.md").write_text(markdown(write_json(path, saved)))


def write_json(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Save results to path as strict JSON; return what the file holds."""
    saved: dict[str, Any] = jsonable(results)
    path.write_text(json.dumps(saved, indent=1) + "\n")
    return saved
