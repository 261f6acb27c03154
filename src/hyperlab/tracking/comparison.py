"""A multirun's comparison: every child run of its parent in one table (its overrides, how
it ended, its final and best metrics), and the best child by the objective, for the
parent run's records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The columns after the overrides and the outcome, in the order a reader compares them.
COLUMNS = (
    "dev_acc",
    "best_dev_acc",
    "best_epoch",
    "dev_loss",
    "best_dev_loss",
    "train_loss",
    "test_acc",
)


@dataclass(frozen=True)
class Child:
    """One job of the multirun as its MLflow run recorded it."""

    run_id: str
    params: str  # the job's overrides (the hyperlab.params tag)
    status: str
    metrics: dict[str, float]
    verdict: str  # the bias/variance reading


def children(client: Any, parent_id: str) -> list[Child]:
    """The child runs of `parent_id`, oldest first."""
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )
    return [
        Child(
            r.info.run_id,
            r.data.tags.get("hyperlab.params", r.info.run_name or ""),
            r.info.status,
            dict(r.data.metrics),
            r.data.tags.get("hyperlab.bias_variance", ""),
        )
        for r in runs
    ]


def best(runs: Sequence[Child], metric: str, direction: str) -> Child | None:
    """The finished child whose objective is best (the first on a tie), if any."""
    sign = 1.0 if direction == "maximize" else -1.0
    scored = [
        c for c in runs if c.status == "FINISHED" and math.isfinite(c.metrics.get(metric, math.nan))
    ]
    return max(scored, key=lambda c: sign * c.metrics[metric], default=None)


def markdown(runs: Sequence[Child], metric: str, direction: str) -> str:
    """The comparison table, best first, as Markdown (MLflow shows .md artifacts)."""
    top = best(runs, metric, direction)
    sign = -1.0 if direction == "maximize" else 1.0
    ordered = sorted(
        runs,
        key=lambda c: (
            c.status != "FINISHED",
            sign * c.metrics.get(metric, math.nan)
            if math.isfinite(c.metrics.get(metric, math.nan))
            else math.inf,
        ),
    )
    columns = [m for m in COLUMNS if any(m in c.metrics for c in runs)]
    head = ["overrides", "status", *columns, "bias/variance", "run"]
    lines = [
        f"# Multirun: {len(runs)} runs, objective {metric} ({direction})",
        "",
        f"Best: `{top.params}` ({metric} {top.metrics[metric]:.4g}, run {top.run_id})"
        if top
        else "No run finished.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for c in ordered:
        cells = [f"`{c.params}`", c.status.lower()]
        cells += [_cell(c.metrics.get(m)) for m in columns]
        cells += [c.verdict, c.run_id]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"
