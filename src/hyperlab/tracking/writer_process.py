"""The MLflow writer process: `python -m hyperlab.tracking.writer_process`.

MLflow's store calls are pure Python (SQLAlchemy) costing milliseconds each; run in a thread
of the training process they contend for the GIL and slow every training step. This
process does them on another core instead. It reads one JSON request a line on stdin and
answers `start` and `end` requests on stdout. When stdin closes (the trainer exited or was
killed), runs it started and was never told to end are ended as FAILED, so none is left
RUNNING.

A store that does not answer is tried again with backoff (hyperlab.tracking.store); when
the retries run out, the request fails and the trainer is told.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from hyperlab.errors import first_line
from hyperlab.tracking.rows import (
    AlreadyRecorded,
    EndedRun,
    NewRun,
    create_runs,
    end_runs,
    insert_metrics,
    write_artifacts,
)
from hyperlab.tracking.store import Retrying, client, database_store, experiment_id, is_server

BATCH_PARAMS = 100  # MLflow's limits for one log_batch call
BATCH_METRICS = 1000
# Unless set: about 3 s per call to a server that refuses, 90 s to one that never answers.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class _Opening:
    """A store being opened: SIGTERM waits until it is done.

    Opening a fresh store runs MLflow's migrations; a writer stopped in the middle would
    leave a half-made schema and a hot journal that read-only readers cannot open. The
    trainer ends a writer it never used with SIGTERM, which this defers past the opening."""

    def __init__(self) -> None:
        self.depth = 0
        self.stopped = False
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: Any) -> None:
        if self.depth:
            self.stopped = True
        else:
            _die(signum)

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.stopped and not self.depth:
            _die(signal.SIGTERM)


def _die(signum: int) -> None:
    """End as the signal's default would, with its exit status."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_opening: _Opening | contextlib.nullcontext[None] = contextlib.nullcontext()


def opening(uri: str) -> _Opening | contextlib.nullcontext[None]:
    """The guard for opening `uri`'s store: a database's migrations are waited for; a
    server makes no schema here, and one that does not answer must not hold up an exit."""
    return contextlib.nullcontext() if is_server(uri) else _opening


class Writer:
    def __init__(self) -> None:
        self.open: dict[int, tuple[Any, str]] = {}  # ref -> (client, run_id)
        self.errors: dict[int, str] = {}
        self.curves: dict[int, dict[str, list[tuple[int, float]]]] = {}  # ref -> history
        self.down: set[str] = set()  # stores whose retries ran out (see Retrying)
        self.clients: dict[str, Retrying] = {}

    def client(self, uri: str) -> Any:
        """The retrying client for `uri`, one per store."""
        if uri not in self.clients:
            self.clients[uri] = Retrying(client(uri), uri, self.down)
        return self.clients[uri]

    def handle(self, req: dict[str, Any]) -> None:
        op, ref = req["op"], req["ref"]
        try:
            if op == "open":  # a store to open before its first write: errors come then
                with opening(req["uri"]), contextlib.suppress(Exception):
                    self.client(req["uri"]).search_experiments(max_results=1)
            elif op == "warm":
                # A learning curve will be drawn when its run ends: matplotlib's import
                # (half a second) happens now, while the run trains, not after it.
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot
            elif op == "start":
                self.start(ref, req)
            elif op == "log":
                self.log(ref, req.get("metrics", ()), req.get("tags", {}))
            elif op == "files":
                c, run_id = self.open[ref]
                for path in req["paths"]:
                    c.log_artifact(run_id, path, req.get("artifact_path"))
            elif op == "batch":
                self.batch(req["requests"])
            elif op == "close_stale":
                self.close_stale(req)
            elif op == "end":
                self.log(ref, req.get("metrics", ()), req.get("tags", {}))
                c, run_id = self.open[ref]
                history = self.curves.pop(ref, {})
                for k, points in req.get("prior", {}).items():
                    history[k] = [(int(e), float(v)) for e, v in points] + history.get(k, [])
                if req.get("curve"):
                    try:
                        self.curve(c, run_id, history, req["curve"], req.get("title", ""))
                    except Exception as e:  # a missing plot must not fail a recorded run
                        print(f"hyperlab: no learning curve for run {run_id}: {e}", file=sys.stderr)
                self.end(ref, req["status"])
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as e:
            self.failed(ref, op, e)

    def failed(self, ref: int, op: str, e: Exception) -> None:
        """Request `op` of run `ref` raised `e`: the trainer is told with its run's reply."""
        # One line per run: its first error (a run never created fails every request).
        first = ref not in self.errors
        self.errors.setdefault(ref, first_line(e))
        if op == "start" and ref not in self.open:  # the run was never created
            reply(ref=ref, kind="start", error=self.errors[ref])
        elif op == "end":
            reply(ref=ref, kind="end", error=self.errors.pop(ref))
        if first:
            print(
                f"hyperlab: MLflow could not record {op} of run {ref}: {first_line(e)}",
                file=sys.stderr,
            )

    def batch(self, requests: list[dict[str, Any]]) -> None:
        """Requests sent together (tracker's batched()): consecutive starts of new runs, or
        ends of open runs, in one database store are each written in one transaction; the
        rest, and a batch that fails as a whole, request by request."""
        for (op, uri, _), group in itertools.groupby(requests, self._batch_key):
            reqs = list(group)
            try:
                if len(reqs) > 1 and op == "start" and uri:
                    self.start_many(reqs)
                    continue
                if len(reqs) > 1 and op == "end" and uri:
                    self.end_many(reqs)
                    continue
            except Exception as e:
                print(
                    f"hyperlab: MLflow batch of {len(reqs)} {op}s: {first_line(e)}; "
                    "writing them one by one",
                    file=sys.stderr,
                )
            for req in reqs:
                self.handle(req)

    def _batch_key(self, req: dict[str, Any]) -> tuple[str, str | None, str | None]:
        """Requests that may share a transaction share a key: (op, store, experiment); the
        store is None for what is written one by one."""
        op, ref = req["op"], req["ref"]
        if (
            op == "start"
            and not req.get("run_id")
            and database_store(self.client(req["uri"])) is not None
        ):
            return op, req["uri"], req["experiment"]
        if op == "end" and ref in self.open and not req.get("curve") and ref not in self.errors:
            c, _ = self.open[ref]
            if database_store(c) is not None:
                return op, str(id(c)), None
        return op, None, str(ref)

    def start_many(self, reqs: list[dict[str, Any]]) -> None:
        """New runs of one experiment in one transaction, then their config artifacts."""
        first = reqs[0]
        c = self.client(first["uri"])
        exp = experiment_id(c, first["uri"], first["experiment"], first.get("artifact_root"))
        new = [NewRun(r["run_name"], r["tags"], r.get("params", {})) for r in reqs]
        created = c.retried("create_run", lambda: create_runs(database_store(c), exp, new))
        for req, (run_id, _) in zip(reqs, created, strict=True):
            self.open[req["ref"]] = (c, run_id)
            reply(ref=req["ref"], kind="start", run_id=run_id, experiment_id=exp)
        for req, (run_id, artifact_uri) in zip(reqs, created, strict=True):
            try:
                self.artifacts(c, run_id, artifact_uri, req.get("artifacts") or {})
            except Exception as e:
                self.failed(req["ref"], "start", e)

    def end_many(self, reqs: list[dict[str, Any]]) -> None:
        """Open runs ended in one transaction with their last metrics and tags."""
        c, _ = self.open[reqs[0]["ref"]]
        ended = []
        for req in reqs:
            _, run_id = self.open[req["ref"]]
            metrics = [(k, v, ts, step) for k, v, ts, step in req.get("metrics", ())]
            ended.append(EndedRun(run_id, metrics, req.get("tags", {}), req["status"]))
        c.retried("set_terminated", lambda: end_runs(database_store(c), ended))
        for req in reqs:
            self.curves.pop(req["ref"], None)
            _, run_id = self.open.pop(req["ref"])
            reply(
                ref=req["ref"], kind="end", run_id=run_id, error=self.errors.pop(req["ref"], None)
            )

    def artifacts(self, c: Any, run_id: str, artifact_uri: str, files: dict[str, str]) -> None:
        """Text files logged as the run's artifacts: written in place on this machine."""
        if files and not write_artifacts(artifact_uri, files):
            with tempfile.TemporaryDirectory(prefix="hyperlab-") as tmp:
                for name, text in files.items():
                    (Path(tmp) / name).write_text(text)
                c.log_artifacts(run_id, tmp)

    def start(self, ref: int, req: dict[str, Any]) -> None:
        from mlflow.entities import Param

        c = self.client(req["uri"])
        if req.get("run_id"):  # reopen a run (a resumed study's parent): params stay as set
            run_id = req["run_id"]
            c.update_run(run_id, status="RUNNING")
            self.open[ref] = (c, run_id)
            exp = c.get_run(run_id).info.experiment_id
            reply(ref=ref, kind="start", run_id=run_id, experiment_id=exp)
            return
        exp = experiment_id(c, req["uri"], req["experiment"], req.get("artifact_root"))
        info = c.create_run(exp, run_name=req["run_name"], tags=req["tags"]).info
        run_id = str(info.run_id)
        self.open[ref] = (c, run_id)
        # Answer now: the trainer may print the id while params and artifacts are written.
        reply(ref=ref, kind="start", run_id=run_id, experiment_id=exp)
        params = [Param(k, v) for k, v in req.get("params", {}).items()]
        for i in range(0, len(params), BATCH_PARAMS):
            c.log_batch(run_id, params=params[i : i + BATCH_PARAMS])
        if req.get("artifacts"):
            self.artifacts(c, run_id, info.artifact_uri, req["artifacts"])

    def log(self, ref: int, metrics: Any, tags: dict[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        c, run_id = self.open[ref]
        history = self.curves.setdefault(ref, {})
        for k, v, _, step in metrics:
            history.setdefault(k, []).append((step, v))
        store = database_store(c)
        if store is not None and metrics:
            rows = [tuple(m) for m in metrics]
            try:
                c.retried("log_batch", lambda: insert_metrics(store, run_id, rows))
                metrics = ()
            except AlreadyRecorded:  # some were recorded already: log_batch skips those
                pass
        ms = [Metric(k, v, ts, step) for k, v, ts, step in metrics]
        ts = [RunTag(k, v) for k, v in tags.items()]
        while ms or ts:
            c.log_batch(run_id, metrics=ms[:BATCH_METRICS], tags=ts[:BATCH_PARAMS])
            ms, ts = ms[BATCH_METRICS:], ts[BATCH_PARAMS:]

    def curve(
        self,
        c: Any,
        run_id: str,
        history: dict[str, list[tuple[int, float]]],
        path: str,
        title: str,
    ) -> None:
        """Draw a run's learning curve to `path` and log it as an artifact."""
        from hyperlab.curves import draw

        c.log_artifact(run_id, str(draw(history, Path(path), title)))

    def end(self, ref: int, status: str) -> None:
        c, run_id = self.open.pop(ref)
        c.set_terminated(run_id, status)
        reply(ref=ref, kind="end", run_id=run_id, error=self.errors.pop(ref, None))

    def close_stale(self, req: dict[str, Any]) -> None:
        """End the RUNNING child runs of a study's parent run whose trials had ended
        (`ended`: trial number -> its failure reason) before the sweep that asks began:
        runs that a trainer could not close, because the tracking store was down when it
        ended or it died with its writer."""
        from mlflow.entities import RunTag

        c = self.client(req["uri"])
        runs = c.search_runs(
            [c.get_run(req["parent_run_id"]).info.experiment_id],
            filter_string=(
                f"tags.mlflow.parentRunId = '{req['parent_run_id']}' "
                "and attributes.status = 'RUNNING'"
            ),
            max_results=5000,
        )
        # Trial number -> the trial's failure reason ("" when it has none).
        ended = {str(n): why for n, why in req["ended"].items()}
        unclosed = "its trial ended without closing this run (the tracking store was down?)"
        for run in runs:
            trial = run.data.tags.get("hyperlab.trial")
            if trial in ended:
                reason = f"{ended[trial]}; {unclosed}" if ended[trial] else unclosed
                c.log_batch(run.info.run_id, tags=[RunTag("hyperlab.failure_reason", reason)])
                c.set_terminated(run.info.run_id, "FAILED")

    def abandon(self) -> None:
        """The trainer is gone: end what it left open as FAILED."""
        from mlflow.entities import RunTag

        for c, run_id in self.open.values():
            try:
                reason = "the training process ended without closing this run (killed?)"
                c.log_batch(run_id, tags=[RunTag("hyperlab.failure_reason", reason)])
                c.set_terminated(run_id, "FAILED")
            except Exception as e:  # left RUNNING: the next sweep closes it (close_stale)
                print(f"hyperlab: could not close run {run_id}: {first_line(e)}", file=sys.stderr)
        self.open.clear()


_stdout = sys.stdout


def reply(**fields: Any) -> None:
    try:
        _stdout.write(json.dumps(fields) + "\n")
        _stdout.flush()
    except (BrokenPipeError, ValueError):
        # The trainer is gone. What it sent before it died is still to be written: go on
        # until stdin ends, then abandon() closes the runs it left open.
        pass


def main() -> None:
    # Keep stdout for replies only: anything else printed goes to stderr.
    sys.stdout = sys.stderr
    # A tracking server's client prints two links per ended run: one line per trial, or
    # two hundred for a study, that the trainer's terminal does not need.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow's HTTP client retries a refused connection 7 times with backoff up to 2 min
    # (minutes per call), under the retries above: a lost server would hold the trainer
    # for many minutes. One call is kept short here, and RETRY_SECONDS bounds the whole.
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # Import MLflow and open the store named on the command line before the first request:
    # this takes seconds, which pass while the trainer imports torch and loads its data.
    import mlflow  # noqa: F401  (it sets its loggers up on import: quiet them after)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # It logs a database error with its traceback before raising it; the retry and the
    # final error are reported once each, without the traceback.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # Retried above: urllib3's own warning per attempt would repeat the same line.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

    global _opening
    _opening = _Opening()
    for uri in sys.argv[1:]:
        try:
            with opening(uri):
                client(uri).search_experiments(max_results=1)
        except Exception as e:  # reported again, with its run, when a request uses it
            print(
                f"hyperlab: MLflow store {uri} is not usable yet: {first_line(e)}", file=sys.stderr
            )
    writer = Writer()
    try:
        for line in sys.stdin:
            writer.handle(json.loads(line))
    finally:
        writer.abandon()
        sys.stderr.flush()
        # Every write is committed: skip MLflow's exit handlers, which take about a second.
        os._exit(0)


if __name__ == "__main__":
    main()
