"""Errors that reach the user as a message naming the problem and the fix, not a traceback.

Their text never shows a password: `scheme://user:password@host` (a database URL in
sweep.storage or tracking.uri) reads `scheme://user:***@host` in every message."""

from __future__ import annotations

import re

# scheme://user:password@host: the password runs to the last @ of the token (a password may
# hold an @ of its own), and stops at whitespace or a quote.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)[^\s'\"]*(?=@)")
# ...?password=... in a URL's query, or password=... in a key=value list
_KEY_PASSWORD = re.compile(r"(?i)(\b(?:password|passwd|pwd)=)[^\s&;'\",]+")
MASK = "***"


def masked_text(text: str) -> str:
    """`text` with every password in a URL (`scheme://user:password@`) or a `password=`
    setting replaced by ***."""
    if "@" not in text and "=" not in text:
        return text
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}", text)
    return _KEY_PASSWORD.sub(rf"\g<1>{MASK}", text)


def first_line(e: BaseException) -> str:
    """The gist of an error for a one-line message: `Type: first line` of the error it
    was raised from (the driver's, where SQLAlchemy, Optuna or MLflow wrapped it), with
    passwords masked."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = masked_text(str(e)).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}"[:300] if lines else type(e).__name__


class HyperlabError(Exception):
    """A problem the user can fix; `fix` says how. Passwords in either are masked."""

    def __init__(self, problem: str, fix: str = "") -> None:
        problem, fix = masked_text(problem), masked_text(fix)
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}" if self.fix else self.problem


class ConfigError(HyperlabError):
    """A config value of the wrong type or outside its allowed range."""


class DataError(HyperlabError):
    """A data file that is missing, malformed or inconsistent."""
