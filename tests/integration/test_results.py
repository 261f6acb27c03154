"""Wrong results without a word (issue 11, section 5): each case that used to give a wrong
study or run silently is now refused with the problem and its fix, or recorded and warned.

The fast tests run in-process through the path the command takes; the slow ones run the
real `hyperlab` command and check that a refused command recorded nothing.

Here: in this process, from composed configs;
unit/test_results.py and e2e/test_results.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from hyperlab.build import build_data
from hyperlab.errors import ConfigError
from hyperlab.search import study as st
from hyperlab.search.retest import retest
from hyperlab.search.setup import (
    OBJECTIVE_ATTR,
    SPACE_ATTR,
    check_not_fixed,
    load_study,
    setup_of,
)
from hyperlab.validate import direction_of, validate
from support.paths import Compose
from support.records import plain_optuna_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


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
    assert validate(config).objective.direction == direction
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


def journal_study(cfg: Compose, path: Path, *overrides: str) -> optuna.Study:
    """The study `hyperlab <overrides> sweep.study=mine` opens, as its sweeper does."""
    config = validate(cfg(*overrides, f"sweep.storage={path}", "sweep.study=mine"))
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
    setup = setup_of(validate(cfg(search, override.lstrip("+"))), [search, override])
    with pytest.raises(ConfigError) as e:
        check_not_fixed(setup, [search, "epochs=2", override])
    assert f"{key} is searched" in e.value.problem and f"({override})" in e.value.problem
    assert f"remove {override}" in e.value.fix and f"~search.params.{key}" in e.value.fix


def test_overrides_of_the_space_or_of_other_keys_are_no_conflict(cfg: Compose) -> None:
    args = ["search=lr", "search.params.lr.low=0.01", "epochs=2", "optimizer.beta1=0.8"]
    check_not_fixed(setup_of(validate(cfg(*args)), args), args)
    args = ["search=lr_beta", "optimizer=momentum", "sweep.n_trials=3"]
    check_not_fixed(setup_of(validate(cfg(*args)), args), args)


def test_a_searched_key_without_a_default_takes_the_command_lines_value_with_a_note(
    cfg: Compose, capsys: pytest.CaptureFixture[str]
) -> None:
    """dataset.path of dataset=csv has no default: a study searching it needs one for its
    base config, so setting it is no conflict; the note says that each trial uses its own."""
    args = ["search=lr", "lr=0.5"]
    setup = setup_of(validate(cfg(*args)), args)
    check_not_fixed(setup, args, required={"lr"})
    assert "lr is searched: lr=0.5 only completes the base config" in capsys.readouterr().err


def test_every_data_set_has_a_content_hash(cfg: Compose, tmp_path: Path) -> None:
    def sha(*overrides: str) -> str:
        return build_data(validate(cfg(*overrides)).dataset).sha256

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


def test_retest_of_a_plain_optuna_study_says_why(cfg: Compose, tmp_path: Path) -> None:
    url = plain_optuna_study(tmp_path / "journal.log")
    config = cfg(f"sweep.storage={url}", "study=plain", "task=retest")
    with pytest.raises(ConfigError) as e:
        retest(config, [], lambda o: (config, {}))
    assert "has 3 complete trial(s), but none was recorded by hyperlab" in e.value.problem
    assert "no complete trials" not in e.value.problem
    assert "hyperlab lr=" in e.value.fix and "repeats=" in e.value.fix


def test_a_study_made_under_its_old_name_is_resumed_under_it(cfg: Compose, tmp_path: Path) -> None:
    from hyperlab.search import study as st
    from hyperlab.search.names import legacy_name

    path = tmp_path / "journal.log"
    overrides = ["search=lr", "epochs=2"]
    old = legacy_name("lr", overrides)
    made = optuna.create_study(study_name=old, storage=st.storage(str(path)), direction="maximize")
    made.add_trial(optuna.trial.create_trial(value=0.5))
    config = validate(cfg(*overrides, f"sweep.storage={path}"))
    setup = setup_of(config, overrides)
    assert setup.name == "lr epochs:2"
    s = load_study(config, setup, 0, join=True)
    assert s.study_name == setup.name == old and len(s.trials) == 1
    # A storage without it makes the study under its readable name.
    fresh = setup_of(validate(cfg(*overrides, f"sweep.storage={tmp_path / 'new.log'}")), overrides)
    assert load_study(config, fresh, 0, join=True).study_name == "lr epochs:2" == fresh.name
