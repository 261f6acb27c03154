"""Errors that reach the user as a message naming the problem and the fix, not a traceback."""

from __future__ import annotations


class HyperlabError(Exception):
    """A problem the user can fix; `fix` says how."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}" if self.fix else self.problem


class ConfigError(HyperlabError):
    """A config value of the wrong type or outside its allowed range."""


class DataError(HyperlabError):
    """A data file that is missing, malformed or inconsistent."""
