"""Lesson presets (conf/experiment/): each composes to its lesson, every job it launches
builds, and a shortened version runs through the `hyperlab` command."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import DictConfig
from optuna.trial import TrialState
from rich.console import Console

from conftest import CONF
from hyperlab.build import build
from hyperlab.cli import CONFIG_DIR
from hyperlab.search import report
from hyperlab.search import study as st
from hyperlab.search.samplers import GridSampler
from hyperlab.search.setup import setup_of
from hyperlab.stores import DEFAULT_JOURNAL
from hyperlab.validate import validate

HYPERLAB = str(Path(sys.executable).parent / "hyperlab")

# Multiruns through Hydra's basic sweeper: the group options they select, their sweep.
MULTIRUNS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "init_compare": (
        {"dataset": "circles", "optimizer": "gd"},
        {"init": "zeros,random_large,he"},
    ),
    "optimizers_moons": ({"dataset": "moons"}, {"optimizer": "gd,momentum,adam"}),
    "lr_decay": ({"optimizer": "gd"}, {"schedule": "constant,inverse_time,exponential,staircase"}),
    "regularization": ({"dataset": "moons"}, {"regularization": "none,l2,dropout"}),
    "batchnorm_robustness": (
        {"optimizer": "gd"},
        {"normalization": "none,batchnorm", "lr": "1e-3,1e-2,1e-1,1"},
    ),
}
# Optuna studies through hyperlab's sweeper: search space, default sampler, trials, and
# the samplers the lesson compares.
STUDIES: dict[str, tuple[str, str, int, tuple[str, str]]] = {
    "grid_vs_random": ("lr_eps", "log_uniform", 25, ("grid", "log_uniform")),
    "linear_vs_log": ("lr", "log_uniform", 20, ("random", "log_uniform")),
}
PRESETS = sorted([*MULTIRUNS, *STUDIES])

ComposeHydra = Callable[..., DictConfig]


@pytest.fixture
def compose_hydra() -> Iterator[ComposeHydra]:
    """compose(*overrides) with Hydra's own node: hydra.mode, the sweeper, the choices."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        yield lambda *overrides: compose(
            config_name="config", overrides=list(overrides), return_hydra_config=True
        )


def same(value: str) -> str | float:
    """An option's name, or a number however it is written (1e-3 and 0.001)."""
    try:
        return float(value)
    except ValueError:
        return value


def jobs(sweep: dict[str, str]) -> list[list[str]]:
    """The override lists Hydra's basic sweeper makes of `hydra.sweeper.params`."""
    axes = [[f"{k}={v}" for v in values.split(",")] for k, values in sweep.items()]
    return [list(job) for job in itertools.product(*axes)]


# --- composition (fast) ---------------------------------------------------------------------


def test_every_preset_is_a_global_config() -> None:
    files = sorted((CONF / "experiment").glob("*.yaml"))
    assert set(PRESETS) <= {f.stem for f in files}
    for f in files:
        assert f.read_text().startswith("# @package _global_\n"), f.name
    for name in PRESETS:
        assert "# Lesson: " in (CONF / "experiment" / f"{name}.yaml").read_text(), name


@pytest.mark.parametrize("name", sorted(MULTIRUNS))
def test_multirun_preset_composes_to_its_sweep(compose_hydra: ComposeHydra, name: str) -> None:
    choices, sweep = MULTIRUNS[name]
    c = compose_hydra(f"experiment={name}")
    assert c.hydra.mode.name == "MULTIRUN"  # no -m needed
    assert c.hydra.runtime.choices["hydra/sweeper"] == "basic"
    assert dict(c.hydra.sweeper.params) == sweep
    assert c.tracking.experiment == f"lesson-{name}"
    for group, option in choices.items():
        assert c.hydra.runtime.choices[group] == option
    # Every job the sweep launches is a valid config that builds, with its swept option.
    for job in jobs(sweep):
        jc = compose_hydra(f"experiment={name}", *job)
        build(validate(jc))
        for override in job:
            key, value = override.split("=")
            got = jc.hydra.runtime.choices.get(key, jc.get(key))
            assert same(str(got)) == same(value), (override, got)


def test_init_compare_is_the_courses_batch_gradient_descent(
    compose_hydra: ComposeHydra,
) -> None:
    c = validate(compose_hydra("experiment=init_compare"))
    parts = build(c)
    assert c["batch_size"] >= len(parts.data.y_train)  # one step per epoch
    assert list(c["model"]["hidden_units"]) == [10, 5]
    assert (c["lr"], c["epochs"]) == (0.01, 15000)


def test_optimizers_moons_uses_one_lr_and_the_courses_coefficients(
    compose_hydra: ComposeHydra,
) -> None:
    for option in ("gd", "momentum", "adam"):
        c = validate(compose_hydra("experiment=optimizers_moons", f"optimizer={option}"))
        assert (c["optimizer"]["lr"], c["batch_size"]) == (0.0007, 64)
        assert c["optimizer"].get("beta", 0.9) == 0.9
        assert c["optimizer"].get("beta1", 0.9) == 0.9
        assert c["optimizer"].get("beta2", 0.999) == 0.999


def test_regularization_overfits_a_small_noisy_set(compose_hydra: ComposeHydra) -> None:
    c = validate(compose_hydra("experiment=regularization"))
    data = build(c).data
    assert len(data.y_train) == 200 and c["dataset"]["noise"] > 0.2
    assert 0 < c["bayes_error"] < 0.1
    assert (c["model"]["hidden_units"], c["model"]["layers"]) == (100, 3)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_preset_composes_to_its_search(compose_hydra: ComposeHydra, name: str) -> None:
    search, default_sampler, n_trials, samplers = STUDIES[name]
    c = compose_hydra(f"experiment={name}")
    assert c.hydra.runtime.choices["hydra/sweeper"] == "hyperlab"
    assert c.hydra.runtime.choices["search"] == search
    assert c.hydra.runtime.choices["sampler"] == default_sampler
    assert c.sweep.n_trials == n_trials
    assert c.tracking.experiment == f"lesson-{name}"
    build(validate(c))
    for sampler in samplers:  # the sampler stays a command-line choice
        overrides = [f"experiment={name}", f"sampler={sampler}"]
        sc = compose_hydra(*overrides)
        assert sc.hydra.runtime.choices["sampler"] == sampler
        setup = setup_of(sc, overrides)
        assert setup.n_trials == n_trials
        assert setup.naive == (sampler == "random")


def test_grid_vs_random_grid_tries_five_learning_rates(compose_hydra: ComposeHydra) -> None:
    c = compose_hydra("experiment=grid_vs_random", "sampler=grid")
    setup = setup_of(c, ["experiment=grid_vs_random", "sampler=grid"])
    assert {p.key: len(p.grid_points()) for p in setup.params} == {"lr": 5, "optimizer.eps": 5}


# --- the report's distinct values (fast) ----------------------------------------------------


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(25):
        t = s.ask()
        lr = t.suggest_float("lr", 1e-4, 1e-1, log=True)
        t.suggest_float("1-optimizer.beta", 1e-3, 1e-1, log=True)
        if i == 3:  # a failed trial tried its values too
            s.tell(t, state=TrialState.FAIL)
        else:
            s.tell(t, -abs(lr - 1e-2))
    return s


def test_report_counts_the_distinct_values_each_parameter_tried(tmp_path: Path) -> None:
    grid = {"lr": [1e-4, 1e-3, 1e-2, 3e-2, 1e-1], "1-optimizer.beta": [1e-3, 3e-3, 1e-2, 3e-2, 0.1]}
    gridded = report.build(_study(GridSampler(grid, seed=0)), None)
    assert gridded.distinct == {"lr": 5, "optimizer.beta": 5}  # the key a user overrides
    assert gridded.sampled == 25
    randomly = report.build(_study(optuna.samplers.RandomSampler(seed=0)), None)
    assert randomly.distinct == {"lr": 25, "optimizer.beta": 25}

    md = report.markdown(gridded)
    assert "| parameter | distinct values tried (in 25 trials) |" in md
    assert "| lr | 5 |" in md and "| optimizer.beta | 5 |" in md
    console = Console(record=True, width=200)
    report.show(randomly, console)
    assert "distinct values tried: lr 25, optimizer.beta 25 (in 25 trials)" in console.export_text()


def test_report_of_an_empty_study_has_no_distinct_values() -> None:
    rep = report.build(optuna.create_study(), None)
    assert rep.distinct == {} and rep.sampled == 0
    assert "distinct" not in report.markdown(rep)


# --- shortened runs through the CLI (slow) ---------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every preset's run: one MLflow store (creating its tables costs
    seconds), one experiment per preset in it, as a user's outputs/ holds them."""
    return tmp_path_factory.mktemp("presets")


def hyperlab(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [HYPERLAB, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )


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
        if s.study_name.startswith(f"{search}-")
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


def test_panda_vs_caviar_composes_to_a_study_and_without_it_to_one_run(
    compose_hydra: ComposeHydra,
) -> None:
    caviar = compose_hydra("experiment=panda_vs_caviar")
    assert caviar.hydra.mode.name == "MULTIRUN"
    assert caviar.hydra.runtime.choices["hydra/sweeper"] == "hyperlab"
    assert (caviar.search.name, caviar.sweep.n_trials, caviar.sweep.workers) == ("lr", 8, 2)
    panda = compose_hydra("experiment=panda_vs_caviar", "~search")
    assert panda.search is None and panda.hydra.mode is None
    assert panda.checkpoint.every == 10
    # the same compute: 8 trials of `epochs` against one model of 8 x epochs
    assert caviar.sweep.n_trials * caviar.epochs == 160


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
