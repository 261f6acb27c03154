"""The worker's cycle on its own (Hydra's compose API standing in for the sweeper): batches
of trials through one train function, outcomes told per trial, a stop mid-batch, and a batch
trained as one stacked population (caviar)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

import hyperlab.run_population
from hyperlab import stops
from hyperlab.search import caviar, setup, worker
from hyperlab.search.report import REPLAY_ATTR
from hyperlab.search.study import STOPPED_WORKER, Retry
from hyperlab.search.sweeper import hydra_choices, hydra_compose
from hyperlab.validate import validate
from support.paths import Compose
from support.records import runs_of


def make_worker(cfg: Compose, tmp_path: Path, n_trials: int, *extra: str) -> worker.Worker:
    base = [
        "search=lr",
        f"sweep.n_trials={n_trials}",
        f"sweep.storage={tmp_path / 'journal.log'}",
        "tracking.enabled=false",
        "progress=false",
        *extra,
    ]
    config = validate(cfg(*base))
    s = setup.setup_of(config, base)
    retry = Retry(s.url, 5.0)
    _, choices = hydra_compose("config", base)
    return worker.Worker(
        cfg=config,
        setup=s,
        study=setup.load_study(config, s, 0, retry),
        retry=retry,
        base=base,
        compose=setup.TrialComposer(
            lambda o: hydra_compose("config", o), base, {g for g in choices if "/" not in g}
        ),
        root_choices=hydra_choices("config", []),
        fixed=choices,
        output_dir=tmp_path,
        parent=None,
    )


def test_a_batch_of_trials_goes_through_one_train_call(cfg: Compose, tmp_path: Path) -> None:
    w = make_worker(cfg, tmp_path, n_trials=7)
    batches: list[list[int]] = []

    def train(w: worker.Worker, batch: Sequence[worker.Claimed]) -> list[worker.Outcome]:
        batches.append([c.trial.number for c in batch])
        assert all(worker.compose_trial(w, c).lr == c.values["lr"] for c in batch)
        return [worker.Outcome(TrialState.COMPLETE, float(c.values["lr"])) for c in batch]

    done = worker.run(w, train, batch=3)
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]  # the last batch: what the budget has left
    assert done == {"COMPLETE": 7}
    trials = w.study.get_trials()
    assert [t.value for t in trials] == [t.params["lr"] for t in trials]
    for t in trials:  # each replays alone: the command's overrides, then the trial's values
        line = t.user_attrs[REPLAY_ATTR].split()
        assert line[0] == "hyperlab" and "progress=false" in line and line[-1].startswith("lr=")


def test_a_batch_of_one_trains_each_trial_as_a_sweep_does(cfg: Compose, tmp_path: Path) -> None:
    w = make_worker(cfg, tmp_path, n_trials=2)
    assert worker.run(w) == {"COMPLETE": 2}
    trials = w.study.get_trials()
    assert all(0 <= (t.value or -1) <= 1 for t in trials)  # dev accuracy
    assert all("fit" in t.user_attrs["seconds"] for t in trials)


def test_a_stop_mid_batch_fails_the_trials_in_hand_and_stops(
    cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_worker(cfg, tmp_path, n_trials=6)
    trained: list[int] = []

    def train_trial(w: worker.Worker, c: worker.Claimed) -> worker.Outcome:
        if len(trained) == 1:
            raise KeyboardInterrupt
        trained.append(c.trial.number)
        return worker.Outcome(TrialState.COMPLETE, 0.5)

    monkeypatch.setattr(worker, "train_trial", train_trial)
    with pytest.raises(KeyboardInterrupt):
        worker.run(w, batch=3)
    states = [(t.state, t.user_attrs.get("fail_reason", "")) for t in w.study.get_trials()]
    assert states[0] == (TrialState.COMPLETE, "")
    assert [s for s, _ in states[1:]] == [TrialState.FAIL, TrialState.FAIL]
    assert all(r.startswith(STOPPED_WORKER) for _, r in states[1:])
    assert stops.take() is None  # nothing left pending for the next test


def test_a_stop_a_library_swallowed_still_ends_the_worker(
    cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM turned into another error on its way out (Optuna's lock release did that):
    the trial fails with that error, and the worker stops instead of claiming the next."""
    w = make_worker(cfg, tmp_path, n_trials=4)

    def train_trial(w: worker.Worker, c: worker.Claimed) -> worker.Outcome:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        except BaseException:
            return worker.Outcome(TrialState.FAIL, reason="FileNotFoundError")
        raise AssertionError("no stop came")

    monkeypatch.setattr(worker, "train_trial", train_trial)
    with stops.installed(), pytest.raises(stops.Stopped):
        worker.run(w)
    trials = w.study.get_trials()
    assert [(t.state, t.user_attrs["fail_reason"]) for t in trials] == [
        (TrialState.FAIL, "FileNotFoundError")
    ]
    assert stops.received() is None  # the block's end leaves no stop to the next job


def test_a_population_trains_its_trials_as_each_would_train_alone(
    cfg: Compose,
    tmp_path: Path,
    mlflow_uri: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sweep.population=3: the same six trials (one sampler seed), trained one by one and
    as two stacks of three, end with the same values; the worker says how it grouped them;
    each stacked trial has its own FINISHED MLflow run with its params, per-epoch metrics
    and the stack it trained in."""
    same = ["dataset=moons", "epochs=3", "objective.metric=dev_loss", "tracking.curve=false"]
    (tmp_path / "alone").mkdir()
    (tmp_path / "stacked").mkdir()
    alone = make_worker(cfg, tmp_path / "alone", 6, *same)
    assert worker.run(alone) == {"COMPLETE": 6}
    tracked = [
        "tracking.enabled=true",
        f"tracking.uri='{mlflow_uri}'",
        f"tracking.experiment='{request.node.name}'",
        f"tracking.artifacts='{tmp_path / 'artifacts'}'",
    ]
    stacked = make_worker(cfg, tmp_path / "stacked", 6, *same, *tracked)
    sizes: list[int] = []
    real = hyperlab.run_population.run_population

    def spy(cfgs: Sequence[object], jobs: Sequence[object], *rest: object) -> list[object]:
        sizes.append(len(cfgs))
        return real(cfgs, jobs, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(hyperlab.run_population, "run_population", spy)
    assert worker.run(stacked, caviar.train_stacked, batch=3) == {"COMPLETE": 6}
    assert sizes == [3, 3]  # two stacks of three: no trial trained alone
    said = capsys.readouterr().err
    assert "worker 0: trials 0-2 train as one stacked model of 3" in said
    assert "worker 0: trials 3-5 train as one stacked model of 3" in said
    one, many = alone.study.get_trials(), stacked.study.get_trials()
    assert [t.params for t in many] == [t.params for t in one]
    assert [t.value for t in many] == pytest.approx([t.value for t in one], rel=1e-4)
    runs = {r.data.tags["hyperlab.trial"]: r for r in runs_of(mlflow_uri, request.node.name)}
    assert sorted(runs) == [str(t.number) for t in many]
    for t in many:
        r = runs[str(t.number)]
        assert r.info.status == "FINISHED"
        first = 0 if t.number < 3 else 3
        assert r.data.tags["hyperlab.population"] == (
            f"worker 0, trials {first}-{first + 2} (3 members)"
        )
        assert float(r.data.params["lr"]) == pytest.approx(t.params["lr"])
        assert r.data.metrics["dev_loss"] == pytest.approx(t.value)
        assert set(t.user_attrs["seconds"]) == {"build", "fit", "finish"}
        # Created and ended three at a time (tracking.rows): the same record as alone.
        artifacts = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(r.info.run_id)}
        assert artifacts == {"config.yaml", "overrides.yaml"}
        assert r.data.tags["hyperlab.replay"] == t.user_attrs["replay"]
        assert r.info.end_time is not None and r.info.run_name.startswith(f"trial {t.number}: ")


def test_early_stopping_composes_with_pruning_in_a_study(cfg: Compose, tmp_path: Path) -> None:
    """The pruner hears every epoch and may stop a trial first; a trial that early stopping
    ends completes, sooner than `epochs`, with the value of its best epoch's weights."""
    w = make_worker(
        cfg,
        tmp_path,
        10,
        "dataset=moons",
        "dataset.n_samples=200",
        "epochs=100",
        "pruner=median",
        "pruner.n_startup_trials=3",
        "early_stopping.patience=4",
        "early_stopping.metric=dev_acc",
    )
    counts = worker.run(w)
    assert set(counts) <= {"COMPLETE", "PRUNED"} and counts.get("COMPLETE", 0) >= 3
    stopped = 0
    for t in w.study.get_trials(states=[TrialState.COMPLETE]):
        steps = t.intermediate_values
        best = max(steps, key=lambda e: (steps[e], -e))  # the first epoch of the best value
        assert t.value == steps[best]  # its best epoch's weights were evaluated
        assert max(steps) == 100 or max(steps) == best + 4
        stopped += max(steps) < 100
    assert stopped  # at least one trial stopped early


def test_a_multi_objective_trial_tells_each_metric_and_keeps_its_run(
    cfg: Compose, tmp_path: Path, mlflow_uri: str
) -> None:
    # The trials' configs are composed from these overrides alone: their store named here.
    store = [
        "tracking.enabled=true",
        f"tracking.uri='{mlflow_uri}'",
        "tracking.experiment=multi",
        f"tracking.artifacts='{tmp_path / 'artifacts'}'",
    ]
    w = make_worker(cfg, tmp_path, 3, "search=lr_size", "dataset=moons", "epochs=2", *store)
    assert [d.name for d in w.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert worker.run(w) == {"COMPLETE": 3}
    from hyperlab.tracking import drain

    drain()
    runs = {r.info.run_id: r for r in runs_of(w.cfg.tracking.uri, w.cfg.tracking.experiment)}
    for t in w.study.get_trials():
        run = runs[t.user_attrs["mlflow_run_id"]]
        h = t.params["model.hidden_units"]
        assert t.values == [run.data.metrics["dev_acc"], (2 * h + h) + (h * h + h) + (h * 2 + 2)]
        assert t.values[1] == run.data.metrics["n_params"]
