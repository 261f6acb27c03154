from __future__ import annotations

import math

from hyperlab.tracking.comparison import Child, best, markdown


def child(run: str, status: str, **metrics: float) -> Child:
    return Child(run, f"lr={run}", status, metrics, "high bias")


RUNS = [
    child("a", "FINISHED", dev_acc=0.8, dev_loss=0.5, best_dev_acc=0.85, best_epoch=3.0),
    child("b", "FAILED", dev_acc=math.nan),  # diverged
    child("c", "FINISHED", dev_acc=0.9, dev_loss=0.7, best_dev_acc=0.9, best_epoch=5.0),
    child("d", "KILLED", dev_acc=0.95),  # stopped: not a result
]


def test_the_best_child_is_a_finished_one_in_the_objective_s_direction() -> None:
    assert best(RUNS, "dev_acc", "maximize") == RUNS[2]
    assert best(RUNS, "dev_loss", "minimize") == RUNS[0]
    assert best(RUNS[1:2], "dev_acc", "maximize") is None


def test_the_table_lists_every_child_best_first_with_final_and_best_metrics() -> None:
    text = markdown(RUNS, "dev_acc", "maximize")
    assert "Best: `lr=c` (dev_acc 0.9, run c)" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["lr=c", "lr=a", "lr=d", "lr=b"]
    assert rows[0] == "| `lr=c` | finished | 0.9 | 0.9 | 5 | 0.7 | high bias | c |"
    assert "| overrides | status | dev_acc | best_dev_acc | best_epoch | dev_loss |" in text
    assert markdown(RUNS[1:2], "dev_acc", "maximize").count("No run finished.") == 1
