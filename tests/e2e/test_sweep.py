"""Studies end to end, through the `hyperlab` command as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import HYPERLAB, NEVER_PRUNE, QUICK, hyperlab
from support.records import mlflow_runs, study_in
from support.servers import dashboard, http_json

pytestmark = pytest.mark.slow


def test_a_study_records_trials_parent_run_report_and_resumes(tmp_path: Path) -> None:
    args = ["search=lr_beta", "sampler=log_uniform", *QUICK]
    r = hyperlab(tmp_path, *args, "sweep.n_trials=5")
    assert r.returncode == 0, r.stderr
    assert "best: trial" in r.stdout and "replay: hyperlab" in r.stdout
    assert "importances:" in r.stdout
    # The live view: one line per trial as it ended, whole in a pipe; no launcher noise.
    ended = re.findall(r"^trial (\d) complete  dev_acc [0-9.]+  best .* worker 0  ", r.stdout, re.M)
    assert sorted(ended) == list("01234"), r.stdout
    assert "Joblib" not in r.stdout + r.stderr and "Launching jobs" not in r.stderr
    s = study_in(tmp_path)
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 5
    assert set(s.trials[0].params) == {"lr", "1-optimizer.beta"}
    listed = hyperlab(tmp_path, "task=studies")
    assert listed.returncode == 0, listed.stderr
    assert s.study_name in listed.stdout and "5 complete" in listed.stdout

    runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 5 and parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(int(c.data.tags["hyperlab.trial"]) for c in children) == list(range(5))
    assert {c.info.status for c in children} == {"FINISHED"}
    assert all(
        c.data.tags["hyperlab.replay"].startswith("hyperlab optimizer=momentum") for c in children
    )
    assert parent.data.params["search"] == "lr_beta"
    assert parent.data.params["space.optimizer.beta"].endswith("one_minus_log scale")
    assert parent.data.metrics["best_value"] == pytest.approx(s.best_value)
    assert {"importance.lr", "importance.optimizer.beta"} <= set(parent.data.metrics)
    files = {
        a.path
        for a in MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").list_artifacts(
            parent.info.run_id
        )
    }
    assert {
        "summary.md",
        "optimization_history.png",
        "parallel_coordinate.png",
        "param_importances.png",
    } <= files

    # The best trial's replay line trains the same model to the same value.
    replay = s.best_trial.user_attrs["replay"].split()[1:]
    again = hyperlab(tmp_path, *replay, "tracking.enabled=false")
    value = float(re.search(r"objective: dev_acc = ([0-9.]+)", again.stdout).group(1))  # type: ignore[union-attr]
    assert value == pytest.approx(s.best_value, abs=1e-4)

    # optuna-dashboard reads the study from its storage.
    assert dashboard_studies(tmp_path / DEFAULT_JOURNAL) == [s.study_name]

    # The same command with a larger budget resumes the study and its parent run.
    r = hyperlab(tmp_path, *args, "sweep.n_trials=7")
    assert r.returncode == 0, r.stderr
    assert len(study_in(tmp_path).trials) == 7
    runs = mlflow_runs(tmp_path)
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    assert len(runs) == 8


def dashboard_studies(journal: Path) -> list[str]:
    with dashboard(str(journal)) as base:
        return [x["study_name"] for x in http_json(f"{base}/api/studies")["study_summaries"]]


def test_pruned_trials_stop_early_and_are_killed_in_mlflow(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "search=lr",
        "sampler=log_uniform",
        "pruner=median",
        "pruner.n_startup_trials=2",
        "pruner.n_warmup_steps=0",
        "sweep.n_trials=10",
        "epochs=6",
        "dataset=moons",
        "dataset.n_samples=300",
    )
    assert r.returncode == 0, r.stderr
    s = study_in(tmp_path)
    pruned = [t for t in s.trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner stopped no trial"
    assert all(len(t.intermediate_values) < 6 for t in pruned)
    runs = {
        int(r.data.tags["hyperlab.trial"]): r
        for r in mlflow_runs(tmp_path)
        if "hyperlab.trial" in r.data.tags
    }
    for t in pruned:
        assert runs[t.number].info.status == "KILLED"
        assert runs[t.number].data.tags["hyperlab.outcome"] == "pruned"


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path, "search=lr", "sampler=tpe", "sweep.workers=2", "sweep.n_trials=8", *QUICK
    )
    assert r.returncode == 0, r.stderr
    s = study_in(tmp_path)
    assert sorted(t.number for t in s.trials) == list(range(8))
    assert {t.state for t in s.trials} == {TrialState.COMPLETE}
    assert len({t.user_attrs[st.PID_ATTR] for t in s.trials}) == 2
    children = [r for r in mlflow_runs(tmp_path) if "hyperlab.trial" in r.data.tags]
    assert sorted(int(c.data.tags["hyperlab.trial"]) for c in children) == list(range(8))


def test_kill_9_in_the_middle_then_the_same_command_finishes(tmp_path: Path) -> None:
    args = [
        "search=lr",
        "sampler=log_uniform",
        "sweep.n_trials=6",
        "epochs=200",
        "dataset=moons",
        "dataset.n_samples=300",
        *NEVER_PRUNE,  # trials report every epoch, which tells when one trains
    ]
    proc = subprocess.Popen(
        [HYPERLAB, *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    journal = tmp_path / DEFAULT_JOURNAL
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until a trial is done and another training
        storage = st.storage(str(journal)) if journal.exists() else None
        if storage is not None and optuna.get_all_study_summaries(storage):  # created yet?
            trials = study_in(tmp_path).trials
            states = [t.state for t in trials]
            if (
                TrialState.COMPLETE in states
                and states[-1] == TrialState.RUNNING
                and trials[-1].intermediate_values  # its epochs have begun: it has a run
            ):
                break
        time.sleep(0.2)
    else:
        pytest.fail("the study never got going")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = hyperlab(tmp_path, *args)  # the same command
    assert r.returncode == 0, r.stderr
    s = study_in(tmp_path)
    finished = [t for t in s.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    killed = [t for t in s.trials if t.state == TrialState.FAIL]
    assert len(killed) == 1 and killed[0].user_attrs["fail_reason"] == st.DEAD_WORKER
    assert not [t for t in s.trials if t.state == TrialState.RUNNING]
    # Its MLflow run was closed by the writer when the trainer died, not left RUNNING.
    time.sleep(1)
    statuses = {r.info.status for r in mlflow_runs(tmp_path)}
    assert "RUNNING" not in statuses and "FAILED" in statuses


def test_a_sweep_stops_past_its_failure_rate_and_m_works_too(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "-m",
        "search=lr",
        "search.params.lr.low=1e5",
        "search.params.lr.high=1e7",
        "optimizer=gd",
        "init=random_large",
        "sweep.n_trials=20",
        "sampler=log_uniform",
        *QUICK,
    )
    assert r.returncode == 1
    assert "more than sweep.max_failure_rate=0.5" in r.stderr
    s = study_in(tmp_path)
    assert len(s.trials) == 5  # it stopped at the first check, not after 20
    assert {t.state for t in s.trials} == {TrialState.FAIL}
    assert "diverged" in s.trials[0].user_attrs["fail_reason"]
    children = [r for r in mlflow_runs(tmp_path) if "hyperlab.trial" in r.data.tags]
    assert {c.info.status for c in children} == {"FAILED"}


def test_a_bad_space_fails_before_any_trial(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "search=lr",
        "search.params.lr.low=-1",
        "search.params.lr.high=1",
        "search.params.lr.scale=log",
    )
    assert r.returncode == 2
    assert "search.params.lr" in r.stderr and "low > 0" in r.stderr
    assert not (tmp_path / DEFAULT_JOURNAL).exists()


def test_coarse_to_fine_tags_each_trials_stage_and_the_parent_with_regions(
    tmp_path: Path,
) -> None:
    r = hyperlab(tmp_path, "search=lr_beta", "sampler=coarse_to_fine", *QUICK, "sweep.n_trials=8")
    assert r.returncode == 0, r.stderr
    runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {int(r.data.tags["hyperlab.trial"]): r for r in runs if r is not parent}
    # budgets 0.5/0.25/0.25 of 8 trials: 4, 2, 2
    assert [children[n].data.tags["hyperlab.stage"] for n in range(8)] == list("00001122")
    assert parent.data.tags["hyperlab.stage_ends"] == "[4, 6, 8]"
    for stage in (1, 2):
        low, high = map(float, parent.data.tags[f"region.{stage}.lr"].strip("[]").split(","))
        assert 1e-4 <= low < high <= 1.0
        for child in children.values():
            if child.data.tags["hyperlab.stage"] == str(stage):
                # the tags show 4 significant digits
                assert low * 0.999 <= float(child.data.params["lr"]) <= high * 1.001
        beta = parent.data.tags[f"region.{stage}.optimizer.beta"]
        b_low, b_high = map(float, beta.strip("[]").split(","))
        assert 0.9 <= b_low < b_high <= 0.999


def test_a_population_study_trains_stacks_and_records_every_trial(tmp_path: Path) -> None:
    """sweep.population=4 through the command: eight trials in two stacks of four, each
    with its own finished child run under the study's run, and a report like any study's.
    Run again with a larger budget, the study resumes to exactly its new n_trials."""
    args = ["search=lr_beta", "dataset=moons", "epochs=3", "sweep.population=4"]
    r = hyperlab(tmp_path, *args, "sweep.n_trials=8")
    assert r.returncode == 0, r.stderr
    assert "best: trial" in r.stdout
    s = study_in(tmp_path)
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 8
    assert all(set(t.user_attrs["seconds"]) == {"build", "fit", "finish"} for t in s.trials)
    runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(int(c.data.tags["hyperlab.trial"]) for c in children) == list(range(8))
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    r = hyperlab(tmp_path, *args, "sweep.n_trials=10")
    assert r.returncode == 0, r.stderr
    assert [t.state for t in study_in(tmp_path).trials] == [TrialState.COMPLETE] * 10


def test_a_multi_objective_study_reports_and_records_its_pareto_front(tmp_path: Path) -> None:
    args = ["search=lr_size", "objective.metrics=[dev_acc,n_params]", *QUICK]
    r = hyperlab(tmp_path, *args, "sweep.n_trials=5")
    assert r.returncode == 0, r.stderr
    s = study_in(tmp_path)
    assert s.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    assert s.metric_names == ["dev_acc", "n_params"]
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 5
    runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {c.info.run_id: c for c in runs if "mlflow.parentRunId" in c.data.tags}
    for t in s.trials:
        h = t.params["model.hidden_units"]
        run = children[t.user_attrs["mlflow_run_id"]]
        # [2, h, h, 2]: each trial told [its dev accuracy, its parameter count]
        assert t.values == [run.data.metrics["dev_acc"], float(2 * h + h + h * h + h + h * 2 + 2)]
        assert run.data.metrics["n_params"] == t.values[1]
        assert run.data.metrics["train_seconds"] > 0
    front = sorted(s.best_trials, key=lambda t: (-t.values[0], t.number))
    # The live lines: each objective's value and the front, not a best value.
    assert (
        len(
            re.findall(
                r"^trial \d complete  dev_acc [0-9.]+  n_params \d+  (on the )?front",
                r.stdout,
                re.M,
            )
        )
        == 5
    )
    assert "best" not in r.stdout.split("Pareto front:")[0].split("\n", 1)[1]
    for t in front:
        assert f"  trial {t.number}: {t.user_attrs['replay']}" in r.stdout
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").iterdir()
    summary = (sweep_dir / "summary.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([0-9.]+) \| (\d+) \|", summary, re.M)
    assert rows == [(str(t.number), f"{t.values[0]:.6g}", f"{t.values[1]:.0f}") for t in front]
    assert (sweep_dir / "pareto_front.png").stat().st_size > 0
    assert parent.data.tags["hyperlab.objectives"] == "dev_acc (maximize), n_params (minimize)"
    assert parent.data.tags["hyperlab.front"].splitlines() == [
        f"trial {t.number}: run {t.user_attrs['mlflow_run_id']} "
        f"dev_acc={t.values[0]:.6g} n_params={t.values[1]:.6g}"
        for t in front
    ]
    assert parent.data.metrics["front_size"] == len(front)
    assert "best_value" not in parent.data.metrics
    assert parent.data.params["objective"] == "dev_acc (maximize), n_params (minimize)"
    files = {
        a.path
        for a in MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").list_artifacts(
            parent.info.run_id
        )
    }
    assert {"summary.md", "pareto_front.md", "pareto_front.png"} <= files
