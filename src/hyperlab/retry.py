"""Calls retried with backoff while a store does not answer: the study's storage (see
hyperlab.search.study) and the MLflow tracking store (hyperlab's writer process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class GaveUp(Exception):
    """The store still did not answer after `waited` seconds; `cause` is its last error."""

    def __init__(self, cause: BaseException, waited: float) -> None:
        super().__init__(str(cause))
        self.cause, self.waited = cause, waited


def with_backoff(
    fn: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    seconds: float,
    on_retry: Callable[[BaseException, float], None],
    max_delay: float = 30.0,
) -> T:
    """`fn()`, called again after 0.5, 1, 2 ... seconds (at most `max_delay` between tries)
    while it raises an error that `transient` accepts, for up to `seconds` in all; then
    GaveUp. Any other error is raised at once. `on_retry(error, delay)` is told of each
    retry before its wait (to print it, or count it)."""
    delay, start = 0.5, time.monotonic()
    while True:
        try:
            return fn()
        except Exception as e:
            if not transient(e):
                raise
            waited = time.monotonic() - start
            if waited + delay > seconds:
                raise GaveUp(e, waited) from e
            on_retry(e, delay)
            time.sleep(delay)
            delay = min(2 * delay, max_delay)
