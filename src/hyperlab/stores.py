"""Checks of the stores hyperlab reads and writes, before anything is written to them: a
study's storage (an Optuna journal file, or a SQLite or other database URL), MLflow's
tracking URI (a known scheme, an installed driver, a store of the right kind, a server
that answers) and a run's data file.

Each refusal is a ConfigError (a DataError for a data file) naming the problem and the fix;
nothing is written to a file that turns out to be another tool's. Opening a study's storage
is hyperlab.search.study's business; it asks here first."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hyperlab.errors import ConfigError, DataError, first_line, masked

# --- study storages ------------------------------------------------------------------------

DEFAULT_JOURNAL = "outputs/optuna/journal.log"


def where(url: str) -> str:
    """The storage as shown to the user: its URL with the password masked, or the default
    journal file's path."""
    return masked(url) or DEFAULT_JOURNAL


# Where a database server listens unless its URL names a port: first contact is tried there.
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
# The pip package of a database driver, where its name differs from the module's.
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
}
CONNECT_TIMEOUT = 5.0  # seconds: first contact with a database server, and its connections
STORAGE_FIX = (
    f"give a journal file path (default {DEFAULT_JOURNAL}) or a reachable database "
    "URL (postgresql://user@host/db, sqlite:///path.db)"
)
_checked: set[str] = set()  # storage URLs check_storage() passed in this process


def journal_path(url: str) -> Path | None:
    """The journal file a storage URL names (a path, or empty for the default), else None."""
    if not url:
        return Path(DEFAULT_JOURNAL)
    if "://" in url:
        return None
    return Path(url)


def writable(path: Path) -> bool:
    """Whether `path` (and its directory, where its lock file goes) can be written."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def unchained(error: ConfigError) -> ConfigError:
    """`error`, raised outside the handler of its cause: without a cause or a context, no
    retry loop mistakes a wrong URL for a lost connection (a ConfigError is final)."""
    error.__cause__ = error.__context__ = None
    return error


def check_storage(url: str) -> None:
    """Raise ConfigError unless `url` can name a study storage (see
    hyperlab.search.study.storage()); checked once per process, before the storage or its
    budget lock is first used."""
    if url in _checked:
        return
    path = journal_path(url)
    if path is not None:
        _check_journal(path, url)
    else:
        _check_database(url, "sweep.storage")
        if not url.startswith("sqlite:"):
            _first_contact(url, "sweep.storage")
    _checked.add(url)


def _check_journal(path: Path, url: str) -> None:
    """Raise ConfigError unless `path` can be an Optuna journal: a new file in a directory
    that can be made, an empty file, or a file whose first line is a journal record. Nothing
    is written to a file that is not a journal (an MLflow database, a data file...)."""
    shown = url or DEFAULT_JOURNAL
    if path.is_dir():
        raise ConfigError(f"sweep.storage={shown} is a directory, not a journal file", STORAGE_FIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"sweep.storage={shown}: its directory cannot be created ({e.strerror or e})",
            "give a journal file in a directory you can write to",
        ) from None
    if not path.exists():
        if not os.access(path.parent, os.W_OK):
            raise ConfigError(
                f"sweep.storage={shown}: the directory {path.parent} is not writable",
                "give a journal file in a directory you can write to",
            )
        return
    try:
        with path.open("rb") as f:
            head = f.read(16)
            first = head + f.readline(1 << 20)
    except OSError as e:
        raise ConfigError(
            f"sweep.storage={shown} cannot be read ({e.strerror or e})", STORAGE_FIX
        ) from None
    if not first.strip() or (first.startswith(b"{") and not first.endswith(b"\n")):
        return  # empty, or its first record is being written by another worker
    what = "a SQLite database" if head.startswith(b"SQLite format 3") else "another kind of file"
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not (isinstance(record, dict) and "op_code" in record):
        raise ConfigError(
            f"sweep.storage={shown} is not an Optuna journal file: it is {what}",
            f"give a new or existing journal file, e.g. sweep.storage={DEFAULT_JOURNAL} "
            "(nothing was written to this one)",
        )


def _sqlite_tables(path: Path, key: str = "the file") -> set[str] | None:
    """The tables of an existing SQLite file (read-only), or None: no such file, an empty
    one, or one that cannot be read now (busy). Raises ConfigError for a file that is not
    a SQLite database."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return None
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if not head.startswith(b"SQLite format 3"):
        raise ConfigError(
            f"{key}: {path} is not a SQLite database (nothing was written to it)",
            "give a new file or an existing SQLite database",
        )
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=1)
        ) as db:
            return {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    except sqlite3.Error:
        return None


def _check_database(url: str, key: str) -> None:
    """Raise ConfigError unless `url` names a database SQLAlchemy can open here: a known
    kind whose driver is installed; for SQLite, not a file that another tool owns."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = masked(url)
    try:
        dialect = make_url(url).get_dialect()
    except NoSuchModuleError:  # (an ArgumentError itself: caught first)
        kind = url.split("://", 1)[0]
        fix = (
            "write postgresql://... (SQLAlchemy dropped the postgres:// spelling)"
            if kind.startswith("postgres") and not kind.startswith("postgresql")
            else STORAGE_FIX
        )
        raise ConfigError(f"{key}={shown}: unknown database kind {kind!r}", fix) from None
    except ArgumentError:
        raise ConfigError(
            f"{key}={shown} is not a database URL", f"write dialect://user@host/db; {STORAGE_FIX}"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        module = getattr(e, "name", None) or str(e)
        package = DRIVER_PACKAGES.get(str(module), str(module))
        raise ConfigError(
            f"{key}={shown} needs the database driver {module}, which is not installed",
            f"pip install '{package}' (or name an installed driver: dialect+driver://...)",
        ) from None
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        tables = _sqlite_tables(path, key)
        if not tables:
            return
        mlflow, optuna = {"runs", "experiments"} <= tables, {"studies", "trials"} <= tables
        if key == "sweep.storage" and mlflow:
            raise ConfigError(
                f"{key}={shown} is MLflow's tracking database, not a study storage",
                "give a file of its own, e.g. sweep.storage=sqlite:///outputs/optuna.db, or "
                "leave sweep.storage empty for the journal file (nothing was written)",
            )
        if key != "sweep.storage" and optuna and not mlflow:
            raise ConfigError(
                f"{key}={shown} is an Optuna study storage, not an MLflow database",
                "give a file of its own, e.g. tracking.uri=sqlite:///outputs/mlflow.db",
            )


def _first_contact(url: str, key: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Check that a database server answers: its host resolves and its port accepts a
    connection within `timeout` seconds, and the URL's user, password and database are
    accepted. A wrong host, port or password is a ConfigError at once, not a connection
    that hangs, or that is retried as if a server that worked were restarting."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    u = make_url(url)
    backend = u.get_backend_name()
    port = u.port or DEFAULT_PORTS.get(backend)
    error = None
    if u.host and port:
        try:
            socket.create_connection((u.host, port), timeout=timeout).close()
        except OSError as e:
            why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
            error = ConfigError(
                f"{key}={masked(url)}: the database server {u.host}:{port} cannot be "
                f"reached ({why})",
                "check the host and port (is the server running and reachable from here?)",
            )
    if error:
        raise unchained(error)
    args = {"connect_timeout": int(timeout)} if backend in DEFAULT_PORTS else {}
    engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect():
            pass
    except Exception as e:
        error = ConfigError(
            f"{key}={masked(url)} cannot be opened: {first_line(e)}",
            "check the user, the password and the database name in the URL",
        )
    finally:
        engine.dispose()
    if error:
        raise unchained(error)


# --- data files ----------------------------------------------------------------------------


def check_data_path(dataset: Mapping[str, Any]) -> None:
    """A data file must be there before a run (or a study, or seed repeats) starts."""
    kind = str(dataset.get("_target_", "")).rsplit(".", 1)[-1].upper() or "data"
    for key in ("path", "dev_path", "test_path"):
        path = dataset.get(key)
        if isinstance(path, str) and path:
            existing_file(path, kind, key)


def existing_file(path: str | Path, kind: str, key: str = "path") -> Path:
    """`path` (a user's `~` expanded) if it is a file, else a DataError naming what it is
    instead; `kind` (CSV, NPZ) names the file the reader wants, `key` the setting."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise DataError(
            f"dataset.{key}: '{p}' is a directory, not a {kind} file",
            f"name the file itself: dataset.{key}={p}/<file>.{kind.lower()}",
        )
    if not p.is_file():
        raise DataError(
            f"dataset.{key}: {kind} file '{p}' does not exist",
            f"pass an existing file: dataset.{key}=/absolute/path/to/file.{kind.lower()}",
        )
    return p


# --- tracking stores -----------------------------------------------------------------------


# MLflow's tracking URI schemes (a "+driver" may follow a database's).
TRACKING_SCHEMES = (
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "http",
    "https",
    "databricks",
    "databricks-uc",
    "uc",
)
_tracking_checked: set[str] = set()


def check_tracking_uri(uri: str) -> None:
    """Raise ConfigError unless MLflow can open `uri`: a known scheme, a driver that is
    installed, a local store that is not a file of another kind. Checked once per process
    (the writer reports a store that goes down later)."""
    if uri in _tracking_checked:
        return
    shown = masked(uri)
    fix = (
        "use sqlite:///outputs/mlflow.db (the default), http://127.0.0.1:5000 (a tracking "
        "server) or postgresql://user@host/db"
    )
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme and scheme.split("+", 1)[0] not in TRACKING_SCHEMES:
        raise ConfigError(f"tracking.uri={shown}: MLflow has no store for {scheme}://", fix)
    local = uri.removeprefix("file://") if scheme in ("", "file") else None
    if local and uri not in TRACKING_SCHEMES:
        if Path(local).expanduser().is_file():
            raise ConfigError(
                f"tracking.uri={shown} is a file: MLflow keeps a local store in a directory",
                fix,
            )
        if _file_store_refused():
            raise ConfigError(
                f"tracking.uri={shown} is a directory store, which this MLflow refuses "
                "(its file store is in maintenance mode)",
                "use tracking.uri=sqlite:///outputs/mlflow.db (the default), or set "
                "MLFLOW_ALLOW_FILE_STORE=true to keep the directory store",
            )
    if scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).expanduser()
        if path.is_dir() or any(p.exists() and not p.is_dir() for p in path.parents):
            where = path if path.is_dir() else next(p for p in path.parents if p.exists())
            raise ConfigError(
                f"tracking.uri={shown}: {where} is in the way ("
                f"{'a directory' if path.is_dir() else 'a file where a directory must be'})",
                fix,
            )
    if scheme.split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        _check_database(uri, "tracking.uri")
    if scheme in ("http", "https"):
        _check_server(uri, shown)
    _tracking_checked.add(uri)


SERVER_SECONDS = 10.0  # how long a tracking server may take to answer the check


def _check_server(uri: str, shown: str) -> None:
    """A tracking server must answer before anything runs: a single run, every job of a
    multirun and a study are refused here, rather than training first and then waiting
    for a server that is not there. Any HTTP answer will do (the server, or a proxy or a
    login in front of it); only no answer at all is refused."""
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # credentials are MLflow's business, not ours
    health = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", "")
    )
    try:
        with urllib.request.urlopen(health, timeout=SERVER_SECONDS):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, ssl.SSLError):  # it speaks TLS: MLflow has its own CA settings
            return
        why = (
            f"did not answer within {SERVER_SECONDS:g} s"
            if isinstance(reason, TimeoutError) or "timed out" in str(reason)
            else f"no server answers there ({reason})"
        )
        raise ConfigError(
            f"tracking.uri={shown}: {why}; nothing was trained or recorded",
            "start the tracking server (mlflow server --host HOST --port PORT), point "
            "tracking.uri at one that runs, or run with tracking.enabled=false",
        ) from None


def _file_store_refused() -> bool:
    """Whether the installed MLflow refuses a directory store (MLflow 3 does, unless
    MLFLOW_ALLOW_FILE_STORE is set), told without importing MLflow (seconds)."""
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
        return False
    spec = importlib.util.find_spec("mlflow")
    if spec is None or spec.origin is None:
        return False
    store = Path(spec.origin).parent / "store" / "tracking" / "file_store.py"
    try:
        return "MLFLOW_ALLOW_FILE_STORE" in store.read_text()
    except OSError:
        return False
