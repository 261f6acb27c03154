"""Lesson presets (conf/experiment/): each composes to its lesson, every job it launches
builds, and a shortened version runs through the `hyperlab` command.

Here: through the `hyperlab` command;
unit/test_presets.py and integration/test_presets.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from hyperlab.search import study as st
from hyperlab.stores import DEFAULT_JOURNAL
from support.command import hyperlab
from support.presets import MULTIRUNS, POPULATIONS, STUDIES, jobs, same


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every preset's run: one MLflow store (creating its tables costs
    seconds), one experiment per preset in it, as a user's outputs/ holds them."""
    return tmp_path_factory.mktemp("presets")


def lesson_runs(cwd: Path, name: str) -> tuple[list, list]:  # type: ignore[type-arg]
    """(parent runs, child runs) of the preset's MLflow experiment."""
    c = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
    experiment = c.get_experiment_by_name(f"lesson-{name}")
    assert experiment is not None, f"no MLflow experiment lesson-{name}"
    runs = c.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MULTIRUNS))
def test_multirun_preset_runs(workdir: Path, name: str) -> None:
    _, sweep = MULTIRUNS[name]
    r = hyperlab(workdir, f"experiment={name}", "epochs=2", "progress=false")
    assert r.returncode == 0, r.stderr
    parents, children = lesson_runs(workdir, name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == len(jobs(sweep))
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    for key, values in sweep.items():
        assert {same(c.data.params[key]) for c in children} == {same(v) for v in values.split(",")}
    for c in children:  # a diverged job (lr=1 without batch norm) fails; the rest go on
        assert c.info.status == "FINISHED" or c.data.tags["hyperlab.outcome"] == "diverged"
        if c.info.status == "FINISHED":
            assert c.data.metrics["dev_acc"] >= 0
            assert c.data.tags["hyperlab.bias_variance"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_preset_runs_with_both_samplers(workdir: Path, name: str) -> None:
    search, _, _, samplers = STUDIES[name]
    for sampler in samplers:
        r = hyperlab(
            workdir, f"experiment={name}", f"sampler={sampler}", "sweep.n_trials=3", "epochs=2"
        )
        assert r.returncode == 0, r.stderr
        assert "distinct values tried: lr " in r.stdout
        assert ("sampler=random samples every range" in r.stderr) == (sampler == "random")
    storage = st.storage(str(workdir / DEFAULT_JOURNAL))
    studies = [
        s.study_name
        for s in optuna.get_all_study_summaries(storage)
        if s.study_name.startswith(f"{search} ")
    ]
    for study_name in studies:  # one study per sampler: the study's name has the overrides
        s = optuna.load_study(study_name=study_name, storage=storage)
        assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 3
    parents, children = lesson_runs(workdir, name)
    assert len(studies) == len(parents) == 2  # side by side in one MLflow experiment
    assert {p.data.params["sampler"] for p in parents} == set(samplers)
    assert {p.data.params["search"] for p in parents} == {search}
    assert len(children) == 6
    assert {c.info.status for c in [*parents, *children]} == {"FINISHED"}


@pytest.mark.slow
def test_panda_vs_caviar_runs_both_sides(workdir: Path) -> None:
    short = ["epochs=2", "dataset=moons", "checkpoint.every=2"]
    r = hyperlab(workdir, "experiment=panda_vs_caviar", "sweep.n_trials=4", *short)
    assert r.returncode == 0, r.stderr
    run_dir = workdir / "panda"
    r = hyperlab(
        workdir, "experiment=panda_vs_caviar", "~search", *short, f"hydra.run.dir={run_dir}"
    )
    assert r.returncode == 0, r.stderr
    r = hyperlab(workdir, f"resume={run_dir}", "lr=3e-4", "epochs=4")
    assert r.returncode == 0, r.stderr
    parents, children = lesson_runs(workdir, "panda_vs_caviar")
    study = [p for p in parents if p.info.run_name.startswith("study ")]
    assert len(study) == 1 and len(children) == 4
    panda = [p for p in parents if not p.info.run_name.startswith("study ")]
    assert len(panda) == 2
    (resumed,) = [p for p in panda if "hyperlab.resumed_from" in p.data.tags]
    assert resumed.data.tags["hyperlab.resumed_at_epoch"] == "2"
    assert resumed.data.params["lr"] == "0.0003"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(POPULATIONS))
def test_population_preset_runs_beside_its_workers_side(workdir: Path, name: str) -> None:
    """Both sides of the lesson, shortened: the study as one stack, and the same search a
    trial at a time on two workers under its own study name; side by side in one MLflow
    experiment, each stacked run tagged with its stack."""
    short = ["sweep.n_trials=4", "epochs=3", "progress=false"]
    r = hyperlab(workdir, f"experiment={name}", "sweep.population=4", *short)
    assert r.returncode == 0, r.stderr
    assert "trials 0-3 train as one stacked model of 4" in r.stderr
    r = hyperlab(
        workdir,
        f"experiment={name}",
        "sweep.population=1",
        "sweep.workers=2",
        "sweep.study=caviar_workers",
        *short,
    )
    assert r.returncode == 0, r.stderr
    parents, children = lesson_runs(workdir, name)
    assert len(parents) == 2 and len(children) == 8
    assert {c.info.status for c in [*parents, *children]} == {"FINISHED"}
    stacked = [c for c in children if "hyperlab.population" in c.data.tags]
    assert len(stacked) == 4
    assert {c.data.tags["hyperlab.population"] for c in stacked} == {
        "worker 0, trials 0-3 (4 members)"
    }
