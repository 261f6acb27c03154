"""The bench scripts' arithmetic on hand-made trials (fast; tests/e2e/test_bench.py runs them)."""

from __future__ import annotations

import datetime
import json
import math
import sys

import optuna
from optuna.trial import TrialState

from hyperlab.search import study as st
from support.paths import BENCH

sys.path.insert(0, str(BENCH))
from commands import per_minute
from render import markdown

T0 = datetime.datetime(2026, 1, 1)


def trial(number: int, pid: int, start: float, end: float) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=number,
        state=TrialState.COMPLETE,
        value=0.5,
        datetime_start=T0 + datetime.timedelta(seconds=start),
        datetime_complete=T0 + datetime.timedelta(seconds=end),
        params={},
        distributions={},
        user_attrs={st.PID_ATTR: pid},
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


def test_per_minute_counts_trials_started_once_every_worker_has_warmed_up() -> None:
    # Worker 1's first trial ends at 10 s, worker 2's at 20 s: the steady window opens at
    # 20 s, and the two trials started from then end by 50 s: 2 trials in 30 s.
    trials = [trial(0, 1, 0, 10), trial(1, 2, 0, 20), trial(2, 1, 10, 30), trial(3, 2, 20, 40)]
    trials.append(trial(4, 1, 30, 50))
    assert per_minute(trials) == 2 / (30 / 60)


def test_per_minute_is_undefined_without_a_steady_window() -> None:
    # A tiny study: every trial began while the slower worker was still on its first one.
    trials = [trial(0, 1, 0, 5), trial(1, 1, 5, 10), trial(2, 2, 0, 12)]
    assert math.isnan(per_minute(trials))


def test_the_saved_results_render_the_saved_report() -> None:
    # bench/run.py writes RESULTS.md from what results.json holds: the two committed files
    # agree, so the tables and findings are computed from the JSON as the report shows them.
    saved = json.loads((BENCH / "results.json").read_text())
    assert markdown(saved) == (BENCH / "RESULTS.md").read_text()
