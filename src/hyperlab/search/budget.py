"""A study's time budget, `sweep.timeout`: the wall time after which its workers stop
claiming trials (each finishes the trial it trains), measured from the sweeper's start.

The sweeper turns the budget into an absolute deadline (`sweep.deadline`, seconds since
the epoch) in its workers' overrides. Absolute, not "N seconds from each worker's start":
the joblib launcher starts its workers seconds apart, and a worker started in place of a
dead one starts minutes later; all of them must stop at the one time the user asked for.
Workers on other machines (submitit, ray) read the same deadline, with their clocks
synchronized (NTP) as a cluster's are.
"""

from __future__ import annotations

import re
import time

from hyperlab.ranges import Range

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600}


def seconds(text: object) -> float | None:
    """The seconds a duration names (`90s`, `30m`, `2h`, `1.5h`, a plain number of
    seconds), 0.0 for none ("" or 0), or None when it names none of these."""
    spelled = str(text).strip().lower()
    if spelled == "":
        return 0.0
    found = _DURATION.fullmatch(spelled)
    if found is None:
        return None
    return float(found.group(1)) * _UNIT[found.group(2)]


DURATION = Range(
    lambda v: not isinstance(v, bool) and seconds(v) is not None,
    'a duration: seconds (90 or 90s), minutes (30m) or hours (2h); "" or 0 for none',
    "30m",
)


def spelled(s: float) -> str:
    """A budget as a person writes it: 90s, 30m, 2h, 1h30m."""
    whole = round(s)
    if whole != s or whole < 60:
        return f"{s:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def deadline(timeout: str, started: float) -> float:
    """The absolute time (time.time()) at which workers stop claiming; 0.0 for none."""
    budget = seconds(timeout) or 0.0
    return started + budget if budget > 0 else 0.0


def expired(deadline: float, now: float | None = None) -> bool:
    """Whether a worker with this deadline (0.0: none) must claim no more trials."""
    return deadline > 0 and (time.time() if now is None else now) >= deadline


def stopped_line(timeout: str, finished: int, n_trials: int) -> str:
    """What the report says of a study its time budget stopped."""
    return (
        f"stopped after the {spelled(seconds(timeout) or 0.0)} time budget: {finished} of "
        f"{n_trials} trials finished; run the same command again to continue"
    )


def overrides(deadline: float) -> list[str]:
    """The workers' override that carries the deadline (none without a budget)."""
    return [f"sweep.deadline={deadline!r}"] if deadline > 0 else []


def header(timeout: str) -> str:
    """The sweeper's words for the budget on its header line."""
    budget = seconds(timeout) or 0.0
    return f", time budget {spelled(budget)}" if budget > 0 else ""


def note(timeout: str, deadline: float, n_trials: int, counts: dict[str, int]) -> str:
    """The report's line when the budget stopped the study short of n_trials, else ""."""
    finished = sum(counts.get(k, 0) for k in ("COMPLETE", "PRUNED"))
    if not expired(deadline) or finished >= n_trials:
        return ""
    return stopped_line(timeout, finished, n_trials)
