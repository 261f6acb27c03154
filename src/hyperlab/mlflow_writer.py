"""The MLflow writer process: `python -m hyperlab.mlflow_writer`.

MLflow's store calls are pure Python (SQLAlchemy) costing milliseconds each; run in a thread
of the training process they contend for the GIL and slow every training step. This
process does them on another core instead. It reads one JSON request a line on stdin and
answers `start` and `end` requests on stdout. When stdin closes (the trainer exited or was
killed), runs it started and was never told to end are ended as FAILED, so none is left
RUNNING.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

BATCH_PARAMS = 100  # MLflow's limits for one log_batch call
BATCH_METRICS = 1000


class Writer:
    def __init__(self) -> None:
        self.open: dict[int, tuple[Any, str]] = {}  # ref -> (client, run_id)
        self.errors: dict[int, str] = {}
        self.curves: dict[int, dict[str, list[tuple[int, float]]]] = {}  # ref -> history

    def handle(self, req: dict[str, Any]) -> None:
        op, ref = req["op"], req["ref"]
        try:
            if op == "start":
                self.start(ref, req)
            elif op == "log":
                self.log(ref, req.get("metrics", ()), req.get("tags", {}))
            elif op == "files":
                c, run_id = self.open[ref]
                for path in req["paths"]:
                    c.log_artifact(run_id, path, req.get("artifact_path"))
            elif op == "end":
                self.log(ref, req.get("metrics", ()), req.get("tags", {}))
                c, run_id = self.open[ref]
                history = self.curves.pop(ref, {})
                if req.get("curve"):
                    try:
                        self.curve(c, run_id, history, req["curve"], req.get("title", ""))
                    except Exception as e:  # a missing plot must not fail a recorded run
                        print(f"hyperlab: no learning curve for run {run_id}: {e}", file=sys.stderr)
                self.end(ref, req["status"])
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as e:
            self.errors.setdefault(ref, f"{type(e).__name__}: {e}")
            if op == "start" and ref not in self.open:  # the run was never created
                reply(ref=ref, kind="start", error=self.errors[ref])
            elif op == "end":
                reply(ref=ref, kind="end", error=self.errors.pop(ref))
            print(f"hyperlab: MLflow could not record {op} of run {ref}: {e}", file=sys.stderr)

    def start(self, ref: int, req: dict[str, Any]) -> None:
        from mlflow.entities import Param

        from hyperlab.tracking import client, experiment_id

        c = client(req["uri"])
        if req.get("run_id"):  # reopen a run (a resumed study's parent): params stay as set
            run_id = req["run_id"]
            c.update_run(run_id, status="RUNNING")
            self.open[ref] = (c, run_id)
            reply(ref=ref, kind="start", run_id=run_id)
            return
        exp = experiment_id(c, req["uri"], req["experiment"], req.get("artifact_root"))
        run_id = str(c.create_run(exp, run_name=req["run_name"], tags=req["tags"]).info.run_id)
        self.open[ref] = (c, run_id)
        # Answer now: the trainer may print the id while params and artifacts are written.
        reply(ref=ref, kind="start", run_id=run_id)
        params = [Param(k, v) for k, v in req.get("params", {}).items()]
        for i in range(0, len(params), BATCH_PARAMS):
            c.log_batch(run_id, params=params[i : i + BATCH_PARAMS])
        if req.get("artifacts"):
            with tempfile.TemporaryDirectory(prefix="hyperlab-") as tmp:
                for name, text in req["artifacts"].items():
                    (Path(tmp) / name).write_text(text)
                c.log_artifacts(run_id, tmp)

    def log(self, ref: int, metrics: Any, tags: dict[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        c, run_id = self.open[ref]
        history = self.curves.setdefault(ref, {})
        for k, v, _, step in metrics:
            history.setdefault(k, []).append((step, v))
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

    def abandon(self) -> None:
        """The trainer is gone: end what it left open as FAILED."""
        from mlflow.entities import RunTag

        for c, run_id in self.open.values():
            try:
                reason = "the training process ended without closing this run (killed?)"
                c.log_batch(run_id, tags=[RunTag("hyperlab.failure_reason", reason)])
                c.set_terminated(run_id, "FAILED")
            except Exception:
                traceback.print_exc()
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
    # Import MLflow and open the store named on the command line before the first request:
    # this takes seconds, which pass while the trainer imports torch and loads its data.
    import mlflow  # noqa: F401  (it sets its loggers up on import: quiet them after)

    from hyperlab.tracking import client

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    for uri in sys.argv[1:]:
        try:
            client(uri).search_experiments(max_results=1)
        except Exception as e:  # reported again, with its run, when a request uses it
            print(f"hyperlab: MLflow store {uri} is not usable yet: {e}", file=sys.stderr)
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
