"""The report's tables: one function a section, each writing the lines of RESULTS.md below
its heading from that section's part of results.json."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from figures import (
    floats,
    needed_per_seed,
    overhead_summary,
    pct,
    per_min,
    pruning_summary,
    quartiles,
    shape,
    superiority,
)


def spread(xs: Sequence[float], fmt: Callable[[float], str] = pct) -> str:
    """median (25th–75th percentile) of xs."""
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "–"
    q1, med, q3 = quartiles(xs)
    return fmt(med) if len(xs) == 1 else f"{fmt(med)} ({fmt(q1)}–{fmt(q3)})"


def needed_cell(needed: Sequence[int | None], budget: int) -> str:
    """The median trials needed (a seed that never got there counts as more than the
    budget), and how many seeds got there."""
    reached = sum(n is not None for n in needed)
    med = statistics.median(math.inf if n is None else n for n in needed)
    return f"{f'> {budget}' if math.isinf(med) else f'{med:g}'} ({reached}/{len(needed)})"


def md_efficiency(d: dict[str, Any]) -> list[str]:
    cps = d["checkpoints"]
    lines = []
    for key in ("digits", "moons"):
        t = d[key]
        per_seed = needed_per_seed(t)
        lines += [
            f"**{t['task']}** (`{' '.join(t['overrides'])}`): the best dev accuracy any study "
            f'found is {pct(t["best_any"])}%, so "within 0.5 points" of it is '
            f"{pct(t['target'])}% or more.",
            "",
            "| sampler | "
            + " | ".join(f"best after {c} trials, % (IQR)" for c in cps)
            + " | trials to within 0.5 pt of the best of all studies | of the best of the "
            "same seed | s per study (of which sampler) |",
            "|---|" + "---|" * len(cps) + "---|---|---|",
        ]
        for s, v in t["samplers"].items():
            note = f" (grid of {v['trials']})" if s == "grid" and v["trials"] < cps[-1] else ""
            lines.append(
                f"| {s}{note} | "
                + " | ".join(spread(floats(v["best_after"][str(c)])) for c in cps)
                + f" | {needed_cell(v['trials_to_within'], v['trials'])} | "
                f"{needed_cell(per_seed[s], v['trials'])} | "
                f"{statistics.median(v['seconds']):.1f} "
                f"({statistics.median(v['sampler_seconds']):.1f}) |"
            )
        lines += ["", *shape_lines(t, cps[-1]), ""]
    return lines


def shape_lines(t: dict[str, Any], last: int) -> list[str]:
    lines = [
        f"Expected shape at {last} trials. P: the chance that a study of the first beats a "
        "study of the second (ties half); seeds: wins/ties/losses of the first against the "
        "second with the same sampler seed.",
        "",
    ]
    for c in shape(t, last):
        verdict = "holds" if c.holds else "tie" if c.median_a == c.median_b else "does not hold"
        lines.append(
            f"- {c.a} over {c.b}: median {pct(c.median_a)} against {pct(c.median_b)}, "
            f"P = {c.p:.2f}, seeds {c.wins}/{c.ties}/{c.losses}: **{verdict}**"
        )
    return lines


def md_lesson(d: dict[str, Any]) -> list[str]:
    g, r = d["samplers"]["grid"], d["samplers"]["log_uniform"]
    p = superiority(r["best"], g["best"])
    lines = [
        f"`{' '.join(d['overrides'])}`, {statistics.median(g['trials']):g} trials, "
        f"{len(g['best'])} seeds (log_uniform is random search on each parameter's scale).",
        "",
        "| sampler | distinct lr: median (range) | distinct eps | best dev acc, % (IQR) "
        "| worst seed | best seed |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in (("grid", g), ("log_uniform", r)):
        lines.append(
            f"| {name} | {statistics.median(v['distinct_lr']):g} "
            f"({min(v['distinct_lr'])}–{max(v['distinct_lr'])}) | "
            f"{statistics.median(v['distinct_eps']):g} | {spread(v['best'])} | "
            f"{pct(min(v['best']))} | {pct(max(v['best']))} |"
        )
    lines += ["", f"A random-search study beats a grid study with P = {p:.2f} (ties half)."]
    return lines


def md_pruning(d: dict[str, Any]) -> list[str]:
    s = pruning_summary(d)
    lines = [
        f"`{d['command']}`, seeds S = 0..{len(d['runs']['none']) - 1}, 1 worker, MLflow on. "
        "The sampler is random (log_uniform), so with one seed every pruner sees the same "
        "configurations in the same order, and a completed trial scores what it scores "
        "without pruning: a pruner can only lose the best value by stopping its trial. "
        "Epochs trained: the values each trial reported, one per epoch (without a pruner a "
        "trial reports none, and a complete one trained them all). Medians over seeds; "
        "ratios and differences are against pruner=none with the same seed.",
        "",
        "| pruner | pruned trials | epochs trained | of none's | trial time of none's "
        "| command wall | best dev acc, % | best − none's, points (worst seed) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    med = statistics.median
    for p, v in s.items():
        lines.append(
            f"| {p} | {med(v['pruned']):g} of {med(v['trials']):g} | {med(v['epochs']):g} | "
            f"{100 * med(v['epochs_ratio']):.0f}% | {100 * med(v['span_ratio']):.0f}% | "
            f"{med(v['wall']):.1f} s | {pct(med(v['best']))} | "
            f"{100 * med(v['best_delta']):+.2f} ({100 * min(v['best_delta']):+.2f}) |"
        )
    return lines


def md_overhead(d: dict[str, Any]) -> list[str]:
    s = overhead_summary(d)
    n, t = d["n"], d["hyperlab_trial"]
    lines = [
        f"hyperlab: `{d['command']}` (MLflow on: a child run per trial, metrics every epoch, "
        f"journal storage); floor: `{d['floor']}` (Optuna ask/tell in memory, the same "
        "learning rates, model, split, batch size and optimizer, a hand-written loop that "
        "also evaluates dev each epoch, no MLflow). N = "
        f"{n} and {2 * n}, each a fresh process in a fresh directory, {len(d['reps'])} "
        "round(s) in alternating order; medians over rounds. CPU time is the command's user "
        "and system time with its child processes (hyperlab's worker and MLflow writer).",
        "",
        "| | marginal trial, wall | fixed cost, wall | marginal trial, CPU | fixed cost, CPU |",
        "|---|---|---|---|---|",
    ]
    for who in ("hyperlab", "floor"):
        lines.append(
            f"| {who} | {s[f'{who}_wall']:.3f} s | {s[f'fixed_{who}_wall']:.1f} s | "
            f"{s[f'{who}_cpu']:.3f} s | {s[f'fixed_{who}_cpu']:.1f} s |"
        )
    lines += [
        f"| hyperlab / floor | **{s['ratio_wall']:.2f}** (rounds {s['ratio_wall_min']:.2f}–"
        f"{s['ratio_wall_max']:.2f}) | | {s['ratio_cpu']:.2f} (rounds {s['ratio_cpu_min']:.2f}–"
        f"{s['ratio_cpu_max']:.2f}) | |",
        "",
        f"Inside hyperlab's {2 * n}-trial study (medians per trial, from the journal): ask to "
        f"tell {t['ask_to_tell']:.3f} s, of which build {t['build']:.3f} s, fit "
        f"{t['fit']:.3f} s, final evaluation and MLflow hand-off {t['finish']:.3f} s; the "
        f"floor's trial {s['floor_trial']:.3f} s (ratio {s['ratio_in_study']:.2f}). Trial "
        f"states: {t['states']}, {t['epochs']} epochs trained.",
    ]
    return lines


def md_scaling(d: dict[str, Any]) -> list[str]:
    one, two = d["1"], d["2"]
    lines = [
        f"`{d['command']}` (TPE, the default sampler), MLflow on. Rates count the steady "
        "state: trials started once every worker has finished its first, to the last end. "
        "Idle: a worker's gaps between one trial's end and its next start, plus its tail "
        "after its last trial while another still trains, over workers × span.",
        "",
        "| workers | trials/min | epochs/min | span | idle | gaps (median gap) | tail "
        "| command wall | trials |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w, v in (("1", one), ("2", two)):
        trials, epochs = per_min(v)
        lines.append(
            f"| {w} | {trials:.1f} | {epochs:.0f} | "
            f"{v['span']:.1f} s | {100 * v['idle_fraction']:.1f}% | {v['gaps']:.2f} s "
            f"({1000 * v['median_gap']:.0f} ms) | {v['tail']:.2f} s | {v['wall']:.1f} s | "
            f"{v['states']} |"
        )
    lines += [
        "",
        f"2 workers over 1: {per_min(two)[0] / per_min(one)[0]:.2f} in trials/min, "
        f"{per_min(two)[1] / per_min(one)[1]:.2f} in epochs/min"
        + (
            f"; this machine's ceiling (two hand-written training processes over one, "
            f"bench/sweep_speed.py): {d['ceiling']:.2f}."
            if "ceiling" in d
            else "."
        ),
    ]
    return lines


def md_startup(d: dict[str, Any]) -> list[str]:
    first_wall, first_cpu = d["first_run_new_store"]
    lines = [
        "Median wall and CPU time of each command (a fresh process each time, in a directory "
        "whose MLflow store exists; the very first run, which creates the store, took "
        f"{first_wall:.1f} s, CPU {first_cpu:.1f} s), and where `python -X importtime` puts "
        "the imports: self time summed per top-level package, and the largest imports made "
        "at the top level, at start-up or lazily while running (cumulative).",
        "",
        "| command | wall: median (range) | CPU | imports | by package | largest top-level "
        "imports |",
        "|---|---|---|---|---|---|",
    ]
    for name, ws in d["walls"].items():
        imp = d["imports"].get(name)
        total = f"{imp['total']:.2f} s" if imp else ""
        packages = ", ".join(f"{p} {t:.2f}" for p, t in imp["by_package"][:5]) if imp else ""
        top = ", ".join(f"{p} {t:.2f}" for p, t in imp["top_level"][:4]) if imp else ""
        lines.append(
            f"| `{name}` | {statistics.median(ws):.2f} s ({min(ws):.2f}–{max(ws):.2f}) | "
            f"{statistics.median(d['cpus'][name]):.2f} s | {total} | {packages} | {top} |"
        )
    lines += [
        "",
        "Import times come from a separate `-X importtime` run, which is itself slower. "
        "torch imports torch._dynamo when the first optimizer is built. CPU time includes "
        "the MLflow writer process where tracking is on.",
    ]
    return lines


def md_sections(r: dict[str, Any]) -> list[str]:
    lines = [
        "| section | wall | CPU (all processes) | 1-min load average, start → end | measured |",
        "|---|---|---|---|---|",
    ]
    for label, x in r["sections"].items():
        lines.append(
            f"| {label} | {x['seconds'] / 60:.1f} min | {x['cpu_seconds'] / 60:.1f} min | "
            f"{x['load'][0]:.1f} → {x['load'][1]:.1f} | {x['date']} |"
        )
    return lines
