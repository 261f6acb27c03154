"""task=retest: the best trials of an earlier study, trained again with several seeds.

Here: through the `hyperlab` command; integration/test_retest.py holds the rest."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import QUICK, hyperlab


@pytest.mark.slow
def test_retest_from_the_command_line(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "search=lr", "sampler=log_uniform", *QUICK, "sweep.n_trials=3")
    assert r.returncode == 0, r.stderr
    storage = st.storage(str(tmp_path / DEFAULT_JOURNAL))
    (name,) = optuna.get_all_study_names(storage)
    r = hyperlab(tmp_path, "task=retest", f"study={name}", "top_k=2", "seeds=2")
    assert r.returncode == 0, r.stderr
    assert "rank then" in r.stdout and "recorded" in r.stdout
    runs = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").search_runs(["1"])
    (parent,) = [r for r in runs if r.info.run_name == f"retest {name}"]
    study_parent = next(r for r in runs if r.info.run_name == f"study {name}")
    assert parent.data.tags["hyperlab.retest_of"] == study_parent.info.run_id
    assert parent.info.status == "FINISHED"
