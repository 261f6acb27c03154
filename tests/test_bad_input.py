"""Bad input, table-driven: every case fails with a message naming the problem and a fix,
before anything is trained or recorded.

Most cases run in-process through the path the `hyperlab` command takes (compose and
validate, the data loaders, the space parser, the study storage, checkpoints); a
representative subset runs the real command in a directory that already holds a finished
MLflow run and a study, and checks the exit code, the message, the absence of a traceback,
and that the runs and the trials are exactly as they were."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from mlflow.entities import ViewType
from omegaconf import DictConfig, OmegaConf

from conftest import Compose
from hyperlab.checkpoint import load, locate
from hyperlab.cli import CONFIG_DIR
from hyperlab.errors import HyperlabError
from hyperlab.run import Job, run
from hyperlab.run import prepare as prepare_run
from hyperlab.search import space, study
from hyperlab.search.retest import retest
from hyperlab.search.setup import setup_of
from hyperlab.validate import validate

SECRET = "s3cret-for-tests"
HYPERLAB = str(Path(sys.executable).parent / "hyperlab")
optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- bad files, written once per module --------------------------------------------------------


def _rows(n: int, value: Callable[[int], str] = str, label: Callable[[int], str] = str) -> str:
    return "".join(f"{i},{value(i)},{label(i % 2)}\n" for i in range(n))


def write_files(d: Path) -> None:
    """Every bad data file, next to good ones for contrast."""
    d.mkdir(parents=True, exist_ok=True)
    head = "a,b,label\n"
    (d / "good.csv").write_text(head + _rows(40))
    (d / "empty.csv").write_text("")
    (d / "header_only.csv").write_text(head)
    (d / "non_numeric.csv").write_text(head + "1,x,0\n2,3,1\n" + _rows(40))
    (d / "nan.csv").write_text(head + _rows(40, lambda i: "nan" if i == 3 else str(i)))
    (d / "inf.csv").write_text(head + _rows(40, lambda i: "1e400" if i == 3 else str(i)))
    (d / "huge.csv").write_text(head + _rows(40, lambda i: f"{(-1) ** i}e300"))
    (d / "one_class.csv").write_text(head + _rows(40, label=lambda c: "1"))
    (d / "ragged.csv").write_text(head + "1,2,0\n1,2\n")
    (d / "continuous.csv").write_text(head + "".join(f"{i},{i},{i / 7:.4f}\n" for i in range(40)))
    (d / "no_label.csv").write_text(head + _rows(10) + "3,4,\n")
    (d / "semicolons.csv").write_text("a;b;label\n" + _rows(40).replace(",", ";"))
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (d / "a_directory.csv").mkdir(exist_ok=True)
    y = np.arange(40) % 2
    x = np.random.default_rng(0).normal(size=(40, 2))
    np.savez(d / "good.npz", X=x, y=y)
    np.savez(d / "no_y.npz", X=x)
    np.savez(d / "3d.npz", X=np.ones((40, 2, 2)), y=y)
    np.savez(d / "short_labels.npz", X=x, y=y[:39])
    np.savez(d / "one_hot.npz", X=x, y=np.eye(2)[y])
    np.savez(d / "nan.npz", X=np.where(np.arange(80).reshape(40, 2) == 5, np.nan, x), y=y)
    np.savez(d / "inf.npz", X=np.where(np.arange(80).reshape(40, 2) == 5, -np.inf, x), y=y)
    np.savez(d / "huge.npz", X=x * 1e200, y=y)
    np.savez(d / "strings.npz", X=np.array([["a", "b"]] * 40), y=y)
    np.savez(d / "complex.npz", X=x * 1j, y=y)
    np.savez(d / "objects.npz", X=np.array([[1, 2]] * 40, dtype=object), y=y)
    np.savez(d / "empty.npz", X=np.ones((0, 2)), y=np.ones(0))
    np.savez(d / "nan_labels.npz", X=x, y=np.where(np.arange(40) == 3, np.nan, y))
    np.savez(d / "three_rows.npz", X=x[:3], y=np.array([0, 1, 0]))
    np.save(d / "single.npy", x)
    (d / "garbage.npz").write_bytes(b"not a zip archive")
    (d / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save({"state_dict": {"w": torch.ones(2)}}, d / "foreign.pt")
    (d / "no_checkpoints").mkdir(exist_ok=True)
    # a SQLite file with MLflow's tables, and one with Optuna's
    with sqlite3.connect(d / "mlflow_like.db") as db:
        db.executescript("create table experiments(x); create table runs(x);")
    with sqlite3.connect(d / "optuna_like.db") as db:
        db.executescript("create table studies(x); create table trials(x);")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad_input_files")
    write_files(d)
    return d


@pytest.fixture(scope="module")
def checkpoint(files: Path) -> Path:
    """A real checkpoint after 1 epoch of a small moons MLP (Adam)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        config = compose(
            "config",
            overrides=[
                "progress=false",
                "tracking.enabled=false",
                "dataset=moons",
                "dataset.n_samples=100",
                "epochs=1",
                "checkpoint.every=1",
            ],
        )
    run(config, Job(output_dir=files / "run"))
    return files / "run" / "checkpoints" / "epoch_0001.pt"


# --- the in-process table -----------------------------------------------------------------------


@dataclass
class Env:
    cfg: Compose
    files: Path
    checkpoint: Path
    mlflow_uri: str

    def compose(self, *overrides: str) -> DictConfig:
        return self.cfg(*(self.at(o) for o in overrides))

    def at(self, text: str) -> str:
        return text.replace("{files}", str(self.files))


Step = Callable[[Env], object]


@dataclass(frozen=True)
class Case:
    id: str
    step: Step
    message: str  # a distinctive part of the problem
    hydra: bool = False  # Hydra's own error (the command exits 1 with its message)


def config(*overrides: str) -> Step:
    """compose + validate: what `hyperlab ...` does before anything else."""
    return lambda env: validate(env.compose(*overrides))


def tracked(*overrides: str) -> Step:
    return config("tracking.enabled=true", *overrides)


def prepare(*overrides: str) -> Step:
    """validate, load and check the data, build the model: what a run does before it
    starts recording."""
    return lambda env: prepare_run(env.compose(*overrides))


def composing(*overrides: str) -> Step:
    return lambda env: env.compose(*overrides)


def edited(overrides: list[str], key: str, value: Any) -> Step:
    """A config edited where no override can reach (a space's dotted keys), validated."""

    def step(env: Env) -> object:
        c = env.compose(*overrides)
        OmegaConf.update(c, key, value, merge=False)
        return validate(c)

    return step


def parsed(spec: Any) -> Step:
    return lambda env: space.parse(spec)


def sweep(*overrides: str) -> Step:
    """What the sweeper does first: validate the base config, derive the study's setup."""

    def step(env: Env) -> object:
        c = env.compose(*overrides)
        validate(c)
        return setup_of(c, list(overrides))

    return step


def storage(url: str) -> Step:
    return lambda env: study.storage(env.at(url))


def resumed(ref: str) -> Step:
    return lambda env: load(locate(env.at(ref), env.mlflow_uri))


def resumed_with(*overrides: str) -> Step:
    """A checkpoint resumed under a changed config (cli._resumed's overrides on top)."""
    return lambda env: run(env.compose(*overrides), Job(resume=load(env.checkpoint)))


def retested(*overrides: str) -> Step:
    def step(env: Env) -> object:
        c = env.compose("task=retest", *overrides)
        validate(c)
        return retest(c, [], lambda o: (env.compose(*o), {}))

    return step


def csv(name: str, *more: str) -> Step:
    return prepare("dataset=csv", f"dataset.path='{{files}}/{name}'", "dataset.label=label", *more)


def npz(name: str, *more: str) -> Step:
    return prepare("dataset=npz", f"dataset.path='{{files}}/{name}'", *more)


def missing_driver() -> str:
    """A database URL whose driver is not installed here."""
    for url, module in (
        ("mysql://u:{secret}@127.0.0.1/db", "MySQLdb"),
        ("postgresql+pg8000://u:{secret}@127.0.0.1/db", "pg8000"),
        ("mssql+pyodbc://u:{secret}@127.0.0.1/db", "pyodbc"),
    ):
        if importlib.util.find_spec(module) is None:
            return url.format(secret=SECRET)
    pytest.skip("every database driver tried is installed")


LR = "search=lr"
CASES = [
    # config values: ranges, types, interpolations, cross-key rules, huge values
    Case("lr=0", config("lr=0"), "lr must be a number > 0"),
    Case("lr=nan", config("lr=nan"), "lr=nan is not allowed"),
    Case("lr=inf", config("lr=inf"), "lr=inf is not allowed"),
    Case("keep_prob=1.5", config("regularization.keep_prob=1.5"), "(0, 1]"),
    Case("beta=1", config("optimizer=momentum", "optimizer.beta=1"), "[0, 1)"),
    Case("split sums to 1.1", config("dataset.split.train=0.8"), "sum to 1.1"),
    Case("epochs=0", config("epochs=0"), "epochs must be an integer >= 1"),
    Case("threads=0", config("threads=0"), "threads must be an integer >= 1"),
    Case("task=foo", config("task=foo"), "train, gradcheck or retest"),
    Case("repeats=0", config("repeats=0"), "repeats must be an integer >= 1"),
    Case("n_trials=0", config(LR, "sweep.n_trials=0"), "sweep.n_trials must be"),
    Case("max_failure_rate=2", config("sweep.max_failure_rate=2"), "[0, 1]"),
    Case("heartbeat_seconds=0", config("sweep.heartbeat_seconds=0"), "an integer >= 1"),
    Case("retry_failed=-1", config("sweep.retry_failed=-1"), "an integer >= 0"),
    Case("retry_seconds<0", config("sweep.retry_seconds=-5"), "a number >= 0"),
    Case("flush_seconds<0", config("tracking.flush_seconds=-1"), "a number >= 0"),
    Case("batchnorm batch 1", config("normalization=batchnorm", "batch_size=1"), "at least 2"),
    Case("init label alone", config("init.scheme=xavier"), "it does not choose it"),
    Case(
        "unset env var",
        config("lr=${oc.env:HYPERLAB_TEST_UNSET_VARIABLE}"),
        "HYPERLAB_TEST_UNSET_VARIABLE",
    ),
    Case("csv without path", config("dataset=csv"), "dataset.path is required"),
    Case(
        "model too big",
        prepare("model.hidden_units=10000000"),
        "more than this machine's",
    ),
    # Hydra's own errors: the command exits 1 with Hydra's message
    Case("unknown option", composing("optimizer=adamm"), "Available options in 'optimizer'", True),
    Case("unknown key", composing("epoch=3"), "Could not override 'epoch'", True),
    Case("wrong type", composing("lr=fast"), "Error merging override lr=fast", True),
    Case("override syntax", composing("lr=[1,2"), "no viable alternative", True),
    Case("unknown space", composing("search=nope"), "Available options in 'search'", True),
    # tracking URIs
    Case("tracking scheme", tracked("tracking.uri=bogus://x"), "MLflow has no store for bogus://"),
    Case(
        "tracking uri is a file",
        tracked("tracking.uri='{files}/good.csv'"),
        "MLflow keeps a local store in a directory",
    ),
    Case(
        "tracking uri is a directory store",
        tracked("tracking.uri='{files}/mlruns'"),
        "a directory store, which this MLflow refuses",
    ),
    Case(
        "tracking uri is a study db",
        tracked("tracking.uri='sqlite:///{files}/optuna_like.db'"),
        "is an Optuna study storage",
    ),
    Case(
        "tracking driver missing",
        lambda env: validate(
            env.compose("tracking.enabled=true", f"tracking.uri='{missing_driver()}'")
        ),
        "which is not installed",
    ),
    # search spaces
    Case("low >= high", config(LR, "search.params.lr.low=2"), "low=2 must be below high=1.0"),
    Case("unknown scale", config(LR, "search.params.lr.scale=cubic"), "scale='cubic'"),
    Case(
        "log with low<=0",
        config(LR, "search.params.lr.low=-1", "search.params.lr.scale=log"),
        "a log scale needs low > 0",
    ),
    Case(
        "range reaches lr<0",
        config(LR, "search.params.lr.low=-1", "search.params.lr.scale=linear"),
        "can produce lr=-1.0",
    ),
    Case(
        "beta range reaches 1",
        edited(["search=lr_beta"], "search.params", {"optimizer.beta": {"low": 0.9, "high": 1}}),
        "can produce optimizer.beta=1.0",
    ),
    Case(
        "choice out of range",
        config("search=adam_full", "search.params.batch_size.choices=[0,32]"),
        "can produce batch_size=0",
    ),
    Case("unknown setting", config(LR, "+search.params.lr.typo=3"), "unknown setting(s) ['typo']"),
    Case("entry not a mapping", config(LR, "search.params.lr=0.1"), "expected a mapping"),
    Case("empty space", config(LR, "~search.params.lr"), "search.params is empty"),
    Case(
        "key not in config",
        config(LR, "+search.params.lrr={low:0.1,high:1.0}"),
        "lrr is not a setting of the config",
    ),
    Case(
        "group option unknown",
        config("search=optimizers", "search.params.optimizer.choices=[adam,adamm]"),
        "'adamm' is not an option of the group optimizer",
    ),
    Case("grid=0", config(LR, "+search.params.lr.grid=0"), "grid=0 must be an integer >= 1"),
    Case(
        "int with fractional bounds",
        config(LR, "+search.params.lr.type=int"),
        "type: int needs whole-number bounds",
    ),
    Case("when not a mapping", config(LR, "+search.params.lr.when=adam"), "when='adam' must map"),
    Case("no space name", sweep(LR, "search.name=''"), "must be a non-empty name"),
    Case("params not a mapping", parsed([1, 2]), "must map override keys"),
    Case("non-finite bound", parsed({"lr": {"low": 0.1, "high": float("inf")}}), "not a finite"),
    Case("choices not a list", parsed({"a": {"choices": "relu"}}), "must be a list"),
    # study storage URLs
    Case("storage scheme", storage("bogus://x"), "unknown database kind 'bogus'"),
    Case("storage postgres://", storage("postgres://u@h/db"), "unknown database kind 'postgres'"),
    Case(
        "storage refused",
        storage(f"postgresql://u:{SECRET}@127.0.0.1:1/db"),
        "127.0.0.1:1 cannot be reached",
    ),
    Case(
        "storage unknown host",
        storage(f"postgresql://u:{SECRET}@no-such-host.invalid/db"),
        "no-such-host.invalid:5432 cannot be reached",
    ),
    Case("storage driver missing", lambda env: study.storage(missing_driver()), "not installed"),
    Case("storage is a directory", storage("{files}/a_directory.csv"), "is a directory"),
    Case("storage is a csv", storage("{files}/good.csv"), "is not an Optuna journal file"),
    Case(
        "storage is a sqlite file",
        storage("{files}/mlflow_like.db"),
        "not an Optuna journal file: it is a SQLite database",
    ),
    Case(
        "storage is mlflow's db",
        storage("sqlite:///{files}/mlflow_like.db"),
        "is MLflow's tracking database",
    ),
    Case("storage sqlite not a db", storage("sqlite:///{files}/good.csv"), "not a SQLite database"),
    Case(
        "storage dir cannot be made",
        storage("{files}/good.csv/journal.log"),
        "its directory cannot be created",
    ),
    # data files: csv
    Case("csv missing", csv("nope.csv"), "does not exist"),
    Case("csv directory", csv("a_directory.csv"), "is a directory, not a CSV file"),
    Case("csv empty", csv("empty.csv"), "has no data rows"),
    Case("csv header only", csv("header_only.csv"), "has no data rows"),
    Case("csv non-numeric", csv("non_numeric.csv"), "line 2, column 'b' is not a number"),
    Case("csv NaN", csv("nan.csv"), "NaN or infinite values (first at example 3"),
    Case("csv inf", csv("inf.csv"), "NaN or infinite values"),
    Case("csv huge", csv("huge.csv"), "too large to standardize"),
    Case("csv one class", csv("one_class.csv"), "1 class; a classifier needs at least 2"),
    Case("csv ragged", csv("ragged.csv"), "line 3 has 2 fields, the header has 3"),
    Case("csv continuous labels", csv("continuous.csv"), "40 classes for 40 examples"),
    Case("csv missing label", csv("no_label.csv"), "line 12 has no label"),
    Case("csv wrong delimiter", csv("semicolons.csv", "dataset.label=-1"), "single column"),
    Case("csv binary", csv("binary.csv"), "not a UTF-8 text CSV file"),
    Case("csv label name", csv("good.csv", "dataset.label=species"), "'species' is not a column"),
    Case("csv label index", csv("good.csv", "dataset.label=7"), "outside the 3 columns"),
    # data files: npz
    Case("npz missing key", npz("no_y.npz"), "has no array named 'y'"),
    Case("npz not a zip", npz("garbage.npz"), "not an NPZ archive (not a zip file)"),
    Case("npz is a .npy", npz("single.npy"), "it is a single .npy array"),
    Case("npz 3-d inputs", npz("3d.npz"), "the inputs have shape (40, 2, 2)"),
    Case("npz labels short", npz("short_labels.npz"), "labels have shape (39,)"),
    Case("npz one-hot labels", npz("one_hot.npz"), "labels have shape (40, 2)"),
    Case("npz NaN", npz("nan.npz"), "NaN or infinite values (first at example 2"),
    Case("npz -inf", npz("inf.npz"), "NaN or infinite values"),
    Case("npz huge", npz("huge.npz"), "too large to standardize"),
    Case("npz strings", npz("strings.npz"), "not real numbers (dtype <U1)"),
    Case("npz complex", npz("complex.npz"), "not real numbers (dtype complex128)"),
    Case("npz objects", npz("objects.npz"), "Object arrays cannot be loaded"),
    Case("npz empty", npz("empty.npz"), "shape (0, 2)"),
    Case("npz NaN labels", npz("nan_labels.npz"), "labels hold NaN"),
    Case("npz too few rows", npz("three_rows.npz"), "leaves a split empty"),
    Case("npz wrong key", npz("good.npz", "dataset.x_key=features"), "no array named 'features'"),
    # checkpoints and resume refs
    Case("resume nowhere", resumed("{files}/nowhere"), "no such file or directory"),
    Case("resume empty dir", resumed("{files}/no_checkpoints"), "holds no checkpoint"),
    Case("resume garbage", resumed("{files}/garbage.pt"), "cannot be read as a checkpoint"),
    Case("resume foreign", resumed("{files}/foreign.pt"), "not a hyperlab checkpoint"),
    Case("resume unknown run", resumed("0" * 32), "cannot be read at"),
    Case(
        "resume too few epochs",
        resumed_with("dataset=moons", "dataset.n_samples=100", "epochs=1"),
        "trained 1 epochs already",
    ),
    Case(
        "resume other model",
        resumed_with("dataset=moons", "dataset.n_samples=100", "epochs=3", "model.layers=1"),
        "holds a different model",
    ),
    Case(
        "resume other optimizer",
        resumed_with("dataset=moons", "dataset.n_samples=100", "epochs=3", "optimizer=gd"),
        "state of another optimizer",
    ),
    # task=retest
    Case("retest without study", config("task=retest"), "task=retest needs the study"),
    Case(
        "retest unknown study",
        retested("study=nope", "sweep.storage='{files}/studies/journal.log'"),
        "no study named 'nope'",
    ),
    Case("retest bad storage", retested("study=x", "sweep.storage=bogus://x"), "unknown database"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_the_problem_and_a_fix(
    case: Case,
    cfg: Compose,
    files: Path,
    checkpoint: Path,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # anything recorded by default would land here
    env = Env(cfg, files, checkpoint, mlflow_uri)
    with pytest.raises(Exception) as caught:
        case.step(env)
    e = caught.value
    if case.hydra:
        assert not isinstance(e, HyperlabError)
        assert case.message in str(e), str(e)
    else:
        assert isinstance(e, HyperlabError), repr(e)
        assert case.message in e.problem, e.problem
        assert e.fix, f"no fix for {e.problem}"
        assert SECRET not in str(e)
    assert list(tmp_path.iterdir()) == []  # nothing written: no outputs/, no journal


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


# --- the real command, in a directory with a finished run and a study ------------------------


def hyperlab(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYPERLAB, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


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


@dataclass(frozen=True)
class Snapshot:
    runs: list[tuple[Any, ...]]
    trials: dict[str, list[tuple[Any, ...]]]
    journal: bytes
    tables: set[str]


def snapshot(cwd: Path) -> Snapshot:
    db = cwd / "outputs" / "mlflow.db"
    c = MlflowClient(f"sqlite:///{db}")
    experiments = c.search_experiments(view_type=ViewType.ALL)
    runs = c.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL)
    journal = cwd / "outputs" / "optuna" / "journal.log"
    storage = study.storage(str(journal))
    trials = {
        name: [
            (t.number, t.state.name, t.values)
            for t in optuna.load_study(study_name=name, storage=storage).trials
        ]
        for name in optuna.get_all_study_names(storage)
    }
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master")}
    return Snapshot(
        sorted(
            (
                r.info.run_id,
                r.info.status,
                r.info.end_time,
                tuple(sorted(r.data.metrics.items())),
                tuple(sorted(r.data.params.items())),
                tuple(sorted(r.data.tags.items())),
            )
            for r in runs
        ),
        trials,
        journal.read_bytes(),
        tables,
    )


@pytest.mark.slow
def test_the_workspace_holds_a_run_and_a_study(workspace: Path) -> None:
    snap = snapshot(workspace)
    statuses = sorted(r[1] for r in snap.runs)
    assert statuses == ["FINISHED"] * 4  # the run, the study's parent and its 2 trials
    ((name, trials),) = snap.trials.items()
    assert name.startswith("lr-") and [t[:2] for t in trials] == [(0, "COMPLETE"), (1, "COMPLETE")]


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


def check_refused(r: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert message in " ".join(r.stderr.split()), r.stderr  # rich wraps long lines
    if code == 2:
        assert "fix:" in r.stderr
    assert SECRET not in r.stdout + r.stderr


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
