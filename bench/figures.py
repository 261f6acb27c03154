"""The report's arithmetic: the figures bench/run.py derives from its measurements (and
from results.json again when it re-renders), and pct, the one way a share is written."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WITHIN = 0.005  # half a point of accuracy
MODEL_BASED = ("tpe", "gp", "cmaes")


def quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile), inclusive method; one value: itself."""
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def superiority(a: Sequence[float], b: Sequence[float]) -> float:
    """P(a value from a beats one from b), ties counting half."""
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def best_after(values: Sequence[float], n: int) -> float:
    """The best value among the first n trials (failed trials are NaN); NaN if none."""
    finite = [v for v in values[:n] if not math.isnan(v)]
    return max(finite) if finite else math.nan


def trials_to_reach(values: Sequence[float], target: float) -> int | None:
    """The 1-based number of the first trial at or above target, None if none reaches it."""
    for i, v in enumerate(values, 1):
        if not math.isnan(v) and v >= target - 1e-9:
            return i
    return None


def nan_low(v: float | None) -> float:
    """For ranking: a failed trial (NaN, or null in JSON) below every value."""
    return -math.inf if v is None or math.isnan(v) else v


def floats(values: Sequence[float | None]) -> list[float]:
    """Trial values as read back from JSON (null for a failed trial) with NaN again."""
    return [math.nan if v is None else v for v in values]


def needed_per_seed(t: dict[str, Any]) -> dict[str, list[int | None]]:
    """Per sampler and seed: the trials needed to come within half a point of the best value
    any sampler found with the same seed (the studies of one seed index)."""
    values = {s: [floats(v) for v in x["values"]] for s, x in t["samplers"].items()}
    n_seeds = min(len(v) for v in values.values())
    tops = [
        max(best_after(values[s][i], len(values[s][i])) for s in values) for i in range(n_seeds)
    ]
    return {
        s: [trials_to_reach(vs[i], tops[i] - WITHIN) for i in range(n_seeds)]
        for s, vs in values.items()
    }


@dataclass(frozen=True)
class Comparison:
    """One of the issue's expected comparisons at the last checkpoint."""

    a: str
    b: str
    median_a: float
    median_b: float
    p: float  # P(a study of a beats one of b), ties half
    wins: int  # seeds where a beat b (same sampler seed: they share their first trials)
    ties: int
    losses: int

    @property
    def holds(self) -> bool:
        return self.median_a > self.median_b


def shape(t: dict[str, Any], last: int) -> list[Comparison]:
    pairs = [("log_uniform", "random"), ("random", "grid")]
    pairs += [(s, "log_uniform") for s in (*MODEL_BASED, "coarse_to_fine")]
    out = []
    for a, b in pairs:
        xa = t["samplers"][a]["best_after"][str(last)]
        xb = t["samplers"][b]["best_after"][str(last)]
        paired = list(zip(xa, xb, strict=True))
        out.append(
            Comparison(
                a,
                b,
                statistics.median(xa),
                statistics.median(xb),
                superiority(xa, xb),
                sum(x > y for x, y in paired),
                sum(x == y for x, y in paired),
                sum(x < y for x, y in paired),
            )
        )
    return out


def pruning_summary(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    none = d["runs"]["none"]
    out = {}
    for p, runs in d["runs"].items():
        out[p] = {
            "epochs": [r["epochs"] for r in runs],
            "epochs_ratio": [r["epochs"] / n["epochs"] for r, n in zip(runs, none, strict=True)],
            "wall": [r["wall"] for r in runs],
            "span_ratio": [r["span"] / n["span"] for r, n in zip(runs, none, strict=True)],
            "best": [r["best"] for r in runs],
            "best_delta": [r["best"] - n["best"] for r, n in zip(runs, none, strict=True)],
            "pruned": [r["states"].get("PRUNED", 0) for r in runs],
            "trials": [sum(r["states"].values()) for r in runs],
        }
    return out


def overhead_summary(d: dict[str, Any]) -> dict[str, float]:
    """Medians over rounds: marginal trials, their ratio, and the fixed costs (the time of
    the N-trial command minus N marginal trials), in wall and CPU time."""
    n, reps = d["n"], d["reps"]
    out: dict[str, float] = {}
    for m in ("wall", "cpu"):
        for who in ("hyperlab", "floor"):
            out[f"{who}_{m}"] = statistics.median(r["marginal"][f"{who}_{m}"] for r in reps)
            out[f"fixed_{who}_{m}"] = statistics.median(
                r[m][f"{who}_{n}"] - n * r["marginal"][f"{who}_{m}"] for r in reps
            )
        ratios = [r["marginal"][f"hyperlab_{m}"] / r["marginal"][f"floor_{m}"] for r in reps]
        out[f"ratio_{m}"] = statistics.median(ratios)
        out[f"ratio_{m}_min"], out[f"ratio_{m}_max"] = min(ratios), max(ratios)
    out["floor_trial"] = statistics.median(r["floor_trial_median"] for r in reps)
    out["ratio_in_study"] = d["hyperlab_trial"]["ask_to_tell"] / out["floor_trial"]
    return out


def per_min(v: dict[str, Any]) -> tuple[float, float]:
    """A scaling row's trials and epochs per minute: NaN where its study had no steady
    window (too few trials), which results.json holds as null."""
    trials, epochs = floats([v["trials_per_min"], v["epochs_per_min"]])
    return trials, epochs


def pct(x: float | None, digits: int = 2) -> str:
    """A share in percent (the log and the report write every accuracy so); – for none."""
    return "–" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}"
