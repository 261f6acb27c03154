"""MLflow records written as rows, in one transaction per batch, into a database store.

MLflow's SQLAlchemy store builds an ORM object per row and commits once per call: about
0.4 ms a metric row, and 25-30 ms of writer time for a run's creation, params, config
artifacts and end on SQLite. A population of 32 trials made the writer, not the stack,
the bottleneck of a study. The writer process uses these functions on database stores (a
server keeps MLflow's client calls): they write MLflow's own tables, with its defaults, its
validation and its NaN/inf encoding, and a test reads what they wrote back through
MlflowClient and finds it equal to what MLflow's calls write.

A metric row already recorded (a request sent again) fails its whole batch with
AlreadyRecorded: the caller then writes it through log_batch, which skips duplicates.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperlab.errors import first_line

# (key, value, timestamp in ms, step)
MetricRow = tuple[str, float, int, int]


class AlreadyRecorded(Exception):
    """Some of a batch's metric rows were recorded before: none of the batch was."""


@dataclass(frozen=True)
class NewRun:
    """A run to create: what MlflowClient.create_run and log_batch(params) take."""

    name: str
    tags: Mapping[str, str]
    params: Mapping[str, str]


@dataclass(frozen=True)
class EndedRun:
    """A run to end: its last metric rows and tags, and its status."""

    run_id: str
    metrics: Sequence[MetricRow]
    tags: Mapping[str, str]
    status: str


def insert_metrics(store: Any, run_id: str, metrics: Sequence[MetricRow]) -> None:
    """Record run `run_id`'s metric rows as MLflow's log_batch does, in one transaction of
    two statements: the history rows and each key's latest value."""
    if metrics:
        _written(store, lambda session: _metrics(session, store, [(run_id, metrics)]))


def create_runs(store: Any, experiment_id: str, runs: Sequence[NewRun]) -> list[tuple[str, str]]:
    """Create `runs` in the experiment as MlflowClient.create_run followed by
    log_batch(params) would, all in one transaction; return their ids and artifact URIs."""
    from mlflow.entities import Param, RunTag
    from mlflow.store.tracking.dbmodels.models import SqlParam, SqlRun, SqlTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_USER
    from mlflow.utils.uri import append_to_uri_path
    from mlflow.utils.validation import _validate_batch_log_data, _validate_param_keys_unique
    from sqlalchemy import insert

    experiment = store.get_experiment(experiment_id)
    store._check_experiment_is_active(experiment)
    now = int(time.time() * 1000)
    created: list[tuple[str, str]] = []
    run_rows: list[dict[str, Any]] = []
    tag_rows: list[dict[str, Any]] = []
    param_rows: list[dict[str, Any]] = []
    for new in runs:
        if not new.name or MLFLOW_RUN_NAME in new.tags:
            raise ValueError("a batched run is named by its name, not by a tag")
        tags = [RunTag(k, v) for k, v in new.tags.items()] + [RunTag(MLFLOW_RUN_NAME, new.name)]
        params = [Param(k, v) for k, v in new.params.items()]
        _, params, tags = _validate_batch_log_data([], params, tags)
        _validate_param_keys_unique(params)
        run_id = uuid.uuid4().hex
        artifact_uri = append_to_uri_path(experiment.artifact_location, run_id, "artifacts")
        created.append((run_id, artifact_uri))
        run_rows.append(
            {
                "run_uuid": run_id,
                "name": new.name,
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": new.tags.get(MLFLOW_USER, "unknown"),
                "status": "RUNNING",
                "start_time": now,
                "end_time": None,
                "deleted_time": None,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": artifact_uri,
                "experiment_id": int(experiment_id),
            }
        )
        tag_rows += [{"run_uuid": run_id, "key": t.key, "value": t.value} for t in tags]
        param_rows += [{"run_uuid": run_id, "key": p.key, "value": p.value} for p in params]

    def write(session: Any) -> None:
        session.execute(insert(SqlRun), run_rows)
        for model, rows in ((SqlTag, tag_rows), (SqlParam, param_rows)):
            if rows:
                session.execute(insert(model), rows)

    _written(store, write)
    return created


def end_runs(store: Any, ended: Sequence[EndedRun]) -> None:
    """End `ended` as MLflow's log_batch (their metrics and tags) then set_terminated
    would, all in one transaction. A run that is not active refuses the batch."""
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
    from mlflow.utils.validation import _validate_batch_log_data
    from sqlalchemy import delete, insert, update

    # MLflow's models are untyped: mypy would read their column comparisons as bools.
    run: Any = SqlRun
    tag: Any = SqlTag
    now = int(time.time() * 1000)
    tags: dict[str, list[Any]] = {}
    for end in ended:
        _, _, tags[end.run_id] = _validate_batch_log_data(
            [], [], [RunTag(k, v) for k, v in end.tags.items()]
        )

    def write(session: Any) -> None:
        ids = [e.run_id for e in ended]
        active = session.query(run.run_uuid).filter(
            run.run_uuid.in_(ids), run.lifecycle_stage == "active"
        )
        if len(found := {r[0] for r in active}) != len(set(ids)):
            missing = sorted(set(ids) - found)
            raise MlflowException(f"runs {', '.join(missing)} are not active")
        _metrics(session, store, [(e.run_id, e.metrics) for e in ended])
        for run_id, run_tags in tags.items():
            if not run_tags:
                continue
            # Set, not added: a tag logged again takes its new value (as set_tag).
            keys = [t.key for t in run_tags]
            session.execute(delete(tag).where(tag.run_uuid == run_id, tag.key.in_(keys)))
            rows = [{"run_uuid": run_id, "key": t.key, "value": t.value} for t in run_tags]
            session.execute(insert(SqlTag), rows)
        for end in ended:
            session.execute(
                update(run)
                .where(run.run_uuid == end.run_id)
                .values(status=end.status, end_time=now)
            )

    _written(store, write)


def write_artifacts(artifact_uri: str, files: Mapping[str, str]) -> bool:
    """Write text `files` into a run's artifact directory when it is on this machine (a
    file: URI, as MLflow's local artifact repository would); False for any other place."""
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    if not is_local_uri(artifact_uri):
        return False
    root = Path(local_file_uri_to_path(artifact_uri))
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return True


def _written(store: Any, write: Any) -> None:
    """`write(session)` in one transaction; a metric row recorded before raises
    AlreadyRecorded (nothing of the batch is written)."""
    from sqlalchemy.exc import IntegrityError

    try:
        with store.ManagedSessionMaker(read_only=False) as session:
            write(session)
    except Exception as e:
        seen: BaseException | None = e
        while seen is not None:
            if isinstance(seen, IntegrityError):
                raise AlreadyRecorded(first_line(seen)) from e
            seen = seen.__cause__ or seen.__context__
        raise


def _metrics(session: Any, store: Any, batches: Iterable[tuple[str, Sequence[MetricRow]]]) -> None:
    """Insert each run's metric rows and update its keys' latest values."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
    from sqlalchemy import insert

    for run_id, metrics in batches:
        rows: list[dict[str, Any]] = []
        latest: dict[str, dict[str, Any]] = {}
        for key, value, timestamp, step in metrics:
            is_nan, stored = store.sanitize_metric_value(float(value))
            row = {
                "run_uuid": run_id,
                "key": key,
                "value": stored,
                "timestamp": timestamp,
                "step": step,
                "is_nan": is_nan,
            }
            rows.append(row)
            last = latest.get(key)
            if last is None or _newer(row, last):
                latest[key] = row
        if not rows:
            continue
        session.execute(insert(SqlMetric), rows)
        recorded = {
            m.key: m
            for m in session.query(SqlLatestMetric).filter(
                SqlLatestMetric.run_uuid == run_id, SqlLatestMetric.key.in_(list(latest))
            )
        }
        for key, row in latest.items():
            old = recorded.get(key)
            if old is None:
                session.add(SqlLatestMetric(**row))
            elif _newer(row, {c: getattr(old, c) for c in ("step", "timestamp", "value")}):
                old.value, old.step = row["value"], row["step"]
                old.timestamp, old.is_nan = row["timestamp"], row["is_nan"]


def _newer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """MLflow's order for a key's latest value: by step, then timestamp, then value."""
    return (a["step"], a["timestamp"], a["value"]) > (b["step"], b["timestamp"], b["value"])
