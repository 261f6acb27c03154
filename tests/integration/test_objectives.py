"""objective.metrics: a multi-objective study's metrics and directions, resolved by
validate() (hyperlab.objectives), and the bad ones refused with the problem and the fix."""

from __future__ import annotations

import pytest

from hyperlab.errors import ConfigError
from hyperlab.objectives import directions, is_multi, names
from hyperlab.validate import validate
from support.paths import Compose


@pytest.mark.parametrize(
    ("metrics", "given", "resolved"),
    [
        ("[dev_acc,train_seconds]", None, ["maximize", "minimize"]),
        ("[dev_loss,n_params]", None, ["minimize", "minimize"]),
        ("[train_acc,train_loss,n_params]", None, ["maximize", "minimize", "minimize"]),
        ("[dev_acc,n_params]", "[maximize,auto]", ["maximize", "minimize"]),
        ("[dev_acc,n_params]", "[auto,minimize]", ["maximize", "minimize"]),
    ],
)
def test_directions_follow_each_metric_unless_given(
    cfg: Compose, metrics: str, given: str | None, resolved: list[str]
) -> None:
    extra = [f"objective.directions={given}"] if given else []
    config = validate(cfg(f"objective.metrics={metrics}", *extra))
    assert is_multi(config)
    assert names(config) == metrics.strip("[]").split(",")
    assert directions(config) == resolved
    assert config.objective.directions == resolved


def test_the_first_epoch_metric_is_the_runs_best_epoch_metric(cfg: Compose) -> None:
    config = validate(cfg("objective.metrics=[n_params,dev_loss]"))
    assert (config.objective.metric, config.objective.direction) == ("dev_loss", "minimize")


def test_one_metric_in_the_list_is_exactly_the_single_objective(cfg: Compose) -> None:
    config = validate(cfg("objective.metrics=[dev_loss]"))
    assert not is_multi(config)
    assert config.objective.metric == "dev_loss" and config.objective.direction == "minimize"
    assert config.objective.metrics == [] and config.objective.directions == []
    plain = validate(cfg())
    assert names(plain) == ["dev_acc"] and directions(plain) == ["maximize"]


@pytest.mark.parametrize(
    ("overrides", "problem", "fix"),
    [
        (
            ["objective.metrics=[dev_acc,test_acc]"],
            "objective.metrics=[dev_acc,test_acc]: 'test_acc' is not a metric a study can "
            "optimize (one of dev_acc, dev_loss, train_acc, train_loss, train_seconds, n_params)",
            "name metrics from that list, e.g. objective.metrics=[dev_acc,train_seconds]",
        ),
        (
            ["objective.metrics=[dev_acc,dev_acc]"],
            "objective.metrics=[dev_acc,dev_acc] names dev_acc twice",
            "name each metric once, e.g. objective.metrics=[dev_acc,n_params]",
        ),
        (
            ["objective.metrics=[dev_acc,n_params]", "objective.directions=[maximize]"],
            "objective.directions=[maximize] has 1 direction(s) for 2 metrics "
            "(objective.metrics=[dev_acc,n_params])",
            "give one direction per metric, e.g. objective.directions=[maximize,minimize], "
            "or drop objective.directions (auto: each metric's own)",
        ),
        (
            ["objective.metrics=[dev_acc,n_params]", "objective.directions=[maximize,maximize]"],
            "objective.directions[1]=maximize with n_params: this would maximize n_params "
            "(less is better), i.e. search for the worst model",
            "set objective.directions[1]=minimize, or drop objective.directions (auto: each "
            "metric's own)",
        ),
        (
            ["objective.metrics=[dev_loss,n_params]", "objective.directions=[maximize,auto]"],
            "objective.directions[0]=maximize with dev_loss: this would maximize a loss, i.e. "
            "search for the worst model",
            "set objective.directions[0]=minimize, or drop objective.directions (auto: each "
            "metric's own)",
        ),
        (
            ["objective.metrics=[dev_acc,n_params]", "objective.directions=[up,auto]"],
            "objective.directions[0]=up is not a direction (auto, maximize or minimize)",
            "e.g. objective.directions[0]=maximize",
        ),
        (
            ["objective.directions=[maximize,minimize]"],
            "objective.directions=[maximize,minimize] without objective.metrics: directions "
            "are given one per metric of a multi-objective study",
            "add objective.metrics=[...] (one metric per direction), or use "
            "objective.direction for the single objective.metric",
        ),
        (
            ["objective.metrics=[n_params]"],
            "objective.metrics=[n_params]: n_params alone is no study: every trial of a space "
            "would be judged by its time or size, not by how well it learns",
            "optimize it beside a learning metric, e.g. objective.metrics=[dev_acc,n_params]",
        ),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else "",
)
def test_bad_objectives_are_refused_with_the_fix(
    cfg: Compose, overrides: list[str], problem: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as e:
        validate(cfg(*overrides))
    assert (e.value.problem, e.value.fix) == (problem, fix)
