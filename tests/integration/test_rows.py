"""The writer's bulk path into a database store (tracking.rows) against MLflow's own calls:
metric rows against log_batch, runs created and ended in one transaction against
create_run, log_batch, log_artifacts and set_terminated. What both wrote, read back through
MlflowClient, is equal."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from hyperlab.tracking.rows import (
    AlreadyRecorded,
    EndedRun,
    NewRun,
    create_runs,
    end_runs,
    insert_metrics,
    write_artifacts,
)
from hyperlab.tracking.store import database_store

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


TAGS = {"mlflow.user": "ada", "hyperlab.trial": "3", "mlflow.parentRunId": "abc"}
PARAMS = {"lr": "0.01", "optimizer": "adam", "model.hidden_units": "[10, 5]"}
FILES = {"config.yaml": "lr: 0.01\n", "overrides.yaml": "- lr=0.01\n"}
END_TAGS = {"hyperlab.outcome": "finished", "hyperlab.trial": "3 (ended)"}
END_ROWS = [
    ("dev_acc", 0.9, 1000, 4),
    ("dev_acc", 0.8, 999, 3),
    ("test_acc", float("nan"), 1000, 0),
]


def _read(c: MlflowClient, run_id: str, tmp: Path) -> dict[str, object]:
    """What MlflowClient reads of a run, its own id written as RUN."""
    run = c.get_run(run_id)
    info = run.info
    local = Path(c.download_artifacts(run_id, "", str(tmp / run_id)))
    return {
        "info": (info.run_name, info.experiment_id, info.user_id, info.status),
        "stage": (info.lifecycle_stage, info.end_time is not None),
        "artifact_uri": info.artifact_uri.replace(run_id, "RUN"),
        "params": run.data.params,
        "tags": run.data.tags,
        "metrics": {k: repr(v) for k, v in run.data.metrics.items()},
        "history": sorted(
            (m.key, m.step, m.timestamp, repr(m.value))
            for k in run.data.metrics
            for m in c.get_metric_history(run_id, k)
        ),
        "files": {p.name: p.read_text() for p in sorted(local.iterdir())},
    }


def test_runs_created_and_ended_in_one_transaction_read_back_as_mlflow_writes_them(
    tmp_path: Path,
) -> None:
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())
    store = database_store(c)

    theirs = c.create_run(exp, run_name="trial 3: lr=0.01", tags=TAGS).info.run_id
    c.log_batch(theirs, params=[Param(k, v) for k, v in PARAMS.items()])
    (tmp_path / "files").mkdir()
    for name, text in FILES.items():
        (tmp_path / "files" / name).write_text(text)
    c.log_artifacts(theirs, str(tmp_path / "files"))
    c.log_batch(
        theirs,
        metrics=[Metric(*row) for row in END_ROWS],
        tags=[RunTag(k, v) for k, v in END_TAGS.items()],
    )
    c.set_terminated(theirs, "KILLED")

    created = create_runs(store, exp, [NewRun("trial 3: lr=0.01", TAGS, PARAMS)] * 2)
    for _, artifact_uri in created:
        assert write_artifacts(artifact_uri, FILES)
    running = _read(c, created[0][0], tmp_path)
    assert running["info"] == ("trial 3: lr=0.01", exp, "ada", "RUNNING")
    assert running["stage"] == ("active", False)
    end_runs(store, [EndedRun(run_id, END_ROWS, END_TAGS, "KILLED") for run_id, _ in created])

    want = _read(c, theirs, tmp_path)
    assert want["stage"] == ("active", True)
    for run_id, _ in created:
        assert _read(c, run_id, tmp_path) == want


def test_ending_a_run_that_is_not_active_writes_nothing_of_the_batch(tmp_path: Path) -> None:
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.create_experiment("x")
    store = database_store(c)
    (live, _), (deleted, _) = create_runs(store, exp, [NewRun("a", {}, {}), NewRun("b", {}, {})])
    c.delete_run(deleted)
    with pytest.raises(MlflowException, match="not active"):
        end_runs(store, [EndedRun(r, END_ROWS, END_TAGS, "FINISHED") for r in (live, deleted)])
    run = c.get_run(live)
    assert run.info.status == "RUNNING" and not run.data.metrics
    assert "hyperlab.outcome" not in run.data.tags


def test_an_experiment_made_before_hyperlab_set_its_kind_gets_one_and_a_user_s_stays(
    tmp_path: Path,
) -> None:
    from hyperlab.tracking import store as stores

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    old = c.create_experiment("old")
    mine = c.create_experiment("mine", tags={"mlflow.experimentKind": "genai_development"})
    for name in ("old", "mine", "new"):
        stores.experiment_id(c, uri, name, str(tmp_path / "art"))
    kinds = {e.name: e.tags.get("mlflow.experimentKind") for e in c.search_experiments()}
    assert kinds["old"] == kinds["new"] == "custom_model_development"
    assert kinds["mine"] == "genai_development"
    assert {old, mine} <= {e.experiment_id for e in c.search_experiments()}
