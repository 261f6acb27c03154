"""The writer's bulk path for metric rows (tracking.store.insert_metrics) against MLflow's
own log_batch: the same runs, read back through MlflowClient, are equal."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from hyperlab.tracking.store import AlreadyRecorded, database_store, insert_metrics

# Out of order steps, a step logged twice, NaN and infinities, keys seen in one batch only.
BATCHES = [
    [("loss", 0.5, 1000, 0), ("acc", 0.25, 1000, 0), ("loss", 0.4, 1001, 1)],
    [("loss", float("nan"), 1002, 3), ("loss", 0.3, 1003, 2), ("acc", float("inf"), 1002, 3)],
    [("loss", 0.2, 1004, 3), ("acc", float("-inf"), 1004, 1), ("lr", 1e-3, 1004, 0)],
    [("loss", 0.1, 1000, 3)],  # older timestamp at the latest step: not the latest
]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_bulk_rows_read_back_as_log_batch_writes_them(tmp_path: Path) -> None:
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.create_experiment("x")
    ours, theirs = (c.create_run(exp).info.run_id for _ in range(2))
    store = database_store(c)
    assert store is not None
    for batch in BATCHES:
        insert_metrics(store, ours, batch)
        c.log_batch(theirs, metrics=[Metric(k, v, ts, step) for k, v, ts, step in batch])
    got, want = c.get_run(ours).data.metrics, c.get_run(theirs).data.metrics
    assert got.keys() == want.keys() == {"loss", "acc", "lr"}
    assert all(_same(got[k], want[k]) for k in want), (got, want)
    for key in want:
        rows = [
            sorted((m.step, m.timestamp, m.value) for m in c.get_metric_history(run, key))
            for run in (ours, theirs)
        ]
        assert len(rows[0]) == len(rows[1])
        for a, b in zip(*rows, strict=True):
            assert a[:2] == b[:2] and _same(a[2], b[2])


def test_a_row_recorded_twice_is_refused_whole(tmp_path: Path) -> None:
    """A request sent again must not add rows: the batch fails as one (the writer then
    logs it through log_batch, which skips what is recorded)."""
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = c.create_run(c.create_experiment("x")).info.run_id
    store = database_store(c)
    insert_metrics(store, run, BATCHES[0])
    with pytest.raises(AlreadyRecorded):
        insert_metrics(store, run, [("new", 1.0, 5, 5), *BATCHES[0]])
    assert [m.key for m in c.get_metric_history(run, "new")] == []
    assert len(c.get_metric_history(run, "loss")) == 2


def test_a_server_has_no_database_store() -> None:
    assert database_store(MlflowClient("http://127.0.0.1:9")) is None
