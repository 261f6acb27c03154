"""Versions that hold (issue 11, section 8): every direct dependency is held below its next
major release, and each study and run records the versions it ran with, so that a retest
says when they changed.

Here: through the `hyperlab` command;
unit/test_versions.py and integration/test_versions.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from hyperlab.search import study as st
from hyperlab.search.setup import VERSIONS_ATTR
from hyperlab.stores import DEFAULT_JOURNAL
from hyperlab.tracking import versions
from support.command import QUICK, hyperlab


@pytest.mark.slow
def test_a_study_records_its_versions_and_retest_reports_a_change(tmp_path: Path) -> None:
    args = ["search=lr", *QUICK, "sweep.n_trials=2"]
    r = hyperlab(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    storage = st.storage(str(tmp_path / DEFAULT_JOURNAL))
    (name,) = optuna.get_all_study_names(storage)
    s = optuna.load_study(study_name=name, storage=storage)
    assert s.user_attrs[VERSIONS_ATTR] == versions()

    runs = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").search_runs(["1"])
    (parent,) = [r for r in runs if r.info.run_name == f"study {name}"]
    for package, version in versions().items():
        assert parent.data.params[f"version.{package}"] == version
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2
    assert all(t.data.tags["version.optuna"] == versions()["optuna"] for t in trials)

    # As if the study had been made with an older Optuna: a resume says so, and the record
    # of what it was made with stays.
    old = {**versions(), "optuna": "4.0.0"}
    s.set_user_attr(VERSIONS_ATTR, old)
    r = hyperlab(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    assert f"optuna 4.0.0 -> {versions()['optuna']}" in r.stderr
    assert optuna.load_study(study_name=name, storage=storage).user_attrs[VERSIONS_ATTR] == old

    r = hyperlab(tmp_path, "task=retest", f"study={name}", "top_k=1", "seeds=1")
    assert r.returncode == 0, r.stderr
    assert f"versions changed since the study ran: optuna 4.0.0 -> {versions()['optuna']}" in (
        " ".join(r.stdout.split())
    )
    runs = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").search_runs(["1"])
    (retested,) = [r for r in runs if r.info.run_name == f"retest {name}"]
    assert retested.data.tags["hyperlab.versions_changed"] == (
        f"optuna 4.0.0 -> {versions()['optuna']}"
    )
