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
