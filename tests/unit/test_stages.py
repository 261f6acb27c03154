"""Stages: what a config may stage, the spans it trains, the override a replay line writes,
and the optimizer's values under torch's names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperlab import optim
from hyperlab.errors import ConfigError
from hyperlab.stages import Stage, of_config, override, set_optimizer, spans
from hyperlab.validate import validate
from support.paths import Compose


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stages=[{epoch:1,lr:0.1}]"], r"stages\[0\]\.epoch=1: a stage starts at an epoch after"),
        (
            ["stages=[{epoch:5,lr:0.1},{epoch:5,lr:0.2}]"],
            r"stages\[1\]\.epoch=5: a stage starts at an epoch after the previous stage's \(5\)",
        ),
        (["epochs=4", "stages=[{epoch:5,lr:0.1}]"], r"at most epochs=4"),
        (["stages=[{epoch:2.5,lr:0.1}]"], r"stages\[0\]\.epoch=2\.5"),
        (["stages=[{epoch:x,lr:0.1}]"], r"stages\[0\]\.epoch=x"),
        (["stages=[{lr:0.1}]"], r"stages\[0\]\.epoch=None"),
        (["stages=[{epoch:3}]"], r"stages\[0\] sets nothing"),
        (
            ["optimizer=momentum", "stages=[{epoch:3,beta1:0.95}]"],
            r"stages\[0\]\.beta1: beta1 is not a value this config takes mid-training \(it "
            r"takes lr, beta, l2\)",
        ),
        (["stages=[{epoch:3,momentum:0.9}]"], r"momentum is not a value this config takes"),
        (
            ["stages=[{epoch:3,beta2:1.0}]"],
            r"stages\[0\]\.beta2=1\.0 is not allowed: optimizer\.beta2 must be a number "
            r"in \[0, 1\)",
        ),
        (["stages=[{epoch:3,lr:true}]"], r"stages\[0\]\.lr=True is not allowed"),
        (["optimizer=adam", "stages=[{epoch:3,weight_decay:0.1}]"], r"weight_decay is not a"),
    ],
    ids=[
        "epoch_1",
        "same_epoch",
        "past_the_end",
        "fractional_epoch",
        "word_epoch",
        "no_epoch",
        "empty",
        "not_taken",
        "unknown",
        "out_of_range",
        "not_a_number",
        "not_adamw",
    ],
)
def test_stages_that_cannot_train_are_refused_naming_the_stage(
    cfg: Compose, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        validate(cfg(*overrides))
    assert e.value.fix


def test_pbt_refuses_stages_of_its_own(cfg: Compose) -> None:
    from hyperlab.pbt import check

    config = validate(cfg("sweep.schedule=pbt", "sweep.population=4", "stages=[{epoch:3,lr:0.1}]"))
    with pytest.raises(ConfigError, match="PBT makes each member's schedule itself"):
        check(config, [])


def test_the_override_reads_back_as_the_very_same_stages(cfg: Compose) -> None:
    stages = [
        Stage(6, {"lr": 0.9854954306708237, "optimizer.beta": 0.9524118990187478}),
        Stage(16, {"lr": 1.0, "optimizer.beta": 1 - 1e-05, "regularization.l2": 0.0}),
    ]
    line = override(stages)
    assert line == (
        "stages=[{epoch:6,lr:0.9854954306708237,beta:0.9524118990187478},"
        "{epoch:16,lr:1.0,beta:0.99999,l2:0.0}]"
    )
    config = validate(cfg("optimizer=momentum", "regularization=l2", "epochs=20", line))
    assert of_config(config) == stages


def test_the_header_line_names_the_stages(cfg: Compose) -> None:
    from hyperlab.display import header

    config = validate(cfg("epochs=20", "stages=[{epoch:6,lr:0.1},{epoch:16,lr:0.01}]"))
    line = header(config, {"model": "mlp", "dataset": "digits", "optimizer": "adam"})
    assert line.endswith("adam lr=0.001, 20 epochs, batch 64, stages from epochs 6, 16")


def test_spans_cover_the_epochs_left_with_the_values_in_force() -> None:
    stages = [Stage(3, {"lr": 0.2}), Stage(5, {"optimizer.beta1": 0.8}), Stage(9, {"lr": 0.5})]
    base = {"lr": 0.1, "optimizer.beta1": 0.9}
    assert spans(stages, base, 0, 8) == [
        (1, 2, {"lr": 0.1, "optimizer.beta1": 0.9}),
        (3, 4, {"lr": 0.2, "optimizer.beta1": 0.9}),
        (5, 8, {"lr": 0.2, "optimizer.beta1": 0.8}),
    ]
    # Resumed after epoch 3: the stage of epoch 3 is in force from the first epoch trained.
    assert spans(stages, base, 3, 8) == [
        (4, 4, {"lr": 0.2, "optimizer.beta1": 0.9}),
        (5, 8, {"lr": 0.2, "optimizer.beta1": 0.8}),
    ]


def test_the_optimizer_s_values_are_written_under_torch_s_names() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    adam = optim.adam(net.parameters(), lr=0.1)
    set_optimizer(adam, {"lr": 9.0, "optimizer.beta1": 0.8, "optimizer.beta2": 0.95})
    set_optimizer(adam, {"optimizer.eps": 1e-6})
    assert [(g["betas"], g["eps"], g["lr"]) for g in adam.param_groups] == [
        ((0.8, 0.95), 1e-6, 0.1)
    ]

    momentum = optim.momentum(net.parameters(), lr=0.1)
    set_optimizer(momentum, {"optimizer.beta": 0.5})
    assert momentum.param_groups[0]["beta"] == 0.5

    rmsprop = optim.rmsprop(net.parameters(), lr=0.1)
    set_optimizer(rmsprop, {"optimizer.beta": 0.5})
    assert rmsprop.param_groups[0]["alpha"] == 0.5

    adamw = optim.adamw(net.parameters(), lr=0.1)
    set_optimizer(adamw, {"optimizer.weight_decay": 0.3})
    decays = {tuple(p.ndim for p in g["params"]): g["weight_decay"] for g in adamw.param_groups}
    assert decays == {(2, 2): 0.3, (1, 1): 0.0}  # the biases stay undecayed
    assert isinstance(adamw, torch.optim.AdamW)
