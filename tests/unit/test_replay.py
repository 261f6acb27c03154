"""Every replay line a study records runs as printed, and trains the trial's model again.

A line is `hyperlab ...` as a shell reads it: study settings (search, sampler, pruner,
sweep, hydra) are left out, every model setting kept, and values a shell would mangle are
quoted. Each shipped search space and each shipped sampler runs a tiny real study; its best
trial's line runs through bash in a fresh directory, exits 0 and scores what the trial did.
`task=retest` reads the same lines, so it works on those studies too.

Here: the pieces on their own; e2e/test_replay.py holds the rest."""

from __future__ import annotations

import shlex

import pytest

from hyperlab.search.trial import replay, replay_args


@pytest.mark.parametrize(
    "override",
    [
        "search=lr",
        "+search.params.lr.grid=2",
        "sampler=coarse_to_fine",
        "sampler.budgets=[0.4,0.3,0.3]",
        "pruner.n_startup_trials=3",
        "sweep.workers=2",
        "++sweep.study=x",
        "hydra/launcher=basic",
        "hydra.sweep.dir=x",
        "~search",
    ],
)
def test_study_settings_are_left_out_of_a_replay(override: str) -> None:
    line = replay(["epochs=3", override], ["lr=0.01"], {"search": "lr"}, {"search": ""})
    assert line == "hyperlab epochs=3 lr=0.01"


def test_a_replay_keeps_model_settings_and_quotes_for_the_shell() -> None:
    base = ["model.hidden_units=[64,32]", "tracking.experiment=my runs", "searches=1"]
    line = replay(base, ["optimizer.name='a b'"], {"optimizer": "adam"}, {"optimizer": "gd"})
    assert shlex.split(line) == ["hyperlab", "optimizer=adam", *base, "optimizer.name='a b'"]
    assert "'model.hidden_units=[64,32]'" in line  # a shell would glob the brackets


def test_lines_recorded_before_carry_study_settings_that_retest_drops() -> None:
    old = "hyperlab sampler.budgets=[0.4,0.3,0.3] +search.params.lr.grid=2 epochs=1 lr=0.1"
    assert replay_args(old) == ["epochs=1", "lr=0.1"]
    assert replay_args("hyperlab experiment=x lr=0.1 '~search'") == [
        "experiment=x",
        "lr=0.1",
        "~search",
    ]
