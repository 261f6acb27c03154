"""A multi-objective study's refusals (hyperlab.search.multi.check_study and joining a
study made with other objectives), each with its exact problem and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperlab.errors import ConfigError
from hyperlab.search import setup
from hyperlab.search.multi import check_study
from hyperlab.search.space import suggest
from hyperlab.search.study import Retry
from hyperlab.validate import validate
from support.paths import Compose

MULTI = "objective.metrics=[dev_acc,n_params]"
SAMPLERS = (
    "use a sampler that handles several objectives: "
    "sampler=tpe, nsga2, gp, random, log_uniform, qmc or grid"
)


@pytest.mark.parametrize(
    ("overrides", "choices", "problem", "fix"),
    [
        (
            ["pruner=median"],
            {"pruner": "median"},
            "pruner=median with 2 objectives: Optuna cannot prune a multi-objective study "
            "(trial.should_prune raises)",
            "use pruner=none",
        ),
        (
            ["pruner=hyperband"],
            {},  # a group option not known: the pruner's class names it
            "pruner=HyperbandPruner with 2 objectives: Optuna cannot prune a multi-objective "
            "study (trial.should_prune raises)",
            "use pruner=none",
        ),
        (
            ["sampler=cmaes"],
            {"sampler": "cmaes"},
            "sampler=cmaes with 2 objectives: Optuna's CMA-ES optimizes a single objective "
            "(it raises on a multi-objective study)",
            SAMPLERS,
        ),
        (
            ["sampler=coarse_to_fine"],
            {"sampler": "coarse_to_fine"},
            "sampler=coarse_to_fine with 2 objectives: its stages narrow the search around "
            "the best trials of a single objective",
            SAMPLERS,
        ),
        (
            ["repeats=3"],
            {},
            "repeats=3 with 2 objectives: seed repeats judge a trial by one value over its "
            "seeds (objective.over_seeds), not by a list of them",
            "use repeats=1 in the study, then retrain a front trial with its replay line and "
            "repeats=3",
        ),
        (
            ["sweep.population=4"],
            {},
            "sweep.population=4 with 2 objectives: a stacked population tells each trial one value",
            "use sweep.population=1 (the default): workers train trials one by one",
        ),
        (
            ["sweep.warm_start=old"],
            {},
            "sweep.warm_start=old with 2 objectives: a warm start enqueues an earlier study's "
            "best trials, ranked by one objective",
            "drop sweep.warm_start (a multi-objective study starts from its sampler's random "
            "trials)",
        ),
    ],
    ids=["median", "hyperband", "cmaes", "coarse_to_fine", "repeats", "population", "warm"],
)
def test_what_a_multi_objective_study_cannot_do_is_refused(
    cfg: Compose, overrides: list[str], choices: dict[str, str], problem: str, fix: str
) -> None:
    config = validate(cfg("search=lr_size", MULTI, *overrides))
    with pytest.raises(ConfigError) as e:
        check_study(config, choices)
    assert (e.value.problem, e.value.fix) == (problem, fix)
    # The same settings with one objective are a study as before.
    check_study(validate(cfg("search=lr_size", "objective.metrics=[]", *overrides)), choices)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random", "log_uniform", "qmc", "grid"])
def test_multi_objective_samplers_ask_and_tell_a_list_of_values(
    cfg: Compose, tmp_path: Path, sampler: str
) -> None:
    overrides = ["search=lr_size", f"sampler={sampler}", f"sweep.storage={tmp_path / 'j.log'}"]
    config = validate(cfg(*overrides))
    check_study(config, {"sampler": sampler})
    s = setup.setup_of(config, overrides)
    study = setup.load_study(config, s, 0, Retry(s.url, 1.0), join=True)
    assert study.metric_names == ["dev_acc", "n_params"]
    for i in range(3):
        trial = study.ask()
        values = suggest(trial, s.params, fixed={}, naive=s.naive)
        study.tell(trial, [0.5 + i / 10, float(values["model.hidden_units"])])
    assert len(study.best_trials) >= 1


def _open(cfg: Compose, tmp_path: Path, *overrides: str) -> None:
    base = ["search=lr_size", "sweep.study=s", f"sweep.storage={tmp_path / 'j.log'}"]
    config = validate(cfg(*base, *overrides))
    s = setup.setup_of(config, [*base, *overrides])
    setup.load_study(config, s, 0, Retry(s.url, 1.0), join=True)


@pytest.mark.parametrize(
    ("first", "then", "change", "how"),
    [
        (
            "objective.metrics=[]",
            MULTI,
            "objective changed from dev_acc (maximize) to dev_acc (maximize), n_params (minimize)",
            "objective.metric=dev_acc",
        ),
        (
            MULTI,
            "objective.metrics=[dev_acc,train_seconds]",
            "objective changed from dev_acc (maximize), n_params (minimize) to dev_acc "
            "(maximize), train_seconds (minimize)",
            "objective.metrics=[dev_acc,n_params]",
        ),
        (
            MULTI,
            "objective.metrics=[]",
            "objective changed from dev_acc (maximize), n_params (minimize) to dev_acc (maximize)",
            "objective.metrics=[dev_acc,n_params]",
        ),
    ],
    ids=["single-then-multi", "multi-then-other", "multi-then-single"],
)
def test_joining_a_study_with_other_objectives_is_refused(
    cfg: Compose, tmp_path: Path, first: str, then: str, change: str, how: str
) -> None:
    _open(cfg, tmp_path, first)
    _open(cfg, tmp_path, first)  # the same objectives join
    with pytest.raises(ConfigError) as e:
        _open(cfg, tmp_path, then)
    assert e.value.problem == (
        f"study 's' in {tmp_path / 'j.log'} was made with another search space or objective: "
        f"{change}. Joining it would mix the two searches' trials in one ranking"
    )
    assert e.value.fix == (
        "start a new study under another name (sweep.study=NEW_NAME), or resume this one "
        f"with the search it was made with (search=lr_size, {how}, and its search.params "
        "overrides)"
    )
