"""Real servers for the slow tests: PostgreSQL, an MLflow tracking server, optuna-dashboard.

Each is started by the test session itself on a free loopback port, in a temporary
directory, and stopped at the end. A server that cannot be started here skips its tests
with the reason, except under CI (CI=true), where a missing server is a failure: .ci/run
installs PostgreSQL, so a skip there would hide a broken setup.

tests/conftest.py loads the fixtures (postgres, tracking_server) for every test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

BIN = Path(sys.executable).parent  # hyperlab, mlflow and optuna-dashboard of this venv
PG_USER = "postgres"  # the OS user that owns the data directory when the tests run as root


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose server cannot start here; under CI, fail it instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"under CI every server must start: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Any, what: str, timeout: float = 90.0, proc: Any = None) -> None:
    """Poll `ready()` until it is true; fail naming `what` (and the process's exit)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.3)


def http_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except (OSError, urllib.error.URLError):
        return False


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Terminate a server started with start_new_session=True, with its children.

    The whole group is signalled even when its leader has exited: `mlflow server` is a
    launcher whose uvicorn child can outlive it and go on serving."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    # Children still shutting down gracefully would keep answering requests on open
    # connections: a stopped server must be gone at once.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts)
    return versions[-1].parent if versions else None


@dataclass
class Postgres:
    """A throwaway PostgreSQL server: trust authentication on 127.0.0.1 only."""

    bindir: Path
    datadir: Path
    port: int
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.datadir.parent / "postgres.log"

    def url(self, db: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{PG_USER}@127.0.0.1:{self.port}/{db}"

    def _as_owner(self, *cmd: str) -> list[str]:
        # initdb refuses to run as root; the data directory belongs to the postgres user.
        return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def initdb(self) -> None:
        subprocess.run(
            self._as_owner(
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                PG_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",  # a throwaway cluster: skip fsync, save seconds
            ),
            check=True,
            capture_output=True,
            text=True,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir.parent} "
            "-c fsync=off -c max_connections=200 -c shared_buffers=32MB"
        )
        subprocess.run(
            self._as_owner(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ),
            check=True,
            capture_output=True,
            text=True,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate` is a crash: no shutdown checkpoint)."""
        subprocess.run(
            self._as_owner(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"
            ),
            capture_output=True,
            text=True,
        )

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(self.url(driver="postgresql"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _owned_tempdir() -> Path:
    """A directory the postgres user may write (pytest's tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hyperlab-pg-"))
    if os.geteuid() == 0:
        shutil.chown(path, PG_USER, PG_USER)
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the session, on a free loopback port."""
    bindir = _pg_bindir()
    if bindir is None:
        unavailable("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[postgres]')")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        unavailable("running as root without runuser: initdb cannot run as another user")
    root = _owned_tempdir()
    server = Postgres(bindir, root / "data", free_port())
    try:
        server.initdb()
        server.start()
    except (subprocess.CalledProcessError, KeyError) as e:
        log = server.log.read_text() if server.log.exists() else ""
        detail = getattr(e, "stderr", "") or ""
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"PostgreSQL did not start: {e}\n{detail}\n{log}")
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# --- MLflow tracking server ----------------------------------------------------------------


@dataclass
class MlflowServer:
    """`mlflow server` on 127.0.0.1; `restart()` after `kill()` brings it back on its port."""

    backend: str
    artifacts: Path
    port: int
    log: Path
    proc: subprocess.Popen[Any] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            str(self.artifacts),
            "--workers",
            "2",
        ]
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(lambda: answers(f"{self.uri}/health"), "the MLflow server", 180, self.proc)

    def kill(self) -> None:
        """Stop the server; returns once its port no longer answers."""
        if self.proc is not None:
            stop(self.proc)
            deadline = time.monotonic() + 30
            while answers(f"{self.uri}/health"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the MLflow server on {self.uri} still answers")
                time.sleep(0.2)


@contextlib.contextmanager
def mlflow_server(backend: str, workdir: Path) -> Iterator[MlflowServer]:
    """An MLflow tracking server storing runs in `backend` and artifacts under `workdir`."""
    if not (BIN / "mlflow").exists():
        unavailable("the mlflow command is not installed in this environment")
    workdir.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(backend, workdir / "artifacts", free_port(), workdir / "mlflow.log")
    try:
        server.start()
    except (RuntimeError, TimeoutError) as e:
        server.kill()
        unavailable(f"{e}:\n{server.log.read_text()[-3000:]}")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """An MLflow tracking server for the session, its runs in SQLite (so that stopping the
    PostgreSQL server in a fault test leaves it up)."""
    workdir = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(f"sqlite:///{workdir / 'mlflow.db'}", workdir) as server:
        yield server


# --- optuna-dashboard ----------------------------------------------------------------------


@contextlib.contextmanager
def dashboard(storage: str) -> Iterator[str]:
    """optuna-dashboard on `storage`, on 127.0.0.1; yields its base URL."""
    exe = BIN / "optuna-dashboard"
    if not exe.exists():
        unavailable("optuna-dashboard is not installed (pip install -e '.[dev]')")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/api/studies"), "optuna-dashboard", 90, proc)
        yield base
    finally:
        stop(proc)
