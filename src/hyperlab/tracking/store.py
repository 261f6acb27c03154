"""The MLflow stores the writer process writes to: a client per tracking URI, experiments
created on first use, and calls retried while a store is down or busy.

A store that does not answer (a tracking server restarting, a database down, SQLite busy
with other writers) is tried again with backoff for up to HYPERLAB_MLFLOW_RETRY_SECONDS
(60) seconds per call; after that, the call fails. MLflow's HTTP client retries on its
own before that (MLFLOW_HTTP_REQUEST_MAX_RETRIES, kept short by the writer process).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperlab.errors import first_line, masked
from hyperlab.retry import GaveUp, with_backoff

if TYPE_CHECKING:
    from mlflow import MlflowClient


def client(uri: str) -> MlflowClient:
    """An MlflowClient for `uri`; a relative SQLite file gets its directory created."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def is_server(uri: str) -> bool:
    """Whether `uri` names a tracking server (which keeps its own artifacts and schema)
    rather than a database or a local store this process writes itself."""
    return uri.startswith(("http://", "https://", "databricks"))


_experiments: dict[tuple[str, str], str] = {}
# The experiment's kind (one MLflow's UI bundle names), for UIs that read it. MLflow 3.17's
# own UI does not: it takes its GenAI or "Model training" view from the address, which is
# why a run's end prints one with workflowType=machine_learning (display.where_to_look).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def experiment_id(c: MlflowClient, uri: str, name: str, artifact_root: str | None) -> str:
    """The id of experiment `name`, created (with its artifact root) when it does not exist."""
    key = (uri, name)
    if key not in _experiments:
        exp = c.get_experiment_by_name(name)
        if exp is None:
            location = None
            # A local store keeps artifacts beside it; a server decides for itself.
            if artifact_root and not is_server(uri):
                location = Path(artifact_root).expanduser().resolve().as_uri()
            try:
                _experiments[key] = c.create_experiment(
                    name, artifact_location=location, tags={KIND_TAG: KIND}
                )
            except Exception:  # created by another process in the meantime
                exp = c.get_experiment_by_name(name)
                if exp is None:
                    raise
                _experiments[key] = exp.experiment_id
        else:
            if KIND_TAG not in exp.tags:  # made before hyperlab set a kind: a user's is kept
                c.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
            _experiments[key] = exp.experiment_id
    return _experiments[key]


RETRY_SECONDS = float(os.environ.get("HYPERLAB_MLFLOW_RETRY_SECONDS", "60"))
# MLflow's error codes for a store that is busy or down, rather than a bad request.
TRANSIENT_CODES = ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
TRANSIENT_TYPES = ("OperationalError", "InterfaceError", "ConnectionError", "Timeout")


def transient(e: BaseException) -> bool:
    """Whether `e` says the store is unreachable or busy (worth retrying), not that the
    request was wrong: a connection refused or timed out, SQLite's "database is locked"."""
    seen: BaseException | None = e
    while seen is not None:
        if "readonly database" in str(seen):  # SQLite's file deleted or made read-only
            return False
        if getattr(seen, "error_code", None) in TRANSIENT_CODES:
            return True
        if isinstance(seen, ConnectionError | TimeoutError) or any(
            t in type(seen).__name__ for t in TRANSIENT_TYPES
        ):
            return True
        # The REST client's own retries are spent: the server is down or unreachable.
        if "API request to" in str(seen) and ("failed with" in str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Retrying:
    """An MlflowClient whose calls are tried again with backoff while the store is down.

    Once one call has given up, later calls get one attempt each until a call succeeds:
    a store that stays down must not hold up every request for the full retry time."""

    def __init__(self, client: Any, uri: str, down: set[str]) -> None:
        self._client, self._uri, self._down = client, uri, down

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        return lambda *args, **kwargs: self.retried(name, lambda: method(*args, **kwargs))

    def retried(self, name: str, call: Callable[[], Any]) -> Any:
        """`call()` (a write named `name` in messages), tried again while the store is down."""

        def retrying(e: BaseException, delay: float) -> None:
            print(
                f"hyperlab: MLflow {name} at {masked(self._uri)} failed "
                f"({first_line(e)}); retrying in {delay:.1f} s",
                file=sys.stderr,
            )

        # A store that stayed down gets one attempt per call until one succeeds.
        seconds = 0.0 if self._uri in self._down else RETRY_SECONDS
        try:
            result = with_backoff(
                call, transient=transient, seconds=seconds, on_retry=retrying, max_delay=15.0
            )
        except GaveUp as e:
            self._down.add(self._uri)
            raise e.cause from None
        self._down.discard(self._uri)
        return result


def database_store(c: Any) -> Any | None:
    """The SQLAlchemy store behind client `c` (a Retrying or an MlflowClient) when its URI
    names a database (sqlite, postgresql, mysql...), else None (a server, a file store)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    inner = getattr(c, "_client", c)
    store = getattr(getattr(inner, "_tracking_client", None), "store", None)
    return store if isinstance(store, SqlAlchemyStore) else None
