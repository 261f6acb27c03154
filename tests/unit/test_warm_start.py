"""sweep.warm_start: which trials of an earlier study are enqueued, with which values, once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hyperlab.errors import ConfigError
from hyperlab.search import space, warm_start
from hyperlab.search import study as st
from hyperlab.search.setup import Setup, setup_of
from hyperlab.validate import validate
from support.paths import Compose

PARAMS = space.parse(
    {
        "lr": {"low": 1e-4, "high": 1.0},  # log
        "optimizer.beta": {"low": 0.8, "high": 0.999},  # one_minus_log: Optuna's 1-optimizer.beta
        "model.hidden_units": {"low": 16, "high": 128, "type": "int"},
        "optimizer": {"choices": ["momentum", "adam"]},
    }
)
LR = FloatDistribution(1e-5, 10.0, log=True)
BETA = FloatDistribution(1e-4, 0.5, log=True)
UNITS = IntDistribution(8, 512)
OPT = CategoricalDistribution(["gd", "momentum", "adam"])


def trial(number: int, value: float, **params: object) -> optuna.trial.FrozenTrial:
    dists = {"lr": LR, "1-optimizer.beta": BETA, "model.hidden_units": UNITS, "optimizer": OPT}
    dists["dropout"] = FloatDistribution(0.0, 1.0)
    names = {k.replace("one_minus_beta", "1-optimizer.beta"): v for k, v in params.items()}
    t = create_trial(value=value, params=names, distributions={k: dists[k] for k in names})
    t.number = number
    return t


def test_only_values_this_space_takes_are_chosen_and_the_rest_said() -> None:
    ranked = [
        trial(1, 0.95, lr=2.0, optimizer="gd"),  # the best, but none of it fits
        trial(0, 0.90, lr=0.5, one_minus_beta=0.05, **{"model.hidden_units": 64}),
        trial(2, 0.80, lr=0.01, dropout=0.3, **{"model.hidden_units": 256}),
        trial(3, 0.70, lr=0.02),  # past the top 3
    ]
    chosen, skipped = warm_start.choose(ranked, PARAMS, top=3)
    assert chosen == [
        (0, {"lr": 0.5, "1-optimizer.beta": 0.05, "model.hidden_units": 64}),
        (2, {"lr": 0.01}),
    ]
    assert skipped == [
        "trial 1 left out: lr=2 outside [0.0001, 1], optimizer=gd not one of ['momentum', 'adam']",
        "trial 2: dropout not searched here, model.hidden_units=256 outside [16, 128]; "
        "sampled instead",
    ]


def test_a_value_goes_under_the_name_and_scale_this_space_samples_it_on() -> None:
    linear = space.parse({"optimizer.beta": {"low": 0.8, "high": 0.999, "scale": "linear"}})
    t = trial(0, 1.0, one_minus_beta=0.125)
    assert warm_start.choose([t], linear, top=1)[0] == [(0, {"optimizer.beta": 0.875})]
    # sampler=random samples every range linearly, under the key itself
    assert warm_start.choose([t], PARAMS, top=1, naive=True)[0] == [(0, {"optimizer.beta": 0.875})]
    assert warm_start.choose([t], PARAMS, top=1)[0] == [(0, {"1-optimizer.beta": 0.125})]


def test_the_trials_are_enqueued_once_and_within_the_budget(tmp_path: Path) -> None:
    url = str(tmp_path / "journal.log")
    s = optuna.create_study(study_name="b", storage=st.storage(url))
    plan = warm_start.Plan("a", "there", [(4, {"lr": 0.5}), (7, {"lr": 0.01}), (1, {"lr": 0.1})])
    assert warm_start.enqueue(s, Setup(url, "b", PARAMS, False, n_trials=2), plan) == 2
    assert plan.skipped == ["trial(s) 1: past sweep.n_trials"]
    # A resumed study has been warm-started: nothing again.
    assert warm_start.enqueue(s, Setup(url, "b", PARAMS, False, n_trials=2), plan) == 0
    waiting = s.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs[warm_start.FROM_ATTR] for t in waiting] == [
        {"study": "a", "trial": 4},
        {"study": "a", "trial": 7},
    ]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"lr": 0.5}, {"lr": 0.01}]
    assert s.user_attrs[warm_start.DONE_ATTR] == {
        "study": "a",
        "storage": "there",
        "trials": [4, 7],
    }
    assert warm_start.parent_tags(s) == {
        "hyperlab.warm_start": "2 trials from study a in there: trial(s) 4, 7"
    }


def _sources(url: str) -> None:
    made = optuna.create_study(study_name="acc", storage=st.storage(url), direction="maximize")
    made.add_trial(create_trial(value=0.9, params={"lr": 0.1}, distributions={"lr": LR}))
    optuna.create_study(study_name="empty", storage=st.storage(url), direction="maximize")
    loss = optuna.create_study(study_name="loss", storage=st.storage(url))
    loss.add_trial(create_trial(value=0.2, params={"lr": 0.1}, distributions={"lr": LR}))


@pytest.mark.parametrize(
    ("source", "problem", "fix"),
    [
        (
            "nope",
            "no study named 'nope' in {url}",
            "use one of ['acc', 'empty', 'loss'] (sweep.warm_start=NAME)",
        ),
        (
            "empty",
            "sweep.warm_start: study 'empty' in {url} has no complete trials (none at all)",
            "finish that study first (run its command again), or drop sweep.warm_start",
        ),
        (
            "loss",
            "sweep.warm_start: study 'loss' in {url} was made to minimize its objective, this "
            "study will maximize dev_acc: its best trials would be this study's worst",
            "warm-start from a study that maximizes, or use its objective "
            "(objective.direction=minimize with a metric to minimize)",
        ),
    ],
    ids=["unknown", "empty", "direction"],
)
def test_a_study_to_warm_start_from_is_refused_with_the_fix(
    cfg: Compose, tmp_path: Path, source: str, problem: str, fix: str
) -> None:
    url = str(tmp_path / "journal.log")
    _sources(url)
    args = ["search=lr", f"sweep.storage={url}", f"sweep.warm_start={source}"]
    config = validate(cfg(*args))
    with pytest.raises(ConfigError) as e:
        warm_start.plan(config, setup_of(config, args))
    assert (e.value.problem, e.value.fix) == (problem.format(url=url), fix)
    assert optuna.get_all_study_names(st.storage(url)) == ["acc", "empty", "loss"]  # none made


def test_a_plan_takes_the_best_trials_and_none_once_warm_started(
    cfg: Compose, tmp_path: Path
) -> None:
    url = str(tmp_path / "journal.log")
    _sources(url)
    args = ["search=lr", f"sweep.storage={url}", "sweep.warm_start=acc"]
    config = validate(cfg(*args))
    setup = setup_of(config, args)
    plan = warm_start.plan(config, setup)
    assert plan is not None and plan.trials == [(0, {"lr": 0.1})] and plan.study == "acc"
    s = optuna.create_study(study_name=setup.name, storage=st.storage(url), direction="maximize")
    warm_start.enqueue(s, setup, plan)
    assert warm_start.plan(config, setup) is None
