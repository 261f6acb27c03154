"""Seed repeats: a configuration judged by its mean (or a pessimistic bound) over seeds."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import Compose
from hyperlab.repeats import spread, train
from hyperlab.run import Job
from hyperlab.tracking import drain
from test_sweep import QUICK, hyperlab, load


def test_spread_mean_std_and_the_pessimistic_bound() -> None:
    values = [0.90, 0.80, 0.85]
    mean, std = statistics.fmean(values), statistics.stdev(values)
    up = spread([0, 1, 2], values, direction="maximize", over_seeds="bound", z=2.0)
    assert (up.mean, up.std) == (pytest.approx(mean), pytest.approx(std))
    assert up.objective == pytest.approx(mean - 2.0 * std / math.sqrt(3))
    down = spread([0, 1, 2], values, direction="minimize", over_seeds="bound", z=2.0)
    assert down.objective == pytest.approx(mean + 2.0 * std / math.sqrt(3))
    assert spread([0, 1, 2], values).objective == pytest.approx(mean)
    assert spread([0], [0.7]).std == 0.0


def test_a_diverged_seed_makes_the_configuration_nan() -> None:
    assert math.isnan(spread([0, 1], [0.9, math.nan]).objective)


def test_a_steady_configuration_beats_a_lucky_one_on_the_bound() -> None:
    lucky = spread([0, 1, 2], [0.99, 0.70, 0.75], over_seeds="bound")
    steady = spread([0, 1, 2], [0.82, 0.81, 0.83], over_seeds="bound")
    assert max(lucky.values) > max(steady.values) and steady.objective > lucky.objective


def test_repeats_train_each_seed_under_one_parent_run(cfg: Compose, mlflow_uri: str) -> None:
    loss = ("objective.metric=dev_loss", "objective.direction=minimize")
    config = cfg("dataset=moons", "epochs=3", "repeats=3", "seed=5", *loss, tracking=True)
    result = train(config, Job(overrides=["repeats=3"]))
    drain()
    assert result.seeds == [5, 6, 7]
    assert len(set(result.values)) == 3  # the seed changes initialization and shuffles
    assert result.objective == pytest.approx(statistics.fmean(result.values))
    c = MlflowClient(mlflow_uri)
    exp = c.get_experiment_by_name(config.tracking.experiment)
    runs = c.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["seed"] for r in children) == ["5", "6", "7"]
    assert parent.info.run_name == "3 seeds: repeats=3"
    assert parent.data.metrics["dev_loss_mean"] == pytest.approx(result.mean)
    assert parent.data.metrics["dev_loss_std"] == pytest.approx(result.std)
    by_seed = {r.data.params["seed"]: r.data.metrics["dev_loss"] for r in children}
    assert [by_seed[str(s)] for s in result.seeds] == pytest.approx(result.values)


def test_one_repeat_is_a_plain_run(cfg: Compose) -> None:
    result = train(cfg("dataset=moons", "epochs=2"))
    assert result.seeds == [0] and result.std == 0.0


@pytest.mark.slow
def test_in_a_study_the_objective_is_the_bound_over_seeds(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "search=lr",
        "sampler=log_uniform",
        *QUICK,
        "sweep.n_trials=2",
        "repeats=2",
        "objective.over_seeds=bound",
        "objective.z=1.5",
    )
    assert r.returncode == 0, r.stderr
    for t in load(tmp_path).trials:
        values = list(t.user_attrs["per_seed"].values())
        assert len(values) == 2
        bound = statistics.fmean(values) - 1.5 * statistics.stdev(values) / math.sqrt(2)
        assert t.value == pytest.approx(bound)
