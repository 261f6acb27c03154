"""Limits checked before anything runs: seeds in their library's range, a gradient check
that fits in memory, a multirun's tracking store reachable (issue 11, section 4).

Here: through the `hyperlab` command;
unit/test_limits.py and integration/test_limits.py hold the rest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.command import HYPERLAB, hyperlab


def recorded_runs(cwd: Path) -> int:
    """How many MLflow runs the default store under `cwd` holds (none if it has no store)."""
    import sqlite3

    db = cwd / "outputs" / "mlflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master")}
        return con.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("seed=18446744073709551616", "seed=18446744073709551616"),
        ("dataset.split.seed=-1", "dataset.split.seed=-1"),
        ("dataset.split.seed=99999999999", "dataset.split.seed=99999999999"),
    ],
)
def test_the_command_refuses_a_seed_out_of_range(tmp_path: Path, override: str, named: str) -> None:
    r = hyperlab(tmp_path, override, "epochs=1", "progress=false")
    assert r.returncode == 2, r.stderr
    assert named in r.stderr and "fix:" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # nothing recorded


def within_4_gib() -> None:
    """A child that may not map more than 4 GiB: a model built by mistake fails to
    allocate instead of exhausting the machine."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))


def one_layer_sized_from_memory(tmp_path: Path, *args: str) -> tuple[int, str]:
    """`hyperlab ARGS` on a model this machine could train but not check: one hidden layer
    of memory/2000 units (75 weights a unit: 16 bytes each to train, about 48 to check)."""
    from hyperlab.run import _memory_bytes

    memory = _memory_bytes()
    assert memory
    units = memory // 2000
    r = subprocess.run(
        [HYPERLAB, *args, f"model.hidden_units={units}", "model.layers=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"},
        timeout=300,
        preexec_fn=within_4_gib,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "fix:" in r.stderr and "model.hidden_units=128" in r.stderr
    assert "Traceback" not in r.stderr
    assert recorded_runs(tmp_path) == 0
    return units, r.stderr


@pytest.mark.slow
def test_the_command_refuses_a_gradcheck_too_big_for_this_machine(tmp_path: Path) -> None:
    """Refused by the estimate, before the model exists (a model built would fail to
    allocate within the child's 4 GiB, with another message)."""
    units, stderr = one_layer_sized_from_memory(tmp_path, "task=gradcheck")
    assert f"task=gradcheck with model.hidden_units={units}" in stderr
    assert "more than this machine's" in stderr
    assert "cannot be allocated" not in stderr


@pytest.mark.slow
def test_a_model_that_cannot_be_allocated_is_refused(tmp_path: Path) -> None:
    """Training the same model passes the estimate, and its allocation fails (the child's
    4 GiB): refused with the allocator's reason, which Hydra's instantiate wraps."""
    units, stderr = one_layer_sized_from_memory(tmp_path, "epochs=1")
    assert f"model.hidden_units={units}, model.layers=1: the model cannot be" in stderr
    assert "allocate" in stderr


@pytest.mark.slow
def test_the_command_refuses_the_reported_gradcheck(tmp_path: Path) -> None:
    """The reported case, refused by either estimate on any machine: a model of 9e10
    weights (1.3 TiB to train) is refused before it is built."""
    r = hyperlab(tmp_path, "task=gradcheck", "model.hidden_units=300000")
    assert r.returncode == 2, r.stderr
    assert "model.hidden_units=300000" in r.stderr and "fix:" in r.stderr
    assert "Traceback" not in r.stderr


NO_SERVER = "tracking.uri=http://127.0.0.1:9"  # nothing listens on the discard port here


TRAINED = re.compile(r"epoch\s+\d+\s+train")  # a job's per-epoch line


def refused_for_the_server(r: subprocess.CompletedProcess[str], uri: str) -> None:
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    err = " ".join(r.stderr.split())
    assert f"tracking.uri={uri}: no server answers there" in err, err
    assert "fix: start the tracking server" in err and "tracking.enabled=false" in err
    assert "Traceback" not in err
    assert not TRAINED.search(r.stdout)


def job_outputs(cwd: Path) -> list[Path]:
    return [p for p in (cwd / "outputs").rglob("*") if p.name in (".hydra", "trial_0")]


def test_a_run_with_no_tracking_server_is_refused_before_training(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "epochs=1", NO_SERVER, timeout=120)
    refused_for_the_server(r, "http://127.0.0.1:9")


@pytest.mark.slow
def test_a_multirun_checks_every_jobs_tracking_store_before_the_first(tmp_path: Path) -> None:
    """The reported command, and a multirun whose first job's store is fine but whose
    second's does not answer: refused before the first job, nothing trained or recorded."""
    r = hyperlab(tmp_path, "-m", "epochs=1,2", NO_SERVER, "progress=false", timeout=120)
    refused_for_the_server(r, "http://127.0.0.1:9")
    assert job_outputs(tmp_path) == []

    ok = f"sqlite:///{tmp_path / 'ok.db'}"
    r = hyperlab(tmp_path, "-m", f"tracking.uri={ok},http://127.0.0.1:9", "epochs=1", timeout=120)
    refused_for_the_server(r, "http://127.0.0.1:9")
    assert job_outputs(tmp_path) == []
    assert not (tmp_path / "ok.db").exists()
    assert recorded_runs(tmp_path) == 0


@pytest.mark.slow
def test_a_study_with_no_tracking_server_is_refused_before_it_exists(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "search=lr", "sweep.n_trials=2", "epochs=1", NO_SERVER, timeout=120)
    refused_for_the_server(r, "http://127.0.0.1:9")
    assert not (tmp_path / "outputs" / "optuna").exists()  # no journal, no study


class _HealthOnly:
    """An HTTP server on 127.0.0.1 that answers /health and nothing else (503): a tracking
    server that passes the check, then is lost."""

    def __enter__(self) -> str:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.send_response(200 if self.path.startswith("/health") else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_multirun_whose_server_is_lost_stops_within_the_writers_bound(tmp_path: Path) -> None:
    """The server passes the check, then answers nothing but errors: the multirun's parent
    run cannot be created, and the command stops with a message after the writer's retries
    (HYPERLAB_MLFLOW_RETRY_SECONDS; MLflow's own retries are kept short by the writer),
    before its first job; it used to wait for many minutes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    with _HealthOnly() as uri:
        r = subprocess.run(
            [HYPERLAB, "-m", "epochs=1,2", f"tracking.uri={uri}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**env, "COLUMNS": "200", "HYPERLAB_MLFLOW_RETRY_SECONDS": "5"},
            timeout=120,
        )
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    err = " ".join(r.stderr.split())
    assert f"error: MLflow could not record the run at {uri}" in err, err
    assert "fix: check that the tracking store is reachable" in err
    assert "Traceback" not in err
    assert not TRAINED.search(r.stdout)
    assert not any((tmp_path / "outputs" / "multirun").rglob(".hydra"))


@pytest.mark.slow
def test_the_writer_gives_up_on_a_lost_server_within_its_bound(tmp_path: Path) -> None:
    """A run whose server is gone: its end reports a TrackingError after the writer's
    retries, with MLflow's HTTP settings left at hyperlab's defaults."""
    code = (
        "from hyperlab.tracking import Tracker, TrackingError\n"
        "t = Tracker('http://127.0.0.1:9', 'x')\n"
        "try:\n"
        "    t.finish()\n"
        "except TrackingError as e:\n"
        "    raise SystemExit('refused: ' + e.problem)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "HYPERLAB_MLFLOW_RETRY_SECONDS": "5"},
        timeout=120,
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "refused: MLflow could not record the run at http://127.0.0.1:9" in r.stderr
