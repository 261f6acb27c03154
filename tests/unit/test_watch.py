"""The live study view (search.watch.StudyView): one unwrapped line per trial as it ends,
read from the study's storage by the sweeper while its workers train."""

from __future__ import annotations

import io
import re
import time

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from hyperlab.search.study import WORKER_ATTR
from hyperlab.search.watch import StudyView

SPACE = {
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "1-optimizer.beta": FloatDistribution(1e-3, 0.1, log=True),
}


def trial(state: TrialState, lr: float, **kwargs: object) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state,
        params={"lr": lr, "1-optimizer.beta": 0.05},
        distributions=SPACE,
        user_attrs={WORKER_ATTR: 1, **kwargs.pop("user_attrs", {})},  # type: ignore[dict-item]
        **kwargs,  # type: ignore[arg-type]
    )


def test_each_trial_that_ends_gets_one_line_and_a_resumed_study_s_trials_none() -> None:
    s = optuna.create_study(direction="maximize")
    s.add_trial(trial(TrialState.COMPLETE, 0.5, value=0.5))  # before this command
    out = io.StringIO()
    console = Console(file=out, width=60)  # a pipe at 60 columns: no bar, lines whole
    with StudyView(s, 5, "dev_acc", console, every=0.05):
        s.add_trial(trial(TrialState.COMPLETE, 0.0123456, value=0.91))
        time.sleep(0.3)  # the view's thread reads it while the study runs
        s.add_trial(trial(TrialState.PRUNED, 0.2, intermediate_values={1: 0.4, 2: 0.45}))
        s.add_trial(trial(TrialState.FAIL, 0.9, user_attrs={"fail_reason": "training diverged"}))
        s.add_trial(trial(TrialState.COMPLETE, 0.03, value=0.8))
    # Each line ends its fields with the trial's seconds (0.0 here): taken out to compare.
    lines = [re.sub(r"  0\.0 s", "", line) for line in out.getvalue().splitlines()]
    assert lines == [
        "trial 1 complete  dev_acc 0.91  best 0.91 (trial 1)  lr=0.01235 "
        "optimizer.beta=0.95  worker 1",
        "trial 2 pruned  at epoch 2 (dev_acc 0.45)  best 0.91 (trial 1)  lr=0.2 "
        "optimizer.beta=0.95  worker 1",
        "trial 3 failed  best 0.91 (trial 1)  lr=0.9 optimizer.beta=0.95  worker 1  "
        "(training diverged)",
        "trial 4 complete  dev_acc 0.8  best 0.91 (trial 1)  lr=0.03 optimizer.beta=0.95  worker 1",
    ]


def test_the_view_counts_finished_trials_against_the_budget() -> None:
    s = optuna.create_study(direction="minimize")
    view = StudyView(s, 4, "dev_loss", Console(file=io.StringIO()), every=10)
    with view:
        for v in (0.3, 0.1, 0.2):
            s.add_trial(trial(TrialState.COMPLETE, 0.1, value=v))
        s.add_trial(trial(TrialState.FAIL, 0.1))
    assert view.done == 3  # a failed trial does not count: another runs in its place
    assert view.best is not None and view.best.value == 0.1
    assert view.progress.tasks[0].completed == 3


def test_a_waiting_retry_beside_ended_trials_is_not_listed_and_breaks_nothing() -> None:
    """A retry enqueued (WAITING, no times) among ended trials: the view lists the ended
    ones, and a read that fails is skipped, never raised into the study."""
    s = optuna.create_study(direction="maximize")
    s.add_trial(trial(TrialState.COMPLETE, 0.5, value=0.5))
    s.enqueue_trial({"lr": 0.1, "1-optimizer.beta": 0.05})
    out = io.StringIO()
    view = StudyView(s, 3, "dev_acc", Console(file=out), every=10)
    with view:
        s.add_trial(trial(TrialState.COMPLETE, 0.2, value=0.7))
    assert out.getvalue().startswith("trial 2 complete  dev_acc 0.7")
    assert view.done == 2

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("storage away")

    s.get_trials = broken  # type: ignore[method-assign]
    view._read()  # skipped
    assert view.done == 2
