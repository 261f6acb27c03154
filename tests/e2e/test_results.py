"""Wrong results without a word (issue 11, section 5): each case that used to give a wrong
study or run silently is now refused with the problem and its fix, or recorded and warned.

The fast tests run in-process through the path the command takes; the slow ones run the
real `hyperlab` command and check that a refused command recorded nothing.

Here: through the `hyperlab` command;
unit/test_results.py and integration/test_results.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from hyperlab.search import study as st
from hyperlab.search.setup import (
    DATA_ATTR,
    FIRST_DATA_ATTR,
)
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import hyperlab
from support.records import mlflow_runs, plain_optuna_study
from support.refusals import check_refused, snapshot

optuna.logging.set_verbosity(optuna.logging.WARNING)


TINY = ["epochs=1", "dataset=moons", "dataset.n_samples=200", "sweep.n_trials=2"]


@pytest.mark.slow
def test_the_command_refuses_to_mix_two_spaces_in_one_study(tmp_path: Path) -> None:
    mine = [*TINY, "sweep.study=mine"]
    r = hyperlab(tmp_path, "search=lr", *mine)
    assert r.returncode == 0, r.stderr
    before = snapshot(tmp_path)
    for args, message in (
        (["search=lr_beta"], "optimizer.beta added (float in [0.9, 0.999], one_minus_log"),
        (["search=lr", "objective.metric=dev_loss"], "from dev_acc (maximize) to dev_loss"),
        (["search=lr", "search.params.lr.high=0.1"], "lr changed from float in [0.0001, 1]"),
    ):
        r = hyperlab(tmp_path, *args, *mine)
        check_refused(r, 2, message)
        assert "sweep.study=NEW_NAME" in " ".join(r.stderr.split())
        assert snapshot(tmp_path) == before  # no trial, no run, not a byte of the journal
    # More trials with another sampler: the same study, resumed.
    r = hyperlab(tmp_path, "search=lr", "sampler=log_uniform", *mine, "sweep.n_trials=3")
    assert r.returncode == 0, r.stderr
    s = optuna.load_study(study_name="mine", storage=st.storage(str(tmp_path / DEFAULT_JOURNAL)))
    assert len(s.trials) == 3 and set(s.trials[2].params) == {"lr"}


@pytest.mark.slow
def test_the_command_refuses_a_key_searched_and_fixed(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "search=lr", "lr=0.5", *TINY)
    check_refused(r, 2, "lr is searched (float in [0.0001, 1], log scale) and also fixed")
    assert "remove lr=0.5" in " ".join(r.stderr.split())
    assert not (tmp_path / "outputs" / "optuna").exists() and not (tmp_path / "outputs").exists()
    r = hyperlab(tmp_path, "search=lr", "search.params.lr.low=0.01", "sweep.dry_run=true")
    assert r.returncode == 0, r.stderr  # narrowing the space is no conflict


@pytest.mark.slow
def test_the_command_refuses_a_when_that_can_never_hold(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "search=optimizers",
        "+search.params.batch_size={low:16,high:128,when:{optimizer:adamm}}",
        "sweep.dry_run=true",
    )
    check_refused(r, 2, "when: optimizer='adamm' can never hold")
    assert "choices ['momentum', 'rmsprop', 'adam'], nor an option of the group optimizer" in (
        " ".join(r.stderr.split())
    )


@pytest.mark.slow
def test_a_loss_is_minimized_and_maximizing_it_is_refused(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "objective.metric=dev_loss", "objective.direction=maximize", *TINY)
    check_refused(r, 2, "objective.direction=maximize with objective.metric=dev_loss")
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    r = hyperlab(tmp_path, "search=lr", "objective.metric=dev_loss", *TINY)
    assert r.returncode == 0, r.stderr
    storage = st.storage(str(tmp_path / DEFAULT_JOURNAL))
    (name,) = optuna.get_all_study_names(storage)
    s = optuna.load_study(study_name=name, storage=storage)
    assert s.direction == optuna.study.StudyDirection.MINIMIZE
    assert s.best_value == min(t.value for t in s.trials)  # type: ignore[type-var]
    runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.params["objective"] == "dev_loss (minimize)"
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {c.data.params["objective.direction"] for c in children} == {"minimize"}
    assert {c.data.tags["hyperlab.objective"] for c in children} == {"dev_loss (minimize)"}


def write_npz(path: Path, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(200, 2))
    np.savez(path, X=x, y=(x[:, 0] > 0).astype(int))


@pytest.mark.slow
def test_data_that_changes_during_a_study_is_recorded_and_warned_about(tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    write_npz(data, 0)
    args = ["search=lr", "epochs=1", "dataset=npz", f"dataset.path={data}"]
    r = hyperlab(tmp_path, *args, "sweep.n_trials=2")
    assert r.returncode == 0, r.stderr
    assert "other data" not in r.stdout + r.stderr
    write_npz(data, 1)  # the file is replaced; the same command resumes the study
    r = hyperlab(tmp_path, *args, "sweep.n_trials=4")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stderr.split())
    for n in (2, 3):  # each worker's trial on the new data, as it trains
        assert f"trial {n} trained on other data than the study's first trial" in out
    assert "trial(s) 2, 3 trained on other data" in out  # and the report
    (summary,) = sorted((tmp_path / "outputs" / "multirun").glob("*/summary.md"))[-1:]
    assert "trial(s) 2, 3 trained on other data" in summary.read_text()

    storage = st.storage(str(tmp_path / DEFAULT_JOURNAL))
    (name,) = optuna.get_all_study_names(storage)
    s = optuna.load_study(study_name=name, storage=storage)
    hashes = [t.user_attrs[DATA_ATTR] for t in s.trials]
    assert hashes[0] == hashes[1] == s.user_attrs[FIRST_DATA_ATTR] != hashes[2] == hashes[3]
    children = [r for r in mlflow_runs(tmp_path) if "hyperlab.trial" in r.data.tags]
    by_trial = {int(c.data.tags["hyperlab.trial"]): c.data.params[DATA_ATTR] for c in children}
    assert by_trial == dict(enumerate(hashes))


@pytest.mark.slow
def test_the_command_says_why_a_plain_optuna_study_cannot_be_retested(tmp_path: Path) -> None:
    url = plain_optuna_study(tmp_path / "journal.log")
    r = hyperlab(tmp_path, "task=retest", "study=plain", f"sweep.storage={url}")
    check_refused(r, 2, "has 3 complete trial(s), but none was recorded by hyperlab")
