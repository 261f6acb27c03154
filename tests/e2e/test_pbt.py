"""Population-based training through the `hyperlab` command, as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from hyperlab.search import names
from support.command import PBT_TINY, hyperlab
from support.records import mlflow_runs, study_in

pytestmark = pytest.mark.slow


def test_a_pbt_study_records_lineage_schedules_and_trial_states(tmp_path: Path) -> None:
    args = [*PBT_TINY, "sampler=log_uniform"]
    r = hyperlab(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    assert "trials 0-3 train as one stacked model of 4" in r.stderr
    assert "PBT schedule of its weights: epochs 1-" in r.stdout and "replay: hyperlab" in r.stdout
    s = study_in(tmp_path)
    plain = [a for a in args if not a.startswith("sweep.schedule")]
    assert s.study_name == names.study_name("lr_beta", args) != names.study_name("lr_beta", plain)
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 4
    runs = {r.data.tags.get("hyperlab.trial"): r for r in mlflow_runs(tmp_path)}
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    copies = 0
    for t in s.trials:
        run = runs[str(t.number)]
        assert run.info.status == "FINISHED"
        lineage = run.data.tags["hyperlab.pbt.lineage"]
        assert lineage == t.user_attrs["pbt_lineage"]
        copies += lineage.count("copied trial")
        # The searched beta, per epoch, as the stack used it.
        betas = client.get_metric_history(run.info.run_id, "optimizer.beta")
        assert [m.step for m in sorted(betas, key=lambda m: m.step)] == list(range(1, 9))
        final = t.user_attrs["pbt_schedule"]["final"]["optimizer.beta"]
        assert max(betas, key=lambda m: m.step).value == pytest.approx(final, rel=1e-12)
        assert 0.9 <= final <= 0.999
        assert run.data.tags["hyperlab.replay"] == t.user_attrs["replay"]
    assert copies == 3  # one copy at epochs 2, 4 and 6 (none after the last, 8)


def test_pbt_refuses_a_parameter_it_cannot_change(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "search=optimizers", "sweep.schedule=pbt", "sweep.population=4")
    assert r.returncode != 0
    assert "cannot change optimizer mid-training" in r.stderr
    assert not (tmp_path / "outputs" / "optuna").exists()  # nothing written
