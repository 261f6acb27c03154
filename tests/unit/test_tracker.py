"""The run client's pipe to its MLflow writer process (hyperlab.tracking.tracker).

Here: the pipe on its own, against a stand-in process; the writing itself is tested
through runs (integration/test_run.py) and the command (e2e/test_tracking.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hyperlab.tracking import tracker


def test_requests_do_not_wait_for_a_busy_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than a default pipe holds (64 KiB), sent while the writer reads nothing (still
    starting, or creating a stack's other runs): the sends return, and the requests reach
    the writer, whole and in order, once it reads. Written to the pipe, not queued in the
    trainer: e2e/test_tracking.py kills the trainer with -9 right after it sends."""
    go = tmp_path / "go"
    real = subprocess.Popen

    def stand_in(args: Any, **kwargs: Any) -> subprocess.Popen[str]:
        # Reads nothing until `go` exists; if it never comes (the sends waited for a reader),
        # exits after 30 s unread, so that the blocked sends fail instead of hanging.
        script = (
            "import os, sys, time\n"
            "end = time.monotonic() + 30\n"
            f"while not os.path.exists({str(go)!r}):\n"
            "    if time.monotonic() > end: sys.exit(3)\n"
            "    time.sleep(0.01)\n"
            "sys.stdout.write(sys.stdin.read())\n"
        )
        return real([sys.executable, "-c", script], **kwargs)

    monkeypatch.setattr(tracker.subprocess, "Popen", stand_in)
    w = tracker._WriterProcess(None)
    sent = [{"ref": i, "op": "log", "metrics": ["x" * 2000]} for i in range(100)]
    for request in sent:
        w.send(**request)
    assert w.proc.poll() is None  # still waiting for `go`: it has read nothing
    go.touch()
    w.proc.stdin.close()  # type: ignore[union-attr]
    echoed = w.proc.stdout.read().splitlines()  # type: ignore[union-attr]
    assert w.proc.wait() == 0
    assert [json.loads(line) for line in echoed] == sent


def test_a_writer_never_asked_to_write_does_not_hold_up_the_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command starts its writer before it knows its config (MLflow's imports overlap
    Hydra's): a command that ends without a run (a bad value, --cfg) kills it at exit
    instead of waiting for its imports; one asked only to open a store is not waited for
    either. A writer asked to write is waited for (test above: its requests all arrive)."""
    import time

    real = subprocess.Popen

    def stand_in(args: Any, **kwargs: Any) -> subprocess.Popen[str]:
        return real([sys.executable, "-c", "import time; time.sleep(60)"], **kwargs)

    monkeypatch.setattr(tracker.subprocess, "Popen", stand_in)
    w = tracker._WriterProcess(None)
    w.send(op="open", ref=0, uri="sqlite:///never.db")
    start = time.monotonic()
    w.close()
    assert w.proc.poll() is not None
    assert time.monotonic() - start < 30  # not the minute it would sleep, nor close's wait


def test_a_running_writer_is_asked_to_open_each_new_store_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[dict[str, Any]] = []

    class Stub:
        def __init__(self) -> None:
            self.pid = tracker.os.getpid()
            self.opened: set[str] = set()
            self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

        def send(self, **request: Any) -> None:
            sent.append(request)

    stub = Stub()
    monkeypatch.setattr(tracker, "_writer", stub)
    try:
        for uri in ("sqlite:///a.db", "sqlite:///a.db", "sqlite:///b.db"):
            assert tracker.writer(uri) is stub
        assert tracker.writer() is stub
        assert [r["uri"] for r in sent] == ["sqlite:///a.db", "sqlite:///b.db"]
        assert {r["op"] for r in sent} == {"open"}
    finally:
        stub.proc.kill()
        stub.proc.wait()
