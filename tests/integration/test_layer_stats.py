"""diagnostics=layers through run(): per-layer metrics per epoch in MLflow, the plot as an
artifact, a diverged run's layers kept, and stacks left to single models."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from hyperlab.run import Job, run
from hyperlab.search.caviar import stackable
from hyperlab.tracking import drain
from hyperlab.validate import validate
from support.paths import Compose
from support.records import runs_of


def test_a_run_logs_each_layer_each_epoch_and_the_plot(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    deep = ["model.layers=4", "model.hidden_units=16", "epochs=3", "diagnostics=layers"]
    run(cfg(*deep, "init=xavier", tracking=True), Job(output_dir=tmp_path / "xavier"))
    run(cfg(*deep, "init=random_large", "init.scale=100", "optimizer=gd", "lr=1", tracking=True))
    drain()
    runs = {r.data.params["init.scheme"]: r for r in runs_of(mlflow_uri, request.node.name)}
    xavier, large = runs["xavier"], runs["random_large"]
    c = MlflowClient(mlflow_uri)
    for layer in range(1, 6):  # four hidden layers and the output layer
        steps = [
            m.step for m in c.get_metric_history(xavier.info.run_id, f"act_rms/layer_{layer:02d}")
        ]
        assert steps == [0, 1, 2, 3]  # the initialization, then every epoch
        updates = c.get_metric_history(xavier.info.run_id, f"update_ratio/layer_{layer:02d}")
        assert [m.step for m in updates] == [1, 2, 3] and all(m.value > 0 for m in updates)
    assert {a.path for a in c.list_artifacts(xavier.info.run_id)} >= {"layers.png"}
    assert (tmp_path / "xavier" / "layers.png").exists()
    # Exploded at once: the run diverged, and its layers at the start show where.
    assert large.data.tags["hyperlab.outcome"] == "diverged"
    assert {a.path for a in c.list_artifacts(large.info.run_id)} >= {"layers.png"}
    sizes = [
        c.get_metric_history(large.info.run_id, f"act_rms/layer_{i:02d}")[0].value
        for i in range(1, 6)
    ]
    assert all(b > 10 * a or not math.isfinite(b) for a, b in itertools.pairwise(sizes))


def test_layer_diagnostics_train_a_trial_alone_not_in_a_stack(cfg: Compose) -> None:
    assert stackable(validate(cfg("epochs=2")))
    assert not stackable(validate(cfg("epochs=2", "diagnostics=layers")))
