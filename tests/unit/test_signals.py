"""Stops on real processes (slow): SIGTERM, SIGHUP and Ctrl-C to a study with two workers,
kill -9 of one worker, and SIGTERM to a single run. After each stop, no process of the
command's tree is left (every pid collected from /proc before the signal is checked), the
same command resumes the study to exactly sweep.n_trials, and no MLflow run is RUNNING.

And (fast) how hyperlab.stops turns a signal into an exception, once, and holds it while a
step must not be cut.

Here: the pieces on their own; e2e/test_signals.py holds the rest."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hyperlab import stops
from hyperlab.search import study as st


def test_the_first_signal_raises_and_later_ones_do_not_cut_its_cleanup() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stops.installed():
        with pytest.raises(stops.Stopped) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        assert caught.value.signum == signal.SIGTERM and str(caught.value) == "stopped by SIGTERM"
        assert stops.exit_code(caught.value) == 143
        os.kill(os.getpid(), signal.SIGHUP)  # ignored: the first stop's cleanup goes on
        os.kill(os.getpid(), signal.SIGINT)
        assert stops.received() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # restored after the block


def test_a_signal_inside_held_is_raised_when_the_step_ends() -> None:
    done = []
    with stops.installed():
        with pytest.raises(KeyboardInterrupt), stops.held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            done.append("the step")
        assert done == ["the step"]


def test_held_until_checked_keeps_the_signal_for_the_caller() -> None:
    with stops.installed():
        with stops.held(until_checked=True):
            os.kill(os.getpid(), signal.SIGHUP)
            with stops.held():  # an inner step does not raise it either
                time.sleep(0.1)
        stop = stops.take()
        assert isinstance(stop, stops.Stopped) and stops.describe(stop) == "SIGHUP"
        assert stops.exit_code(stop) == 129
        stops.check()  # taken: nothing left to raise


def test_a_retry_is_claimed_when_the_budget_is_otherwise_full(tmp_path: Path) -> None:
    """A worker killed on the last trial of a study, with sweep.retry_failed: the retry
    enqueued in its place holds the last place in the budget, and the next claim takes it
    (it used to see the budget full and leave the retry WAITING forever)."""
    import subprocess
    import sys

    import optuna

    url = str(tmp_path / "journal.log")
    s = optuna.create_study(study_name="s", storage=st.storage(url))
    done = st.claim(s, url, 2)
    assert done is not None
    s.tell(done, 1.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t = s.ask()
    x = t.suggest_float("x", 0, 1)
    t.set_user_attr(st.HOST_ATTR, __import__("socket").gethostname())
    t.set_user_attr(st.PID_ATTR, dead.pid)  # killed in the middle of the study's last trial
    # The sweeper that saw its worker die fails the trial and enqueues the retry...
    st.release_lost(s, url, retry_failed=1)
    assert [tr.state for tr in s.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.WAITING,
    ]
    # ... which the next claim takes, though complete + waiting fill the budget.
    retried = st.claim(s, url, 2, retry_failed=1)
    assert retried is not None and retried.suggest_float("x", 0, 1) == x
    s.tell(retried, 0.5)
    assert st.claim(s, url, 2, retry_failed=1) is None
    assert [tr.state for tr in s.trials].count(TrialState.COMPLETE) == 2
