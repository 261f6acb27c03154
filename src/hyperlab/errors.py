"""Errors that reach the user as a message naming the problem and the fix, not a traceback.

Their text never shows a password: `scheme://user:password@host` (a database URL in
sweep.storage or tracking.uri) reads `scheme://user:***@host` in every message."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

# scheme://user:password@host: the password runs to the last @ of the token (a password may
# hold an @ of its own), and stops at whitespace or a quote. Hydra writes an override's
# colons escaped (`scheme\://user\:password@host`) in its job lines and saved configs.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*\\?://[^\s:/@'\"]*:)[^\s'\"]*(?=@)")
# ...?password=... in a URL's query, or password=... in a key=value list
_KEY_PASSWORD = re.compile(r"(?i)(\b(?:password|passwd|pwd)=)[^\s&;'\",]+")
MASK = "***"
T = TypeVar("T")


def masked(value: T) -> T:
    """`value` with every password in it replaced by ***: `scheme://user:password@host`
    becomes `scheme://user:***@host` (and `password=...` becomes `password=***`) in a
    string, and in the values of a mapping and the items of a list or tuple at any depth.
    Whatever hyperlab prints or hands to MLflow goes through it: a database URL in
    sweep.storage or tracking.uri must not end up in a message, param, tag or artifact."""
    if isinstance(value, str):
        if "@" not in value and "=" not in value:
            return value
        text = _URL_PASSWORD.sub(rf"\g<1>{MASK}", value)
        return _KEY_PASSWORD.sub(rf"\g<1>{MASK}", text)  # type: ignore[return-value]
    if isinstance(value, Mapping):
        return {k: masked(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(masked(v) for v in value)
    return value


def mask_file(path: Path) -> None:
    """Rewrite a text file with its passwords masked (replaced whole, so that a reader never
    sees half a file); a file without one, or none at all, is left alone."""
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return
    shown = masked(text)
    if shown == text:
        return
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(shown)
    tmp = Path(name)
    tmp.chmod(path.stat().st_mode & 0o777)
    tmp.replace(path)


def mask_log_records() -> None:
    """From now on, every log record this process makes has its passwords masked, whatever
    logger makes it and whatever handlers print it (Hydra's launchers log each job's
    overrides, and reconfigure the handlers as jobs start)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "masks_passwords", False):
        return

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # a bad format: logging reports it where it prints the record
            return record
        shown = masked(text)
        if shown != text:
            record.msg, record.args = shown, None
        return record

    masked_record.masks_passwords = True  # type: ignore[attr-defined]
    masked_record.__wrapped__ = make  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked_record)


def first_line(e: BaseException) -> str:
    """The gist of an error for a one-line message: `Type: first line` of the error it
    was raised from (the driver's, where SQLAlchemy, Optuna or MLflow wrapped it), with
    passwords masked."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = masked(str(e)).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}"[:300] if lines else type(e).__name__


class HyperlabError(Exception):
    """A problem the user can fix; `fix` says how. Passwords in either are masked."""

    def __init__(self, problem: str, fix: str = "") -> None:
        problem, fix = masked(problem), masked(fix)
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}" if self.fix else self.problem


class ConfigError(HyperlabError):
    """A config value of the wrong type or outside its allowed range."""


class DataError(HyperlabError):
    """A data file that is missing, malformed or inconsistent."""
