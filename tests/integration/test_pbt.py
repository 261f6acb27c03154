"""Population-based training through the worker: a tiny PBT study of two populations of
four, each trial's lineage, schedule and final replay line in the study and in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from hyperlab.run import run
from hyperlab.search import caviar, worker
from hyperlab.search.trial import replay_args
from hyperlab.tracking import drain
from integration.test_worker import make_worker
from support.paths import Compose
from support.records import runs_of


def test_a_pbt_population_trains_through_the_worker(
    cfg: Compose, tmp_path: Path, mlflow_uri: str, request: pytest.FixtureRequest
) -> None:
    """Epochs 6, interval 2, four members, quantile 0.25: one member copies another after
    epochs 2 and 4 (not after the last), in each population; a copied trial's lr is the
    donor's times 0.8 or 1.2 from the next epoch on, as its MLflow lr metric shows."""
    tracked = [
        "tracking.enabled=true",
        f"tracking.uri='{mlflow_uri}'",
        f"tracking.experiment='{request.node.name}'",
        f"tracking.artifacts='{tmp_path / 'artifacts'}'",
    ]
    w = make_worker(
        cfg,
        tmp_path,
        8,
        "dataset=moons",
        "epochs=6",
        "sweep.schedule=pbt",
        "sweep.population=4",
        "pbt.interval=2",
        "tracking.curve=false",
        *tracked,
    )
    assert worker.run(w, caviar.train_stacked, batch=4) == {"COMPLETE": 8}
    trials = w.study.get_trials()
    events = [e for t in trials for e in t.user_attrs["pbt_schedule"]["lineage"]]
    assert len(events) == 4  # 2 exploits x 2 populations
    assert sorted(int(e.split(":")[0].split()[1]) for e in events) == [2, 2, 4, 4]
    runs = {r.data.tags["hyperlab.trial"]: r for r in runs_of(mlflow_uri, request.node.name)}
    client = MlflowClient(mlflow_uri)
    by_number = {t.number: t for t in trials}
    for t in trials:
        schedule = t.user_attrs["pbt_schedule"]
        run = runs[str(t.number)]
        assert run.info.status == "FINISHED"
        assert run.data.tags["hyperlab.pbt.lineage"] == t.user_attrs["pbt_lineage"]
        assert run.data.tags["hyperlab.replay"] == t.user_attrs["replay"]
        last = schedule["stages"][-1]
        assert last["values"] == schedule["final"] and last["trained_by"] == t.number
        assert schedule["initial"] == {"lr": t.params["lr"]}  # the sampler's draw
        assert run.data.metrics["dev_acc"] == pytest.approx(t.value)
        path = client.download_artifacts(run.info.run_id, "pbt_schedule.json", str(tmp_path))
        assert json.loads(Path(path).read_text()) == schedule
        lrs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "lr")}
        assert sorted(lrs) == [1, 2, 3, 4, 5, 6]
        for seg in schedule["segments"]:
            for epoch in range(seg["from_epoch"], seg["to_epoch"] + 1):
                assert lrs[epoch] == pytest.approx(seg["values"]["lr"], rel=1e-12)
            if "copied_trial" in seg:  # exploit then explore: the donor's value, perturbed
                donor = by_number[seg["copied_trial"]].user_attrs["pbt_schedule"]
                at = seg["copied_at_epoch"]
                had = next(
                    s["values"]["lr"]
                    for s in donor["segments"]
                    if s["from_epoch"] <= at <= s["to_epoch"]
                )
                factors = [had * 0.8, had * 1.2, 1e-4, 1.0]  # or clipped to the range
                assert any(seg["values"]["lr"] == pytest.approx(f, rel=1e-12) for f in factors)


@pytest.mark.parametrize("regularization", ["none", "dropout"])
def test_a_replay_line_retrains_the_member_s_weights_through_its_stages(
    cfg: Compose,
    tmp_path: Path,
    mlflow_uri: str,
    request: pytest.FixtureRequest,
    regularization: str,
) -> None:
    """A member's weights were trained by its donors' slots up to each copy, then by its
    own: its replay line (its first values and its stages) trains one model through the
    same values from the same seed (the same shuffles and dropout masks), so every epoch
    of the replay matches the epoch of the slot that trained it (float32 sums in another
    order: within 1e-5), up to the trial's own value. The staged lr and beta are the very
    numbers, as metrics."""
    tracked = [
        "tracking.enabled=true",
        f"tracking.uri='{mlflow_uri}'",
        f"tracking.artifacts='{tmp_path / 'artifacts'}'",
    ]
    w = make_worker(
        cfg,
        tmp_path,
        4,
        "search=lr_beta",
        f"regularization={regularization}",
        "dataset=moons",
        "epochs=8",
        "sweep.schedule=pbt",
        "sweep.population=4",
        "pbt.interval=2",
        "tracking.curve=false",
        *tracked,
        f"tracking.experiment='{request.node.name}'",
    )
    assert worker.run(w, caviar.train_stacked, batch=4) == {"COMPLETE": 4}
    client = MlflowClient(mlflow_uri)
    slots = {r.data.tags["hyperlab.trial"]: r for r in runs_of(mlflow_uri, request.node.name)}

    def history(run_id: str, key: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(run_id, key)}

    copied = 0
    for t in w.study.get_trials():
        stages = t.user_attrs["pbt_schedule"]["stages"]
        copied += len(stages) > 1
        line = t.user_attrs["replay"]
        assert ("'stages=[{epoch:" in line) == (len(stages) > 1)
        replay = cfg(*replay_args(line), *tracked, f"tracking.experiment='replay {t.number}'")
        result = run(replay)
        drain()  # the writer has recorded the run
        assert result.objective == pytest.approx(t.value, abs=1e-6)
        for first, nxt in zip(stages, [*stages[1:], {"epoch": 9}], strict=False):
            slot = slots[str(first["trained_by"])].info.run_id
            # A replay without stages is a plain run: its beta is a param, not a metric.
            staged = ["optimizer.beta"] if len(stages) > 1 else []
            for key in ("lr", *staged, "dev_loss", "train_loss"):
                want, got = history(slot, key), history(result.run_id or "", key)
                for epoch in range(first["epoch"], nxt["epoch"]):
                    if key in ("lr", "optimizer.beta"):
                        assert got[epoch] == want[epoch] == first["values"][key]
                    else:
                        assert got[epoch] == pytest.approx(want[epoch], rel=1e-5), (key, epoch)
    assert copied  # one member copies another after epochs 2, 4 and 6
