"""What hyperlab recorded, read back: Optuna studies and MLflow runs. And one record made
up for a test: a study whose best trial no longer holds (stale_study)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from optuna.distributions import FloatDistribution

from hyperlab.search import study as st
from hyperlab.search.report import REPLAY_ATTR
from hyperlab.stores import DEFAULT_JOURNAL
from hyperlab.tracking import PARENT_RUN_ID


def read_study(storage: str, name: str) -> Any:
    """The study as Optuna reads it back from `storage` (a URL or a journal file)."""
    return optuna.load_study(study_name=name, storage=st.storage(storage))


def only_study(storage: str) -> Any:
    """The one study in `storage`."""
    (summary,) = optuna.get_all_study_summaries(st.storage(storage))
    return read_study(storage, summary.study_name)


def study_in(cwd: Path) -> optuna.Study:
    """The one study in the default journal of a command run in `cwd`."""
    return only_study(str(cwd / DEFAULT_JOURNAL))  # type: ignore[no-any-return]


def runs_of(uri: str, experiment: str) -> list[Any]:
    """Every run of `experiment`, read back from the tracking store `uri` (REST or SQL)."""
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment} at {uri}"
    return list(c.search_runs([exp.experiment_id], max_results=5000))


def mlflow_runs(cwd: Path) -> list[Any]:
    """Every run of every experiment in the default MLflow store of a command run in `cwd`."""
    c = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
    return list(c.search_runs([e.experiment_id for e in c.search_experiments()]))


# MLflow's status for each way a trial ends.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def check_runs_match_trials(runs: list[Any], trials: list[Any]) -> None:
    """One parent run; under it, one run per trial, in the state the trial ended in, and
    none RUNNING."""
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r not in parents]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    by_trial = {int(r.data.tags["hyperlab.trial"]): r for r in children}
    assert len(by_trial) == len(children), "a trial has two runs"
    assert sorted(by_trial) == sorted(t.number for t in trials)
    for t in trials:
        run = by_trial[t.number]
        assert run.info.status == RUN_STATUS[t.state.name], (t.number, t.state, run.info.status)
        if t.state.name == "FAIL":
            assert run.data.tags.get("hyperlab.failure_reason"), t.number
            assert t.user_attrs.get("fail_reason"), t.number
    assert "RUNNING" not in {r.info.status for r in runs}


STALE_RUN = "hyperlab dataset=moons epochs=4"


def stale_study(path: Path) -> str:
    """A study whose records no longer hold: the tiny rate was recorded as the best."""
    s = optuna.create_study(study_name="stale", storage=st.storage(str(path)), direction="maximize")
    s.set_user_attr(PARENT_RUN_ID, "f" * 32)
    lr = FloatDistribution(1e-6, 1.0, log=True)
    for value, rate in ((0.99, 1e-6), (0.60, 0.05), (0.50, 0.1)):
        trial = optuna.trial.create_trial(
            params={"lr": rate},
            distributions={"lr": lr},
            value=value,
            user_attrs={REPLAY_ATTR: f"{STALE_RUN} lr={rate}"},
        )
        s.add_trial(trial)
    return str(path)


def plain_optuna_study(path: Path) -> str:
    """A study made with Optuna alone: three complete trials, no replay lines."""
    s = optuna.create_study(study_name="plain", storage=st.storage(str(path)), direction="maximize")
    s.optimize(lambda t: t.suggest_float("lr", 1e-4, 1.0, log=True), n_trials=3)
    return str(path)


def backups(path: Path) -> list[Path]:
    """The backups a journal repair kept beside the journal at `path`."""
    return sorted(path.parent.glob(path.name + ".broken-*"))
