"""The run client: a Tracker per MLflow run, fed by the training loop, and the handle on
this process's writer process (hyperlab.tracking.writer_process), which does the writing.

A call into MLflow on SQLite costs milliseconds of Python. Made from the training loop
after every epoch it would cost more than a small model's training, and made from a
thread it would contend with the loop for the GIL. So the training process only hands
requests to the writer, a child process that writes them on another core: the loop
buffers each epoch's metrics and sends them at most every `flush_seconds`.

The pipe to the writer is widened to a MiB where the system allows (64 KiB by default on
Linux): the runs of a stacked population (sweep.population), opened together while the
writer is still starting or creating the previous stack's runs, would otherwise block
training until the writer has read them. A request in the pipe is the kernel's: a trainer
killed with -9 right after sending it loses nothing, which a queue of its own would.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from hyperlab import stops
from hyperlab.errors import HyperlabError, masked
from hyperlab.tracking.metadata import PARENT_TAG

# The writer process, started as a module (`python -m`), named in `ps` by it.
WRITER_MODULE = "hyperlab.tracking.writer_process"


class TrackingError(HyperlabError):
    """The tracking store could not be written."""


class _WriterProcess:
    """The connection to this process's MLflow writer, started on first use."""

    def __init__(self, uri: str | None = None) -> None:
        self.pid = os.getpid()
        # The URL is a command-line argument, which any local user can read (ps): one
        # holding a password is not opened early but with the first request (over a pipe).
        if uri and masked(uri) != uri:
            uri = None
        self.opened = {uri} if uri else set()  # stores the writer was asked to open
        self.used = False  # asked to write anything: then it must finish before exit
        self.warmed = False  # told that a learning curve will be drawn (once is enough)
        # A session of its own: Ctrl-C in the terminal must not kill the writer before
        # it has recorded the interrupted run as KILLED.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WRITER_MODULE, *([uri] if uri else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        _widen(self.proc.stdin)
        self.refs = itertools.count(1)
        self.started: dict[int, dict[str, Any]] = {}  # start replies not yet claimed
        self.ending: set[int] = set()  # runs told to end, not yet confirmed
        self.failures: list[str] = []
        self.pending: list[dict[str, Any]] | None = None  # requests held by batched()
        self.lock = threading.Lock()
        atexit.register(self.close)

    def send(self, **request: Any) -> None:
        with self.lock:
            self.used = self.used or request["op"] != "open"
            if request["op"] == "end":
                self.ending.add(request["ref"])
            if self.pending is not None:
                self.pending.append(request)
                return
        self._write(request)

    def _write(self, request: dict[str, Any]) -> None:
        stdin: IO[str] = self.proc.stdin  # type: ignore[assignment]
        # Held: a stop raised in the middle of a write would leave half a request on the
        # writer's stdin, and the next one glued to it.
        with stops.held(), self.lock:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Requests sent inside reach the writer together, when the block ends: a
        population's runs are created (and ended) in one transaction of the store instead
        of one each. Nothing inside may wait for a reply to a request sent inside."""
        if self.pending is not None:  # nested: the outer block sends
            yield
            return
        self.pending = []
        try:
            yield
        finally:
            with self.lock:
                requests, self.pending = self.pending, None
            # A writer gone says so when a reply is awaited (started_run, drain).
            with contextlib.suppress(OSError):
                if len(requests) == 1:
                    self._write(requests[0])
                elif requests:
                    self._write({"op": "batch", "ref": 0, "requests": requests})

    def started_run(self, ref: int) -> dict[str, Any]:
        """The writer's answer to start request `ref`: {"run_id": ...} or {"error": ...}."""
        with self.lock:
            while ref not in self.started:
                self._read()
            return self.started.pop(ref)

    def drain(self) -> None:
        """Wait until every run told to end is written; raise TrackingError for failures."""
        with self.lock:
            while self.ending:
                self._read()
            failures, self.failures = self.failures, []
        if failures:
            raise TrackingError(
                "MLflow could not record " + "; ".join(failures),
                "check that the tracking store is reachable (tracking.uri=...), "
                "or run with tracking.enabled=false",
            )

    def _read(self) -> None:
        with stops.held():  # a reply read but not yet handled would be lost: drain() hangs
            self._read_one()

    def _read_one(self) -> None:
        stdout: IO[str] = self.proc.stdout  # type: ignore[assignment]
        line = stdout.readline()
        if not line:
            self.ending.clear()
            raise TrackingError(
                f"the MLflow writer process exited (code {self.proc.poll()}); "
                "its error is printed above",
                "check tracking.uri, or run with tracking.enabled=false",
            )
        msg = json.loads(line)
        if msg["kind"] == "start":
            self.started[msg["ref"]] = msg
        else:
            self.ending.discard(msg["ref"])
            if msg.get("error"):
                self.failures.append(f"run {msg.get('run_id') or msg['ref']}: {msg['error']}")

    def close(self) -> None:
        if not self.used:  # nothing to write (a bad config, --cfg): no wait for its imports
            # SIGTERM, not kill: a store it is opening is finished first (see _Opening).
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            return
        if self.proc.poll() is None and self.proc.stdin:
            self.proc.stdin.close()  # the writer ends what is still open, then exits
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


PIPE_BYTES = 1 << 20


def _widen(pipe: IO[str] | None) -> None:
    """Give the pipe a MiB of buffer where the system allows (Linux's fcntl
    F_SETPIPE_SZ, up to /proc/sys/fs/pipe-max-size); elsewhere it keeps its size."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or setsize is None:
        return
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(pipe.fileno(), setsize, PIPE_BYTES)


_writer: _WriterProcess | None = None


def writer(uri: str | None = None) -> _WriterProcess:
    """This process's writer (a forked child starts its own), asked to open `uri`'s store
    before it is asked to write there."""
    global _writer
    if _writer is None or _writer.pid != os.getpid() or _writer.proc.poll() is not None:
        _writer = _WriterProcess(uri)
    if uri and uri not in _writer.opened:
        _writer.opened.add(uri)
        with contextlib.suppress(OSError):  # a writer gone says so with the first request
            _writer.send(op="open", ref=0, uri=uri)
    return _writer


def batched() -> contextlib.AbstractContextManager[None]:
    """A block whose MLflow requests the writer receives together (_WriterProcess.batched)."""
    return writer().batched()


def drain() -> None:
    """Wait until every finished run of this process is written to its store.

    Raises TrackingError naming the runs that could not be recorded."""
    if _writer is not None and _writer.pid == os.getpid():
        _writer.drain()


class Tracker:
    """One MLflow run, fed from the training loop (a listener), written by the writer."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        *,
        artifact_root: str | None = None,
        run_name: str = "",
        parent_run_id: str | None = None,
        params: Mapping[str, str] = {},
        tags: Mapping[str, str] = {},
        artifacts: Mapping[str, str] = {},
        flush_seconds: float = 1.0,
        run_id: str | None = None,
    ) -> None:
        """Start a run, or with `run_id` reopen an existing one (its params stay as set)."""
        self.uri = uri
        self.flush_seconds = flush_seconds
        self._writer = writer(uri)
        self._ref = next(self._writer.refs)
        self._pending: list[tuple[str, float, int, int]] = []
        self._last_flush = time.monotonic()
        self._error: str | None = None
        self._run_id: str | None = None
        self.experiment_id: str | None = None  # known once the writer has made the run
        all_tags = dict(tags)
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        # Every text that reaches MLflow has its passwords masked (errors.masked).
        self._send(
            op="start",
            uri=uri,
            experiment=experiment,
            artifact_root=artifact_root,
            run_name=masked(run_name),
            tags=masked(all_tags),
            params=masked(dict(params)),
            artifacts=masked(dict(artifacts)),
            run_id=run_id,
        )

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.log_metrics(metrics, step=epoch)
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        ms = int(time.time() * 1000)
        self._pending.extend((k, float(v), ms, step) for k, v in metrics.items())

    def log_files(self, paths: Sequence[str | Path], artifact_path: str | None = None) -> None:
        """Log local files as artifacts (they must exist until the writer has read them)."""
        self._send(op="files", paths=[str(p) for p in paths], artifact_path=artifact_path)

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending:
            batch, self._pending = self._pending, []
            self._send(op="log", metrics=batch)

    @property
    def run_id(self) -> str:
        """The run's id (waits for the writer to create the run)."""
        if self._run_id is None and self._error is None:
            reply = self._writer.started_run(self._ref)
            self._run_id, self._error = reply.get("run_id"), reply.get("error")
            self.experiment_id = reply.get("experiment_id")
        if self._run_id is None:
            self._fail()
        return self._run_id  # type: ignore[return-value]

    def finish(
        self,
        status: str = "FINISHED",
        metrics: Mapping[str, float] = {},
        step: int = 0,
        tags: Mapping[str, str] = {},
        curve: str | Path | None = None,
        title: str = "",
        prior: Mapping[str, Sequence[tuple[int, float]]] = {},
    ) -> str:
        """Send what is buffered with the final `metrics` and `tags` and end the run with
        `status`; return its id. With `curve`, the writer also draws the run's learning
        curve there, after the `prior` epochs' points (a resumed run's), and logs it. The
        writer finishes the work while the caller goes on: drain() waits for it and reports
        failures."""
        self.log_metrics(metrics, step)
        batch, self._pending = self._pending, []
        run_id = self.run_id
        self._send(
            op="end",
            status=status,
            metrics=batch,
            tags={k: masked(str(v)) for k, v in tags.items()},
            curve=str(curve) if curve else None,
            title=masked(title),
            prior={k: [list(p) for p in v] for k, v in prior.items()},
        )
        if self._error:
            self._fail()
        return run_id

    def close_stale(self, ended: Mapping[int, str]) -> None:
        """Have the writer end as FAILED the RUNNING child runs of this (a study's parent)
        run whose trials are among `ended` (trial number -> the trial's failure reason, or
        ""), with that reason: runs that a trainer could not
        close because the tracking store was down when its trial ended, or it died. Pass
        only trials that ended before this sweep began: a later one's end may still be on
        its way through another worker's writer."""
        w = writer(self.uri)
        # A request of its own (a new ref): a failure is printed by the writer, and does
        # not fail this run's end.
        w.send(
            ref=next(w.refs),
            op="close_stale",
            uri=self.uri,
            parent_run_id=self.run_id,
            ended={str(n): why for n, why in ended.items()},
        )

    def expect_curve(self) -> None:
        """Tell the writer that this run's end will draw a learning curve."""
        if not self._writer.warmed:
            self._writer.warmed = True
            self._send(op="warm")

    def _send(self, **request: Any) -> None:
        try:
            self._writer.send(ref=self._ref, **request)
        except OSError as e:  # the writer is gone: report it at finish, keep training
            self._error = self._error or f"the MLflow writer process is gone ({e})"

    def _fail(self) -> None:
        raise TrackingError(
            f"MLflow could not record the run at {self.uri}: {self._error}",
            "check that the tracking store is reachable (tracking.uri=...), "
            "or run with tracking.enabled=false",
        )


def start_run(
    uri: str,
    experiment: str,
    artifact_root: str | None,
    *,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, str] = {},
    run_id: str | None = None,
) -> Tracker:
    """Start (or, with `run_id`, reopen) a run that has no epochs of its own: a multirun's
    or a study's parent run."""
    return Tracker(
        uri,
        experiment,
        artifact_root=artifact_root,
        run_name=run_name,
        tags=tags,
        params=params,
        run_id=run_id,
    )
