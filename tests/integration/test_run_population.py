"""run_population: a stack's members each end as their run alone would, in MLflow too: one
finished, one pruned by its listener (KILLED), one diverged (FAILED, NaN)."""

from __future__ import annotations

import math

import optuna
import pytest

from hyperlab.run import Job, RunResult
from hyperlab.run_population import run_population
from hyperlab.tracking import drain
from support.paths import Compose
from support.records import runs_of


class PruneAtEpoch:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")


def test_members_finish_are_pruned_or_diverge_each_in_its_own_run(
    cfg: Compose, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    base = ["dataset=moons", "optimizer=gd", "epochs=4", "tracking.curve=false"]
    configs = [
        cfg(*base, "lr=0.1", "seed=0", tracking=True),
        cfg(*base, "lr=0.1", "seed=1", tracking=True),
        cfg(*base, "lr=1e6", "init=random_large", "seed=2", tracking=True),
    ]
    jobs = [
        Job(run_name="finishes", tags={"which": "finishes"}),
        Job(run_name="pruned", tags={"which": "pruned"}, listeners=[PruneAtEpoch(1)]),
        Job(run_name="diverges", tags={"which": "diverges"}),
    ]
    finished, pruned, diverged = run_population(configs, jobs)
    drain()  # the runs are written by the writer process: wait for it
    assert isinstance(finished, RunResult) and 0 <= finished.objective <= 1
    assert isinstance(pruned, optuna.TrialPruned)
    assert isinstance(diverged, RunResult) and math.isnan(diverged.objective)
    runs = {r.data.tags["which"]: r for r in runs_of(mlflow_uri, request.node.name)}
    assert runs["finishes"].info.status == "FINISHED"
    assert runs["finishes"].info.run_id == finished.run_id
    assert runs["finishes"].data.metrics["dev_acc"] == pytest.approx(finished.objective)
    assert runs["pruned"].info.status == "KILLED"
    assert runs["pruned"].data.tags["hyperlab.outcome"] == "pruned"
    assert runs["diverges"].info.status == "FAILED"
    assert runs["diverges"].data.tags["hyperlab.outcome"] == "diverged"
