"""Wrong results without a word (issue 11, section 5): each case that used to give a wrong
study or run silently is now refused with the problem and its fix, or recorded and warned.

The fast tests run in-process through the path the command takes; the slow ones run the
real `hyperlab` command and check that a refused command recorded nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from conftest import CONF, Compose
from hyperlab.build import build_data
from hyperlab.errors import ConfigError
from hyperlab.search import space
from hyperlab.search import study as st
from hyperlab.search.report import data_changes
from hyperlab.search.retest import retest
from hyperlab.search.setup import (
    DATA_ATTR,
    FIRST_DATA_ATTR,
    OBJECTIVE_ATTR,
    SPACE_ATTR,
    check_not_fixed,
    load_study,
    setup_of,
)
from hyperlab.stores import DEFAULT_JOURNAL
from hyperlab.validate import direction_of, validate
from test_bad_input import check_refused, hyperlab, snapshot

optuna.logging.set_verbosity(optuna.logging.WARNING)

# --- when: a condition that can never hold ----------------------------------------------------

OPTIMIZER = {"choices": ["momentum", "rmsprop", "adam"]}


@pytest.mark.parametrize("condition", [7, 2.5, "two", [1, 5]])
def test_a_when_outside_its_parents_range_is_refused(condition: Any) -> None:
    spec: dict[str, Any] = {
        "model.layers": {"low": 1, "high": 4},
        "lr": {"low": 0.1, "high": 0.2, "when": {"model.layers": condition}},
    }
    with pytest.raises(ConfigError) as e:
        space.parse(spec)
    assert "search.params.lr: when: model.layers=" in e.value.problem
    assert "can never hold: model.layers takes int in [1, 4]" in e.value.problem


def test_a_when_on_a_value_the_parent_can_take_is_kept() -> None:
    params = space.parse(
        {
            "optimizer": OPTIMIZER,
            "layers": {"low": 1, "high": 4},
            "nullable": {"choices": [None, "x"]},
            "optimizer.beta2": {"low": 0.99, "high": 0.9999, "when": {"optimizer": "adam"}},
            "a": {"low": 0.1, "high": 0.2, "when": {"layers": [1, 4]}},
            "b": {"low": 0.1, "high": 0.2, "when": {"nullable": None}},
        }
    )
    beta2, a, b = params[3:]
    assert space.active(beta2, {"optimizer": "adam"}) and not space.active(beta2, {})
    assert space.active(a, {"layers": 4}) and not space.active(a, {"layers": 2})
    # A null choice is sampled as "null" (an override's spelling): its condition holds.
    assert space.active(b, {"nullable": "null"})


def test_every_shipped_space_parses() -> None:
    for path in sorted((CONF / "search").glob("*.yaml")):
        space.parse(OmegaConf.to_container(OmegaConf.load(path).search.params))  # type: ignore[arg-type]


# --- objective.direction follows the metric ---------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "direction"),
    [
        ((), "maximize"),
        (("objective.metric=dev_loss",), "minimize"),
        (("objective.metric=train_loss",), "minimize"),
        (("objective.metric=train_acc",), "maximize"),
        (("objective.metric=dev_loss", "objective.direction=minimize"), "minimize"),
        (("objective.metric=dev_acc", "objective.direction=maximize"), "maximize"),
        (("objective.metric=dev_loss", "objective.direction=auto"), "minimize"),
    ],
)
def test_the_direction_follows_the_metric_unless_set(
    cfg: Compose, overrides: tuple[str, ...], direction: str
) -> None:
    config = cfg(*overrides)
    assert validate(config)["objective"]["direction"] == direction
    assert direction_of(config.objective) == direction


@pytest.mark.parametrize(
    ("metric", "direction", "natural"),
    [("dev_loss", "maximize", "minimize"), ("dev_acc", "minimize", "maximize")],
)
def test_a_direction_against_its_metric_is_refused(
    cfg: Compose, metric: str, direction: str, natural: str
) -> None:
    with pytest.raises(ConfigError) as e:
        validate(cfg(f"objective.metric={metric}", f"objective.direction={direction}"))
    assert f"objective.direction={direction}" in e.value.problem
    assert f"objective.metric={metric}" in e.value.problem
    assert f"objective.direction={natural}" in e.value.fix


# --- a study joined with another space or objective ---------------------------------------


def journal_study(cfg: Compose, path: Path, *overrides: str) -> optuna.Study:
    """The study `hyperlab <overrides> sweep.study=mine` opens, as its sweeper does."""
    config = cfg(*overrides, f"sweep.storage={path}", "sweep.study=mine")
    return load_study(config, setup_of(config, []), 0, join=True)


def test_a_study_records_its_space_and_objective(cfg: Compose, tmp_path: Path) -> None:
    s = journal_study(cfg, tmp_path / "journal.log", "search=lr")
    assert s.user_attrs[SPACE_ATTR] == {
        "search": "lr",
        "params": {"lr": {"kind": "float", "low": 1e-4, "high": 1.0, "scale": "log"}},
    }
    assert s.user_attrs[OBJECTIVE_ATTR] == {"metric": "dev_acc", "direction": "maximize"}
    assert s.direction == optuna.study.StudyDirection.MAXIMIZE


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (("search=lr_beta",), "optimizer.beta added (float in [0.9, 0.999], one_minus_log"),
        (
            ("search=lr", "~search.params.lr", "+search.params.batch_size={choices:[32,64]}"),
            "lr removed (was float in [0.0001, 1], log scale)",
        ),
        (
            ("search=lr", "search.params.lr.low=0.001"),
            "lr changed from float in [0.0001, 1], log scale to float in [0.001, 1], log scale",
        ),
        (("search=lr", "search.params.lr.scale=linear"), "to float in [0.0001, 1], linear scale"),
        (
            ("search=lr", "objective.metric=dev_loss"),
            "objective changed from dev_acc (maximize) to dev_loss (minimize)",
        ),
        (
            ("search=lr", "sampler=random"),  # searches lr on a linear scale: Optuna refuses
            "to float in [0.0001, 1], linear scale; sampler=random samples every range",
        ),
        (
            ("search=lr", "objective.metric=train_acc"),
            "objective changed from dev_acc (maximize) to train_acc (maximize)",
        ),
    ],
)
def test_joining_a_study_with_another_space_or_objective_is_refused(
    cfg: Compose, tmp_path: Path, overrides: tuple[str, ...], named: str
) -> None:
    journal = tmp_path / "journal.log"
    s = journal_study(cfg, journal, "search=lr")
    s.enqueue_trial({"lr": 0.01})
    before = journal.read_bytes()
    with pytest.raises(ConfigError) as e:
        journal_study(cfg, journal, *overrides)
    assert named in e.value.problem and "study 'mine'" in e.value.problem
    assert "sweep.study=" in e.value.fix and "search=lr" in e.value.fix
    assert journal.read_bytes() == before  # nothing written to the study


@pytest.mark.parametrize(
    "overrides",
    [
        ("sweep.n_trials=50",),
        ("sweep.workers=2",),
        ("sampler=log_uniform",),
        ("sampler=cmaes",),
        ("sampler=grid", "+search.params.lr.grid=3"),  # a grid's resolution: no new space
        ("pruner=median",),
        ("objective.direction=maximize",),  # the same as auto for dev_acc
    ],
)
def test_resuming_with_more_trials_or_another_sampler_joins(
    cfg: Compose, tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    journal = tmp_path / "journal.log"
    journal_study(cfg, journal, "search=lr")
    s = journal_study(cfg, journal, "search=lr", *overrides)
    assert s.study_name == "mine"


def test_a_study_made_before_the_space_was_recorded_joins_and_gets_it(
    cfg: Compose, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.log"
    old = optuna.create_study(study_name="mine", storage=st.storage(str(journal)))  # minimize
    old.set_user_attr("mlflow_parent_run_id", "f" * 32)
    # Its direction is all it records: a command that would maximize is refused.
    before = journal.read_bytes()
    with pytest.raises(ConfigError, match="the study minimizes, this command would maximize"):
        journal_study(cfg, journal, "search=lr")
    assert journal.read_bytes() == before
    s = journal_study(cfg, journal, "search=lr", "objective.metric=dev_loss")
    assert s.user_attrs[SPACE_ATTR]["search"] == "lr"
    assert s.user_attrs[OBJECTIVE_ATTR] == {"metric": "dev_loss", "direction": "minimize"}
    with pytest.raises(ConfigError, match=r"optimizer\.beta added"):  # from now on, checked
        journal_study(cfg, journal, "search=lr_beta", "objective.metric=dev_loss")


def test_space_changes_name_each_key() -> None:
    before = space.canonical(space.parse({"a": {"low": 1, "high": 9}, "b": {"choices": [1, 2]}}))
    now = space.canonical(space.parse({"b": {"choices": [1, 3]}, "c": {"low": 0.5, "high": 1.0}}))
    assert space.changes(before, before) == []
    assert space.changes(before, now) == [
        "a removed (was int in [1, 9], linear scale)",
        "c added (float in [0.5, 1], linear scale)",
        "b changed from one of [1, 2] to one of [1, 3]",
    ]


# --- a key both searched and fixed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "override"),
    [
        ("search=lr", "lr=0.5"),
        ("search=lr", "+lr=0.5"),
        ("search=lr_beta", "optimizer.beta=0.95"),
        ("search=optimizers", "optimizer=adam"),
    ],
)
def test_a_key_searched_and_fixed_on_the_command_line_is_refused(
    cfg: Compose, search: str, override: str
) -> None:
    key = override.split("=")[0].lstrip("+")
    setup = setup_of(cfg(search, override.lstrip("+")), [search, override])
    with pytest.raises(ConfigError) as e:
        check_not_fixed(setup, [search, "epochs=2", override])
    assert f"{key} is searched" in e.value.problem and f"({override})" in e.value.problem
    assert f"remove {override}" in e.value.fix and f"~search.params.{key}" in e.value.fix


def test_overrides_of_the_space_or_of_other_keys_are_no_conflict(cfg: Compose) -> None:
    args = ["search=lr", "search.params.lr.low=0.01", "epochs=2", "optimizer.beta1=0.8"]
    check_not_fixed(setup_of(cfg(*args), args), args)
    args = ["search=lr_beta", "optimizer=momentum", "sweep.n_trials=3"]
    check_not_fixed(setup_of(cfg(*args), args), args)


def test_a_searched_key_without_a_default_takes_the_command_lines_value_with_a_note(
    cfg: Compose, capsys: pytest.CaptureFixture[str]
) -> None:
    """dataset.path of dataset=csv has no default: a study searching it needs one for its
    base config, so setting it is no conflict; the note says that each trial uses its own."""
    args = ["search=lr", "lr=0.5"]
    setup = setup_of(cfg(*args), args)
    check_not_fixed(setup, args, required={"lr"})
    assert "lr is searched: lr=0.5 only completes the base config" in capsys.readouterr().err


# --- the data each run trained on ---------------------------------------------------------------


def test_every_data_set_has_a_content_hash(cfg: Compose, tmp_path: Path) -> None:
    def sha(*overrides: str) -> str:
        return build_data(validate(cfg(*overrides))["dataset"]).sha256

    digits = sha()
    assert len(digits) == 64 and digits == sha()  # stable
    assert sha("dataset=moons") != sha("dataset=moons", "dataset.seed=1")
    # The examples, not their split: another split trains on the same data.
    assert sha("dataset=moons") == sha("dataset=moons", "dataset.split.seed=3")
    path = tmp_path / "d.npz"
    x = np.random.default_rng(0).normal(size=(40, 2))
    np.savez(path, X=x, y=np.arange(40) % 2)
    first = sha("dataset=npz", f"dataset.path={path}")
    x[3, 1] += 1e-9  # one value changed by a hair
    np.savez(path, X=x, y=np.arange(40) % 2)
    assert sha("dataset=npz", f"dataset.path={path}") != first


def test_data_changes_names_the_trials_on_other_data() -> None:
    s = optuna.create_study()
    for sha in ("a" * 64, "a" * 64, "b" * 64):
        s.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={DATA_ATTR: sha}))
    assert data_changes(s) == ""  # no first hash recorded: nothing to compare with
    s.set_user_attr(FIRST_DATA_ATTR, "a" * 64)
    line = data_changes(s)
    assert "trial(s) 2 trained on other data (data.sha256 bbbbbbbbbbbb)" in line
    assert "\n" not in line


# --- retest of a study hyperlab did not run --------------------------------------------------


def plain_optuna_study(path: Path) -> str:
    """A study made with Optuna alone: three complete trials, no replay lines."""
    s = optuna.create_study(study_name="plain", storage=st.storage(str(path)), direction="maximize")
    s.optimize(lambda t: t.suggest_float("lr", 1e-4, 1.0, log=True), n_trials=3)
    return str(path)


def test_retest_of_a_plain_optuna_study_says_why(cfg: Compose, tmp_path: Path) -> None:
    url = plain_optuna_study(tmp_path / "journal.log")
    config = cfg(f"sweep.storage={url}", "study=plain", "task=retest")
    with pytest.raises(ConfigError) as e:
        retest(config, [], lambda o: (config, {}))
    assert "has 3 complete trial(s), but none was recorded by hyperlab" in e.value.problem
    assert "no complete trials" not in e.value.problem
    assert "hyperlab lr=" in e.value.fix and "repeats=" in e.value.fix


# --- through the command ----------------------------------------------------------------------

TINY = ["epochs=1", "dataset=moons", "dataset.n_samples=200", "sweep.n_trials=2"]


def runs_of(cwd: Path) -> list[Any]:
    c = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
    return c.search_runs([e.experiment_id for e in c.search_experiments()])


@pytest.mark.slow
def test_the_command_refuses_to_mix_two_spaces_in_one_study(tmp_path: Path) -> None:
    mine = [*TINY, "sweep.study=mine"]
    r = hyperlab(tmp_path, "search=lr", *mine)
    assert r.returncode == 0, r.stderr
    before = snapshot(tmp_path)
    for args, message in (
        (["search=lr_beta"], "optimizer.beta added (float in [0.9, 0.999], one_minus_log"),
        (["search=lr", "objective.metric=dev_loss"], "from dev_acc (maximize) to dev_loss"),
        (["search=lr", "search.params.lr.high=0.1"], "lr changed from float in [0.0001, 1]"),
    ):
        r = hyperlab(tmp_path, *args, *mine)
        check_refused(r, 2, message)
        assert "sweep.study=NEW_NAME" in " ".join(r.stderr.split())
        assert snapshot(tmp_path) == before  # no trial, no run, not a byte of the journal
    # More trials with another sampler: the same study, resumed.
    r = hyperlab(tmp_path, "search=lr", "sampler=log_uniform", *mine, "sweep.n_trials=3")
    assert r.returncode == 0, r.stderr
    s = optuna.load_study(study_name="mine", storage=st.storage(str(tmp_path / DEFAULT_JOURNAL)))
    assert len(s.trials) == 3 and set(s.trials[2].params) == {"lr"}


@pytest.mark.slow
def test_the_command_refuses_a_key_searched_and_fixed(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "search=lr", "lr=0.5", *TINY)
    check_refused(r, 2, "lr is searched (float in [0.0001, 1], log scale) and also fixed")
    assert "remove lr=0.5" in " ".join(r.stderr.split())
    assert not (tmp_path / "outputs" / "optuna").exists() and not (tmp_path / "outputs").exists()
    r = hyperlab(tmp_path, "search=lr", "search.params.lr.low=0.01", "sweep.dry_run=true")
    assert r.returncode == 0, r.stderr  # narrowing the space is no conflict


@pytest.mark.slow
def test_the_command_refuses_a_when_that_can_never_hold(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "search=optimizers",
        "+search.params.batch_size={low:16,high:128,when:{optimizer:adamm}}",
        "sweep.dry_run=true",
    )
    check_refused(r, 2, "when: optimizer='adamm' can never hold")
    assert "choices ['momentum', 'rmsprop', 'adam'], nor an option of the group optimizer" in (
        " ".join(r.stderr.split())
    )


@pytest.mark.slow
def test_a_loss_is_minimized_and_maximizing_it_is_refused(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "objective.metric=dev_loss", "objective.direction=maximize", *TINY)
    check_refused(r, 2, "objective.direction=maximize with objective.metric=dev_loss")
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    r = hyperlab(tmp_path, "search=lr", "objective.metric=dev_loss", *TINY)
    assert r.returncode == 0, r.stderr
    storage = st.storage(str(tmp_path / DEFAULT_JOURNAL))
    (name,) = optuna.get_all_study_names(storage)
    s = optuna.load_study(study_name=name, storage=storage)
    assert s.direction == optuna.study.StudyDirection.MINIMIZE
    assert s.best_value == min(t.value for t in s.trials)  # type: ignore[type-var]
    runs = runs_of(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.params["objective"] == "dev_loss (minimize)"
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {c.data.params["objective.direction"] for c in children} == {"minimize"}
    assert {c.data.tags["hyperlab.objective"] for c in children} == {"dev_loss (minimize)"}


def write_npz(path: Path, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(200, 2))
    np.savez(path, X=x, y=(x[:, 0] > 0).astype(int))


@pytest.mark.slow
def test_data_that_changes_during_a_study_is_recorded_and_warned_about(tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    write_npz(data, 0)
    args = ["search=lr", "epochs=1", "dataset=npz", f"dataset.path={data}"]
    r = hyperlab(tmp_path, *args, "sweep.n_trials=2")
    assert r.returncode == 0, r.stderr
    assert "other data" not in r.stdout + r.stderr
    write_npz(data, 1)  # the file is replaced; the same command resumes the study
    r = hyperlab(tmp_path, *args, "sweep.n_trials=4")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stderr.split())
    for n in (2, 3):  # each worker's trial on the new data, as it trains
        assert f"trial {n} trained on other data than the study's first trial" in out
    assert "trial(s) 2, 3 trained on other data" in out  # and the report
    (summary,) = sorted((tmp_path / "outputs" / "multirun").glob("*/summary.md"))[-1:]
    assert "trial(s) 2, 3 trained on other data" in summary.read_text()

    storage = st.storage(str(tmp_path / DEFAULT_JOURNAL))
    (name,) = optuna.get_all_study_names(storage)
    s = optuna.load_study(study_name=name, storage=storage)
    hashes = [t.user_attrs[DATA_ATTR] for t in s.trials]
    assert hashes[0] == hashes[1] == s.user_attrs[FIRST_DATA_ATTR] != hashes[2] == hashes[3]
    children = [r for r in runs_of(tmp_path) if "hyperlab.trial" in r.data.tags]
    by_trial = {int(c.data.tags["hyperlab.trial"]): c.data.params[DATA_ATTR] for c in children}
    assert by_trial == dict(enumerate(hashes))


@pytest.mark.slow
def test_the_command_says_why_a_plain_optuna_study_cannot_be_retested(tmp_path: Path) -> None:
    url = plain_optuna_study(tmp_path / "journal.log")
    r = hyperlab(tmp_path, "task=retest", "study=plain", f"sweep.storage={url}")
    check_refused(r, 2, "has 3 complete trial(s), but none was recorded by hyperlab")
