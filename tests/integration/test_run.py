"""run() end to end: what it returns, what it records in a real SQLite MLflow store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from hyperlab import tracking
from hyperlab.run import Job, run
from support.paths import Compose

EPOCH_METRICS = {"train_loss", "train_acc", "dev_loss", "dev_acc", "lr"}


def runs_of(uri: str, experiment: str) -> list:  # type: ignore[type-arg]
    tracking.drain()
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_run_records_params_metrics_artifacts_and_tags(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    overrides = [
        "optimizer=momentum",
        "optimizer.beta=0.95",
        "lr=0.05",
        "epochs=3",
        "schedule=inverse_time",
        "schedule.decay_rate=1",
    ]
    job = Job(
        choices={"optimizer": "momentum", "dataset": "digits", "schedule": "inverse_time"},
        overrides=overrides,
        command="hyperlab " + " ".join(overrides),
    )
    result = run(cfg(*overrides, tracking=True), job)
    value = result.objective
    (r,) = runs_of(mlflow_uri, request.node.name)
    # MLflow's UI opens the experiment on "Model training", not its GenAI pages.
    experiment = MlflowClient(mlflow_uri).get_experiment_by_name(request.node.name)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert r.info.status == "FINISHED"
    p = r.data.params
    # The result says which run recorded it, on which data, and where the time went.
    assert result.run_id == r.info.run_id and result.data_sha256 == p["data.sha256"]
    assert set(result.timings) == {"build", "fit", "finish"}
    assert p["optimizer"] == "momentum" and p["dataset"] == "digits"
    assert p["optimizer.beta"] == "0.95" and p["lr"] == "0.05" and p["optimizer.lr"] == "0.05"
    assert p["model.hidden_units"] == "128" and p["dataset.split.train"] == "0.7"
    assert not any(k.endswith("_target_") or k.startswith("tracking") for k in p)
    c = MlflowClient(mlflow_uri)
    for name in EPOCH_METRICS:
        history = c.get_metric_history(r.info.run_id, name)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
    lrs = sorted(c.get_metric_history(r.info.run_id, "lr"), key=lambda m: m.step)
    assert [m.value for m in lrs] == pytest.approx([0.05 / 2, 0.05 / 3, 0.05 / 4])
    assert r.data.metrics["dev_acc"] == pytest.approx(value)
    # The best epoch beside the last one: MLflow's table shows only a metric's last value.
    dev_acc = {m.step: m.value for m in c.get_metric_history(r.info.run_id, "dev_acc")}
    dev_loss = [m.value for m in c.get_metric_history(r.info.run_id, "dev_loss")]
    assert r.data.metrics["best_dev_acc"] == max(dev_acc.values())
    assert r.data.metrics["best_dev_loss"] == min(dev_loss)
    first_best = min(e for e, v in dev_acc.items() if v == max(dev_acc.values()))
    assert r.data.metrics["best_epoch"] == first_best
    assert r.data.tags["hyperlab.params"] == " ".join(overrides)
    assert {"test_loss", "test_acc", "train_error", "dev_error"} <= set(r.data.metrics)
    tags = r.data.tags
    assert tags["hyperlab.command"].startswith("hyperlab optimizer=momentum")
    assert tags["hyperlab.device"] == "cpu"  # device=auto on a machine without a GPU
    assert tags["hyperlab.bias_variance"] in {
        "high bias",
        "high variance",
        "high bias and high variance",
        "fine",
    }
    assert tags["hyperlab.next_step"]
    if tracking.git_commit():
        assert tags["mlflow.source.git.commit"] == tracking.git_commit()
    files = {a.path for a in c.list_artifacts(r.info.run_id)}
    assert files == {"config.yaml", "overrides.yaml", "learning_curve.png"}
    config = yaml.safe_load(Path(c.download_artifacts(r.info.run_id, "config.yaml")).read_text())
    assert config["optimizer"]["beta"] == 0.95 and config["optimizer"]["lr"] == 0.05
    saved = Path(c.download_artifacts(r.info.run_id, "overrides.yaml")).read_text()
    assert yaml.safe_load(saved) == overrides


def test_same_config_and_seed_give_the_same_metrics(cfg: Compose) -> None:
    config = cfg("epochs=3", "regularization=dropout", "normalization=batchnorm")
    from hyperlab.run import run as run_again

    histories = []
    for _ in range(2):
        listener = Recorder()
        run_again(config, Job(listeners=[listener]))
        histories.append(listener.history)
    assert histories[0] == histories[1]
    other = Recorder()
    run(
        cfg("epochs=3", "regularization=dropout", "normalization=batchnorm", "seed=1"),
        Job(listeners=[other]),
    )
    assert other.history != histories[0]


class Recorder:
    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.history.append(dict(metrics))


def test_objective_metric_is_configurable(cfg: Compose) -> None:
    rec = Recorder()
    value = run(
        cfg("epochs=2", "objective.metric=dev_loss", "objective.direction=minimize"),
        Job(listeners=[rec]),
    ).objective
    assert value == rec.history[-1]["dev_loss"]


def test_divergence_stops_fails_the_run_and_returns_nan(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    rec = Recorder()
    value = run(
        cfg("optimizer=gd", "lr=1e6", "init=random_large", "epochs=10", tracking=True),
        Job(listeners=[rec]),
    ).objective
    assert math.isnan(value)
    assert len(rec.history) < 10  # it stopped at once
    (r,) = runs_of(mlflow_uri, request.node.name)
    assert r.info.status == "FAILED"
    assert "diverged" in r.data.tags["hyperlab.failure_reason"]
    assert "lower the learning rate" in r.data.tags["hyperlab.failure_reason"]


def test_a_listener_exception_ends_the_run_failed_and_propagates(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    class Boom:
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(cfg("epochs=3", tracking=True), Job(listeners=[Boom()]))
    (r,) = runs_of(mlflow_uri, request.node.name)
    assert r.info.status == "FAILED"
    assert r.data.tags["hyperlab.failure_reason"] == "RuntimeError: boom"


def test_a_pruned_trial_is_killed_not_failed(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    import optuna

    class Prune:
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        run(cfg("epochs=3", tracking=True), Job(listeners=[Prune()]))
    (r,) = runs_of(mlflow_uri, request.node.name)
    assert r.info.status == "KILLED"


def test_bad_config_records_nothing(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    from hyperlab.errors import ConfigError

    with pytest.raises(ConfigError):
        run(cfg("lr=-1", tracking=True))
    tracking.drain()
    assert MlflowClient(mlflow_uri).get_experiment_by_name(request.node.name) is None


def test_l2_cost_is_in_the_logged_train_loss(cfg: Compose) -> None:
    import torch

    from hyperlab.build import build
    from hyperlab.models import l2_penalty
    from hyperlab.validate import validate

    plain, reg = Recorder(), Recorder()
    base = ("epochs=1", "optimizer=gd", "lr=1e-12", "batch_size=2000")
    run(cfg(*base), Job(listeners=[plain]))
    run(cfg(*base, "regularization.l2=100"), Job(listeners=[reg]))
    torch.manual_seed(0)  # as run() does before building
    parts = build(validate(cfg(*base)))
    m = len(parts.data.y_train)
    expected = l2_penalty(parts.model.weights, 100.0, m).item()  # lambda/(2m) sum ||W||^2
    # One full-batch step with lr ~ 0: the costs differ by exactly the penalty.
    diff = reg.history[0]["train_loss"] - plain.history[0]["train_loss"]
    assert diff == pytest.approx(expected, rel=1e-4)
    assert reg.history[0]["dev_loss"] == pytest.approx(plain.history[0]["dev_loss"])


def test_an_augmented_run_trains_and_records_its_augment(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    overrides = ["dataset=moons", "augment=noise", "augment.std=0.3", "epochs=3"]
    job = Job(choices={"dataset": "moons", "augment": "noise"}, overrides=overrides)
    result = run(cfg(*overrides, tracking=True), job)
    (r,) = runs_of(mlflow_uri, request.node.name)
    assert r.info.status == "FINISHED" and 0.5 < result.objective <= 1
    p = r.data.params
    # As every group: the chosen option, its label, and its settings (not its _target_).
    assert (p["augment"], p["augment.kind"], p["augment.std"]) == ("noise", "noise", "0.3")
    c = MlflowClient(mlflow_uri)
    config = yaml.safe_load(Path(c.download_artifacts(r.info.run_id, "config.yaml")).read_text())
    assert config["augment"] == {
        "_target_": "hyperlab.augment.noise",
        "kind": "noise",
        "std": 0.3,
    }
    # The same run without augmentation trains differently; with the same seed, the same.
    again = run(cfg(*overrides)).objective
    plain = Recorder()
    run(cfg("dataset=moons", "epochs=3"), Job(listeners=[plain]))
    noisy = Recorder()
    run(cfg(*overrides), Job(listeners=[noisy]))
    assert again == result.objective and noisy.history != plain.history


def test_an_augment_the_data_cannot_take_records_nothing(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    from hyperlab.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        run(cfg("dataset=moons", "augment=shift", tracking=True))
    assert "2 features, not a square image" in str(e.value)
    assert "augment=shift needs image data such as dataset=digits" in e.value.fix
    with pytest.raises(ConfigError, match=r"augment\.std must be a number >= 0") as e:
        run(cfg("augment=noise", "augment.std=-0.1", tracking=True))
    assert "augment.std=" in e.value.fix
    with pytest.raises(ConfigError, match=r"augment.max_degrees must be .*\[0, 180\]"):
        run(cfg("augment=shift", "augment.max_degrees=270", tracking=True))
    tracking.drain()
    assert MlflowClient(mlflow_uri).get_experiment_by_name(request.node.name) is None


def test_a_run_records_its_fit_seconds_and_parameter_count(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    # [2, 5, 5, 2]: (2*5 + 5) + (5*5 + 5) + (5*2 + 2) = 57 weights and biases
    overrides = ["dataset=moons", "model.hidden_units=5", "epochs=2"]
    result = run(cfg(*overrides, tracking=True), Job(overrides=overrides))
    (r,) = runs_of(mlflow_uri, request.node.name)
    assert r.data.metrics["n_params"] == 57.0 == result.measures["n_params"]
    assert r.data.metrics["train_seconds"] == pytest.approx(result.timings["fit"])
    assert result.measures["train_seconds"] == result.timings["fit"] > 0
    # What a study may optimize: the final epoch's metrics beside the run's two.
    assert set(result.measures) == {
        "dev_acc",
        "dev_loss",
        "train_acc",
        "train_loss",
        "train_seconds",
        "n_params",
    }
    assert result.measures["dev_acc"] == result.objective == r.data.metrics["dev_acc"]
