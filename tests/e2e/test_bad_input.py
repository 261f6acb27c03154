"""Bad input through the real command, in a directory that already holds a finished MLflow
run and a study: the exit code, the message, no traceback, and the runs and the trials
exactly as they were. integration/test_bad_input.py runs the full table in-process."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from support.command import hyperlab
from support.refusals import SECRET, check_refused, snapshot, write_files

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where a tiny run and a tiny study have been recorded."""
    cwd = tmp_path_factory.mktemp("workspace")
    write_files(cwd / "data")
    for args in (
        ["dataset=moons", "epochs=1", "progress=false"],
        ["search=lr", "sweep.n_trials=2", "epochs=1", "dataset=moons"],
    ):
        r = hyperlab(cwd, *args)
        assert r.returncode == 0, r.stderr
    return cwd


@pytest.mark.slow
def test_the_workspace_holds_a_run_and_a_study(workspace: Path) -> None:
    snap = snapshot(workspace)
    statuses = sorted(r[1] for r in snap.runs)
    assert statuses == ["FINISHED"] * 4  # the run, the study's parent and its 2 trials
    ((name, trials),) = snap.trials.items()
    assert name == "lr dataset:moons epochs:1" and [t[:2] for t in trials] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
    ]


CLI = [
    # (id, arguments, exit code, a distinctive part of the message)
    ("config range", ["lr=-1"], 2, "lr=-1.0 is not allowed"),
    ("config nan", ["regularization.keep_prob=nan"], 2, "must be a number in (0, 1]"),
    ("hydra unknown option", ["optimizer=adamm"], 1, "Available options in 'optimizer'"),
    ("hydra unknown key", ["epoch=3"], 1, "Could not override 'epoch'"),
    ("hydra override syntax", ["lr=[1,2"], 1, "no viable alternative"),
    ("model too big", ["model.hidden_units=10000000"], 2, "more than this machine's"),
    ("tracking scheme", ["tracking.uri=bogus://x"], 2, "MLflow has no store for bogus://"),
    ("label alone", ["normalization.kind=batchnorm"], 2, "e.g. normalization=batchnorm"),
    ("stage not taken", ["stages=[{epoch:3,beta:0.9}]"], 2, "stages[0].beta: beta is not"),
    ("stage epoch", ["stages=[{epoch:30,lr:0.1}]"], 2, "at most epochs=20"),
    (
        "space range",
        ["search=lr", "search.params.lr.low=-1", "search.params.lr.scale=linear"],
        2,
        "can produce lr=-1.0",
    ),
    (
        "space key",
        ["search=lr", "+search.params.lrr={low:0.1,high:1.0}"],
        2,
        "lrr is not a setting",
    ),
    ("space empty", ["search=lr", "~search.params.lr"], 2, "search.params is empty"),
    (
        "storage: mlflow's db as journal",
        ["search=lr", "sweep.storage=outputs/mlflow.db"],
        2,
        "is not an Optuna journal file: it is a SQLite database",
    ),
    (
        "storage: mlflow's db as sqlite",
        ["search=lr", "sweep.storage=sqlite:///outputs/mlflow.db"],
        2,
        "is MLflow's tracking database",
    ),
    (
        "storage: unreachable postgres",
        ["search=lr", f"sweep.storage=postgresql://u:{SECRET}@127.0.0.1:1/db"],
        2,
        "cannot be reached",
    ),
    ("storage: a directory", ["search=lr", "sweep.storage=data"], 2, "is a directory"),
    ("data: missing file", ["dataset=csv", "dataset.path=data/nope.csv"], 2, "does not exist"),
    (
        "data: NaN",
        ["dataset=csv", "dataset.path=data/nan.csv", "dataset.label=label"],
        2,
        "NaN or infinite",
    ),
    ("data: labels short", ["dataset=npz", "dataset.path=data/short_labels.npz"], 2, "(39,)"),
    ("data: not a zip", ["dataset=npz", "dataset.path=data/garbage.npz"], 2, "not an NPZ"),
    ("data: huge", ["dataset=npz", "dataset.path=data/huge.npz"], 2, "too large to standardize"),
    ("resume: garbage", ["resume=data/garbage.pt"], 2, "cannot be read as a checkpoint"),
    ("resume: nowhere", ["resume=data/nowhere"], 2, "no such file or directory"),
    ("retest: no study", ["task=retest"], 2, "task=retest needs the study"),
    ("retest: unknown study", ["task=retest", "study=nope"], 2, "no study named 'nope'"),
    ("unset env var", ["lr=${oc.env:HYPERLAB_TEST_UNSET_VARIABLE}"], 2, "HYPERLAB_TEST_UNSET"),
    (
        "bad data with repeats",
        ["dataset=csv", "dataset.path=data/nan.csv", "dataset.label=label", "repeats=2"],
        2,
        "NaN or infinite",
    ),
    ("multirun of bad values", ["-m", "lr=-1,-2"], 2, "lr must be a number > 0"),
    (
        "study of bad data",
        ["search=lr", "dataset=csv", "dataset.path=data/nan.csv", "dataset.label=label"],
        2,
        "NaN or infinite",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "message"), [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_the_command_refuses_bad_input_and_records_nothing(
    workspace: Path, args: list[str], code: int, message: str
) -> None:
    before = snapshot(workspace)
    start = time.monotonic()
    r = hyperlab(workspace, *args, "progress=false")
    assert time.monotonic() - start < 60  # refused, not trained (or hung)
    check_refused(r, code, message)
    assert snapshot(workspace) == before
