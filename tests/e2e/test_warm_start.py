"""sweep.warm_start end to end: study B starts from study A's best trials, once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hyperlab.search import earlier, warm_start
from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import hyperlab
from support.records import mlflow_runs, read_study

pytestmark = pytest.mark.slow

SPACE = ["search=lr_beta", "dataset=moons", "dataset.n_samples=300"]
A = "lr_beta dataset.n_samples:300 dataset:moons epochs:3"
B = "lr_beta dataset.n_samples:300 dataset:moons epochs:4"


def test_a_study_starts_from_an_earlier_studys_best_trials_once(tmp_path: Path) -> None:
    journal = str(tmp_path / DEFAULT_JOURNAL)
    r = hyperlab(tmp_path, *SPACE, "epochs=3", "sweep.n_trials=4")
    assert r.returncode == 0, r.stderr
    best = earlier.ranked(read_study(journal, A))[:2]

    warm = [*SPACE, "epochs=4", f"sweep.warm_start={A}", "sweep.warm_start_top=2"]
    r = hyperlab(tmp_path, *warm, "sweep.n_trials=3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].endswith(f"; warm start: 2 trials from study {A}")
    assert sorted(optuna.get_all_study_names(st.storage(journal))) == [A, B]
    b = read_study(journal, B)
    assert [t.state for t in b.trials] == [TrialState.COMPLETE] * 3
    # Its first trials are A's best two, re-evaluated: their very values, and where from.
    assert [t.params for t in b.trials[:2]] == [t.params for t in best]
    assert [t.user_attrs[warm_start.FROM_ATTR] for t in b.trials[:2]] == [
        {"study": A, "trial": t.number} for t in best
    ]
    assert warm_start.FROM_ATTR not in b.trials[2].user_attrs
    runs = {
        int(run.data.tags["hyperlab.trial"]): run
        for run in mlflow_runs(tmp_path)
        if run.data.tags.get("hyperlab.study") == B and "hyperlab.trial" in run.data.tags
    }
    assert [runs[n].data.tags.get(warm_start.TAG) for n in range(3)] == [
        *(f"trial {t.number} of study {A}" for t in best),
        None,
    ]
    (parent,) = [
        p
        for p in mlflow_runs(tmp_path)
        if "mlflow.parentRunId" not in p.data.tags and p.data.tags["hyperlab.study"] == B
    ]
    assert parent.data.params["warm_start"] == f"{A} (best 2)"
    assert parent.data.tags["hyperlab.warm_start"] == (
        f"2 trials from study {A} in outputs/optuna/journal.log: "
        f"trial(s) {best[0].number}, {best[1].number}"
    )

    # Resumed, B samples on: A's trials are not enqueued again.
    again = hyperlab(tmp_path, *warm, "sweep.n_trials=5")
    assert again.returncode == 0, again.stderr
    assert "warm start" not in again.stdout
    b = read_study(journal, B)
    assert [t.state for t in b.trials] == [TrialState.COMPLETE] * 5
    assert [warm_start.FROM_ATTR in t.user_attrs for t in b.trials] == [True, True] + [False] * 3
