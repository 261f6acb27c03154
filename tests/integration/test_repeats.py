"""Seed repeats: a configuration judged by its mean (or a pessimistic bound) over seeds.

Here: in this process, from composed configs;
unit/test_repeats.py and e2e/test_repeats.py hold the rest."""

from __future__ import annotations

import statistics

import pytest
from mlflow import MlflowClient

from hyperlab.repeats import train
from hyperlab.run import Job
from hyperlab.tracking import drain
from support.paths import Compose


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
