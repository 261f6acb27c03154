"""sweep.timeout end to end: a study its time budget stops, then resumed by the same command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hyperlab.search.study import WORKER_ATTR
from support.command import hyperlab
from support.records import mlflow_runs, study_in

pytestmark = pytest.mark.slow

# 200 trials of 300 epochs take over three minutes here (a trial of 30 epochs took 0.15 s:
# two budgets of 20 s finished all 200 of those): 20 s stops the study well short of them.
BUDGETED = [
    "search=lr_beta",
    "dataset=moons",
    "dataset.n_samples=300",
    "epochs=300",
    "sweep.n_trials=200",
    "sweep.timeout=20s",
]
LINE = re.compile(
    r"^stopped after the 20s time budget: (\d+) of 200 trials finished; "
    r"run the same command again to continue$",
    re.M,
)


def test_a_study_stops_on_its_time_budget_and_the_same_command_continues_it(
    tmp_path: Path,
) -> None:
    r = hyperlab(tmp_path, *BUDGETED)
    assert r.returncode == 0, r.stderr
    assert ", time budget 20s" in r.stdout.splitlines()[0]
    (said,) = LINE.findall(r.stdout)
    s = study_in(tmp_path)
    # Every trial claimed before the deadline was finished, none left RUNNING or cut short.
    first = [t.state for t in s.trials]
    assert first == [TrialState.COMPLETE] * int(said) and int(said) < 200
    (summary,) = (tmp_path / "outputs" / "multirun").glob("*/summary.md")
    assert LINE.search(summary.read_text()).group(1) == said  # type: ignore[union-attr]
    (parent,) = [p for p in mlflow_runs(tmp_path) if "mlflow.parentRunId" not in p.data.tags]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["timeout"] == "20s"
    assert parent.data.tags["hyperlab.stopped"] == "time budget"
    assert LINE.fullmatch(parent.data.tags["hyperlab.stop_reason"]).group(1) == said  # type: ignore[union-attr]

    # The same command continues the same study, with a fresh budget.
    again = hyperlab(tmp_path, *BUDGETED)
    assert again.returncode == 0, again.stderr
    header = again.stdout.splitlines()[0]
    assert f": {said} complete; 200 trials" in header if int(said) else ": new;" in header
    (total,) = LINE.findall(again.stdout)
    s = study_in(tmp_path)  # still the one study
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * int(total)
    assert {t.user_attrs[WORKER_ATTR] for t in s.trials[int(said) :]} <= {1}
    assert int(total) >= int(said)
    runs = mlflow_runs(tmp_path)
    assert len([p for p in runs if "mlflow.parentRunId" not in p.data.tags]) == 1
    assert len(runs) == 1 + int(total)
