"""Bad input, table-driven: every case fails with a message naming the problem and a fix,
before anything is trained or recorded. Each runs in-process through the path the
`hyperlab` command takes (compose and validate, the data loaders, the space parser, the
study storage, checkpoints); e2e/test_bad_input.py runs a representative subset through
the real command."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from hyperlab.checkpoint import load, locate
from hyperlab.cli import CONFIG_DIR
from hyperlab.errors import HyperlabError
from hyperlab.run import Job, run
from hyperlab.run import prepare as prepare_run
from hyperlab.search import space, study
from hyperlab.search.retest import retest
from hyperlab.search.setup import setup_of
from hyperlab.validate import validate
from support.paths import Compose
from support.refusals import SECRET, write_files

optuna.logging.set_verbosity(optuna.logging.WARNING)


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
    """A config edited where no override can reach (a space's dotted keys), validated and
    its study set up."""

    def step(env: Env) -> object:
        c = env.compose(*overrides)
        OmegaConf.update(c, key, value, merge=False)
        return setup_of(validate(c), overrides)

    return step


def parsed(spec: Any) -> Step:
    return lambda env: space.parse(spec)


def sweep(*overrides: str) -> Step:
    """What the sweeper does first: validate the base config, derive the study's setup."""

    def step(env: Env) -> object:
        return setup_of(validate(env.compose(*overrides)), list(overrides))

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
    Case("threads=-1", config("threads=-1"), "threads must be an integer >= 0"),
    Case("device=gpu", config("device=gpu"), "auto, cpu, cuda, cuda:N or mps"),
    # This machine has no GPU (a test on one would name another device).
    Case("device=cuda:7", config("device=cuda:7"), "this machine has no such device"),
    Case("task=foo", config("task=foo"), "train, gradcheck, retest or studies"),
    Case("repeats=0", config("repeats=0"), "repeats must be an integer >= 1"),
    Case("n_trials=0", config(LR, "sweep.n_trials=0"), "sweep.n_trials must be"),
    Case("max_failure_rate=2", config("sweep.max_failure_rate=2"), "[0, 1]"),
    Case("heartbeat_seconds=0", config("sweep.heartbeat_seconds=0"), "an integer >= 1"),
    Case("retry_failed=-1", config("sweep.retry_failed=-1"), "an integer >= 0"),
    Case("retry_seconds<0", config("sweep.retry_seconds=-5"), "a number >= 0"),
    Case("flush_seconds<0", config("tracking.flush_seconds=-1"), "a number >= 0"),
    Case("batchnorm batch 1", config("normalization=batchnorm", "batch_size=1"), "at least 2"),
    # every range, as each setting's function or schema field declares it (hyperlab.ranges)
    Case("lr=-1", config("lr=-1"), "lr must be a number > 0"),
    Case("optimizer.lr=-0.1", config("optimizer.lr=-0.1"), "optimizer.lr must be a number > 0"),
    Case("batch_size=0", config("batch_size=0"), "batch_size must be an integer >= 1"),
    Case(
        "regularization.keep_prob=0",
        config("regularization.keep_prob=0"),
        "regularization.keep_prob must be a number in (0, 1]",
    ),
    Case(
        "regularization.l2=-1",
        config("regularization.l2=-1"),
        "regularization.l2 must be a number >= 0",
    ),
    Case(
        "optimizer=momentum optimizer.beta=-0.1",
        config("optimizer=momentum", "optimizer.beta=-0.1"),
        "optimizer.beta must be a number in [0, 1)",
    ),
    Case(
        "optimizer.beta2=1.0",
        config("optimizer.beta2=1.0"),
        "optimizer.beta2 must be a number in [0, 1)",
    ),
    Case(
        "optimizer.beta1=abc",
        config("optimizer.beta1=abc"),
        "optimizer.beta1 must be a number in [0, 1)",
    ),
    Case("optimizer.eps=0", config("optimizer.eps=0"), "optimizer.eps must be a number > 0"),
    Case(
        "normalization=batchnorm normalization.running_beta=1.2",
        config("normalization=batchnorm", "normalization.running_beta=1.2"),
        "normalization.running_beta must be a number in [0, 1)",
    ),
    Case(
        "schedule=exponential schedule.rate=0",
        config("schedule=exponential", "schedule.rate=0"),
        "schedule.rate must be a number in (0, 1]",
    ),
    Case(
        "schedule=staircase schedule.interval=0",
        config("schedule=staircase", "schedule.interval=0"),
        "schedule.interval must be an integer >= 1",
    ),
    Case(
        "schedule=inverse_time schedule.decay_rate=-1",
        config("schedule=inverse_time", "schedule.decay_rate=-1"),
        "schedule.decay_rate must be a number >= 0",
    ),
    Case(
        "dataset.split.dev=0", config("dataset.split.dev=0"), "dataset.split.dev must be in (0, 1)"
    ),
    Case(
        "dataset=moons dataset.noise=-1",
        config("dataset=moons", "dataset.noise=-1"),
        "dataset.noise must be a number >= 0",
    ),
    Case(
        "dataset=moons dataset.n_samples=3",
        config("dataset=moons", "dataset.n_samples=3"),
        "dataset.n_samples must be an integer >= 10",
    ),
    Case(
        "model.hidden_units=0",
        config("model.hidden_units=0"),
        "model.hidden_units must be an integer >= 1 or a list of them",
    ),
    Case(
        "model.hidden_units=[64,0]",
        config("model.hidden_units=[64,0]"),
        "model.hidden_units must be an integer >= 1 or a list of them",
    ),
    Case(
        "model.activation=swish",
        config("model.activation=swish"),
        "model.activation must be one of (",
    ),
    Case("model.layers=-1", config("model.layers=-1"), "model.layers must be an integer >= 0"),
    Case(
        "init=random_large init.scale=0",
        config("init=random_large", "init.scale=0"),
        "init.scale must be a number > 0",
    ),
    Case("normalization.kind=bogus", config("normalization.kind=bogus"), "hyperlab.models.none"),
    Case(
        "objective.metric=test_acc",
        config("objective.metric=test_acc"),
        "objective.metric must be one of (",
    ),
    Case(
        "objective.direction=up",
        config("objective.direction=up"),
        "objective.direction must be auto, maximize or minimize",
    ),
    Case("bayes_error=1.5", config("bayes_error=1.5"), "bayes_error must be a number in [0, 1)"),
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
    Case("low >= high", sweep(LR, "search.params.lr.low=2"), "low=2 must be below high=1.0"),
    Case("unknown scale", sweep(LR, "search.params.lr.scale=cubic"), "scale='cubic'"),
    Case(
        "log with low<=0",
        sweep(LR, "search.params.lr.low=-1", "search.params.lr.scale=log"),
        "a log scale needs low > 0",
    ),
    Case(
        "range reaches lr<0",
        sweep(LR, "search.params.lr.low=-1", "search.params.lr.scale=linear"),
        "can produce lr=-1.0",
    ),
    Case(
        "beta range reaches 1",
        edited(["search=lr_beta"], "search.params", {"optimizer.beta": {"low": 0.9, "high": 1}}),
        "can produce optimizer.beta=1.0",
    ),
    Case(
        "choice out of range",
        sweep("search=adam_full", "search.params.batch_size.choices=[0,32]"),
        "can produce batch_size=0",
    ),
    Case("unknown setting", sweep(LR, "+search.params.lr.typo=3"), "unknown setting(s) ['typo']"),
    Case("entry not a mapping", sweep(LR, "search.params.lr=0.1"), "expected a mapping"),
    Case("empty space", sweep(LR, "~search.params.lr"), "search.params is empty"),
    Case(
        "key not in config",
        sweep(LR, "+search.params.lrr={low:0.1,high:1.0}"),
        "lrr is not a setting of the config",
    ),
    Case(
        "group option unknown",
        sweep("search=optimizers", "search.params.optimizer.choices=[adam,adamm]"),
        "'adamm' is not an option of the group optimizer",
    ),
    Case("grid=0", sweep(LR, "+search.params.lr.grid=0"), "grid=0 must be an integer >= 1"),
    Case(
        "int with fractional bounds",
        sweep(LR, "+search.params.lr.type=int"),
        "type: int needs whole-number bounds",
    ),
    Case("when not a mapping", sweep(LR, "+search.params.lr.when=adam"), "when='adam' must map"),
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
