"""sweep.timeout: durations parsed, refused, spelled back; when a worker stops claiming."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperlab.errors import ConfigError
from hyperlab.search import budget
from hyperlab.validate import validate
from support.paths import Compose


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("", 0.0),
        ("0", 0.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        (" 45S ", 45.0),
        (".5m", 30.0),
        (120, 120.0),
    ],
)
def test_a_duration_is_seconds_minutes_or_hours(text: object, seconds: float) -> None:
    assert budget.seconds(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5", "1e3", "inf", "30 min", "1h30m", "m", "nan"])
def test_anything_else_is_no_duration(text: str) -> None:
    assert budget.seconds(text) is None
    assert not budget.DURATION.check(text)
    assert not budget.DURATION.check(True)


def test_a_budget_is_spelled_as_a_person_writes_it() -> None:
    assert [budget.spelled(s) for s in (1800, 90, 5400, 7200, 0.5, 3661, 45)] == [
        "30m",
        "1m30s",
        "1h30m",
        "2h",
        "0.5s",
        "1h1m1s",
        "45s",
    ]


def test_the_deadline_is_absolute_and_none_without_a_budget() -> None:
    assert budget.deadline("30m", 1000.0) == 2800.0
    assert budget.deadline("", 1000.0) == 0.0
    assert budget.deadline("0", 1000.0) == 0.0
    assert budget.overrides(2800.5) == ["sweep.deadline=2800.5"]
    assert budget.overrides(0.0) == []
    assert not budget.expired(0.0, now=1e12)  # no budget never expires
    assert not budget.expired(2800.0, now=2799.9)
    assert budget.expired(2800.0, now=2800.0)


def test_the_report_says_the_budget_stopped_the_study_only_short_of_n_trials() -> None:
    past = 1.0  # a deadline long gone
    line = budget.note("30m", past, 20, {"COMPLETE": 6, "PRUNED": 1, "FAIL": 2})
    assert line == (
        "stopped after the 30m time budget: 7 of 20 trials finished; "
        "run the same command again to continue"
    )
    assert budget.note("30m", past, 7, {"COMPLETE": 7}) == ""  # it finished anyway
    assert budget.note("", 0.0, 20, {"COMPLETE": 1}) == ""
    assert budget.header("2h") == ", time budget 2h" and budget.header("") == ""


def test_a_bad_timeout_is_refused_at_validation(cfg: Compose, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        validate(cfg("search=lr", "sweep.timeout=soon"))
    assert e.value.problem.startswith("sweep.timeout='soon' is not allowed: sweep.timeout must ")
    assert "30m" in e.value.problem and e.value.fix == (
        "set it on the command line, e.g. sweep.timeout=30m"
    )
    assert validate(cfg("search=lr", "sweep.timeout=90")).sweep.timeout == "90"
    assert validate(cfg("search=lr", "sweep.timeout=30m")).sweep.timeout == "30m"
