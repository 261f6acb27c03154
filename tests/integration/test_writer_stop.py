"""A writer ended while it opens a fresh store finishes the store first (tracker's close
of an unused writer: a command refused after its writer began to open the store)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

WRITER = [sys.executable, "-m", "hyperlab.tracking.writer_process"]


def schema(db: Path) -> tuple[list[str], str]:
    """The store's tables and its migration, read as a read-only reader would."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tables = sorted(r[0] for r in con.execute("select name from sqlite_master"))
        (version,) = con.execute("select version_num from alembic_version").fetchone()
    return tables, version


def test_sigterm_while_a_fresh_store_is_made_waits_for_its_schema(tmp_path: Path) -> None:
    whole = tmp_path / "whole.db"
    done = subprocess.run([*WRITER, f"sqlite:///{whole}"], input="", timeout=300)
    assert done.returncode == 0

    db = tmp_path / "mlflow.db"
    proc = subprocess.Popen([*WRITER, f"sqlite:///{db}"], stdin=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not db.exists():  # the store's file appears when its migrations begin
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == -signal.SIGTERM  # it still ends by the signal
    assert not Path(f"{db}-journal").exists()
    assert schema(db) == schema(whole)


def test_sigterm_while_a_server_does_not_answer_ends_the_writer_at_once(tmp_path: Path) -> None:
    """A tracking server makes no schema here: a writer waiting on one that never answers
    (a refused command's exit) is not held until MLflow's timeouts run out."""
    import socket

    with socket.socket() as silent:  # accepts connections, never answers a request
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen([*WRITER, uri], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(4)  # MLflow imported; the first request hangs on the silent server
        assert proc.poll() is None
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == -signal.SIGTERM
        assert time.monotonic() - start < 5
