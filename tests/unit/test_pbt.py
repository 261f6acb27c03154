"""Population-based training's pieces with exact values: exploit copies a member's rows bit
for bit, explore moves values by exactly the factors on their scale, the quantiles pair
the worst with the best, and what PBT cannot do is refused before a study starts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import make_moons

from hyperlab import init, models, optim
from hyperlab.errors import ConfigError
from hyperlab.models import MLP
from hyperlab.pbt import PBT, copy_member, pairs, perturb
from hyperlab.population import Member, Population
from hyperlab.schedules import Constant
from hyperlab.search import names, setup
from hyperlab.search.space import Param
from hyperlab.validate import validate
from support.paths import Compose

LR = Param("lr", "float", 1e-4, 1.0, "log")
BETA = Param("optimizer.beta", "float", 0.9, 0.999, "one_minus_log")
B1 = Param("optimizer.beta1", "float", 0.8, 0.99, "one_minus_log")


def member(kind: str, lr: float, seed: int, **settings: float) -> Member:
    torch.manual_seed(seed)
    model = MLP(2, 2, [10, 5], normalization=models.batchnorm())
    init.he(model)
    return Member(
        model, getattr(optim, kind)(model.parameters(), lr=lr, **settings), Constant(), lr, seed
    )


def trained(kind: str, settings: list[dict[str, float]], steps: int = 5) -> Population:
    """A stack of members with different values, `steps` Adam or momentum steps into
    training, each on its own batches (so every row differs)."""
    pop = Population([member(kind, 0.01 * (i + 1), i, **s) for i, s in enumerate(settings)])
    x, y = make_moons(n_samples=256, noise=0.2, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    k = len(settings)
    for _ in range(steps):
        rows = torch.stack([torch.randperm(256, generator=g)[:32] for g in pop.shuffles])
        out = pop.forward(x[rows], train=True)
        F.cross_entropy(out.transpose(1, 2), y[rows], reduction="none").mean(1).sum().backward()
        pop.step(torch.tensor([m.lr for m in pop.members], dtype=torch.float64).view(k, 1, 1))
    return pop


def every_tensor(pop: Population) -> list[torch.Tensor]:
    out = [
        t
        for layer in pop.layers
        for d in (layer.params, layer.buffers, layer.settings)
        for t in d.values()
    ]
    return out + [t for s in pop.state for t in s.values()] + [*pop.opt.values(), pop.l2]


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("adam", [{"beta1": b, "beta2": 0.999, "eps": 1e-8} for b in (0.8, 0.85, 0.9, 0.95)]),
        ("momentum", [{"beta": b} for b in (0.8, 0.85, 0.9, 0.95)]),
    ],
)
def test_exploit_copies_every_row_bit_exactly(kind: str, settings: list[dict[str, float]]) -> None:
    pop = trained(kind, settings)
    before = [t.detach().clone() for t in every_tensor(pop)]
    assert not all(torch.equal(t[0], t[2]) for t in before)  # the rows differ before
    assert any("tracked" in layer.buffers for layer in pop.layers)  # batch norm's averages
    assert all(state for state in pop.state)  # the optimizer's v (and s)
    copy_member(pop, src=2, dst=0)
    for t, old in zip(every_tensor(pop), before, strict=True):
        assert torch.equal(t[0], old[2])  # member 0 is member 2, bit for bit
        for k in (1, 2, 3):
            assert torch.equal(t[k], old[k])  # the others are untouched
    assert pop.members[0].lr == pop.members[2].lr == 0.03
    # The copy trains on as its donor: one more step on the same batch keeps them equal.
    x = torch.randn(32, 2).expand(4, 32, 2)
    y = (x[..., 0] > 0).long()
    F.cross_entropy(pop.forward(x, train=True).transpose(1, 2), y, reduction="none").mean(
        1
    ).sum().backward()
    pop.step(torch.tensor([m.lr for m in pop.members], dtype=torch.float64).view(4, 1, 1))
    assert all(torch.equal(t[0], t[2]) for t in every_tensor(pop))


def test_explore_moves_by_exactly_the_factors_on_each_scale() -> None:
    assert perturb(LR, 0.01, 1.2) == 0.01 * 1.2
    assert perturb(LR, 0.01, 0.8) == 0.01 * 0.8
    assert perturb(LR, 0.9, 1.2) == 1.0  # clipped at high
    assert perturb(LR, 1.1e-4, 0.8) == 1e-4  # clipped at low
    assert perturb(BETA, 0.99, 1.2) == 1.0 - (1.0 - 0.99) * 1.2  # 1 - beta times 1.2
    assert perturb(BETA, 0.99, 0.8) == 1.0 - (1.0 - 0.99) * 0.8
    assert 1 - perturb(BETA, 0.99, 0.8) == pytest.approx(0.008, rel=1e-12)
    assert perturb(BETA, 0.92, 1.5) == 0.9  # 1 - beta = 0.12 is past 0.1: clipped
    assert perturb(BETA, 0.9985, 0.5) == 0.999
    linear = Param("regularization.l2", "float", 0.0, 10.0, "linear")
    assert perturb(linear, 5.0, 1.2) == 6.0
    assert perturb(linear, 9.0, 1.2) == 10.0
    units = Param("n", "int", 1, 100, "log")
    assert perturb(units, 10, 1.2) == 12 and perturb(units, 7, 1.2) == 8  # 8.4 rounds to 8
    assert isinstance(perturb(units, 7, 1.2), int)
    choice = Param("optimizer.eps", "categorical", choices=(1e-8, 1e-6))
    assert perturb(choice, 1e-8, 1.2) == 1e-8  # a categorical value is left alone


def test_the_bottom_quantile_copies_the_top_worst_from_best() -> None:
    scores = [0.5, 0.9, 0.1, 0.7, 0.3, 0.8, math.nan, 0.6]
    # Best first: 1, 5, 3, 7, 0, 4, 2, 6 (a NaN last); ceil(8 * 0.25) = 2 each side.
    assert pairs(scores, 0.25, maximize=True) == [(6, 1), (2, 5)]
    # A loss: 2, 4, 0, 7, 3, 5, 1, 6.
    assert pairs(scores, 0.25, maximize=False) == [(6, 2), (1, 4)]
    assert pairs(scores, 0.5, maximize=True) == [(6, 1), (2, 5), (4, 3), (0, 7)]
    assert pairs([0.2, 0.4], 0.25, maximize=True) == [(0, 1)]  # ceil(0.5) = 1
    assert pairs([0.2, 0.4, 0.3], 0.5, maximize=True) == [(0, 1)]  # at most K // 2
    assert pairs([0.5, 0.5, 0.5, 0.5], 0.25, maximize=True) == [(3, 0)]  # ties: by index
    assert pairs([0.7], 0.5, maximize=True) == []


def test_pbt_writes_the_perturbed_values_into_the_stack_every_interval() -> None:
    settings = [{"beta": b} for b in (0.9, 0.95, 0.99, 0.95)]
    pop = trained("momentum", settings, steps=1)
    initial = [
        {"lr": m.lr, "optimizer.beta": s["beta"]}
        for m, s in zip(pop.members, settings, strict=True)
    ]
    pbt = PBT([LR, BETA], initial, [10, 11, 12, 13], "dev_acc", True, 5, 0.25, [0.8, 1.2], seed=3)
    pbt.bind(pop.members)
    metrics = [{"dev_acc": a} for a in (0.6, 0.9, 0.7, 0.5)]
    pbt.after_epoch(4, pop, metrics)  # not an exploit epoch
    assert pbt.lineage == [[], [], [], []]
    assert pbt.values(pop, 0) == {"optimizer.beta": 0.9}
    pbt.after_epoch(5, pop, metrics)  # trial 13 (0.5) copies trial 11 (0.9)
    lr, beta = pop.members[3].lr, float(pop.opt["beta"][3])
    assert lr in (0.02 * 0.8, 0.02 * 1.2)
    assert beta in (1 - (1 - 0.95) * 0.8, 1 - (1 - 0.95) * 1.2)
    assert pbt.current[3] == {"lr": lr, "optimizer.beta": beta}
    assert pbt.values(pop, 3) == {"optimizer.beta": beta}
    assert pbt.lineage[3] == [
        f"epoch 5: dev_acc 0.5, copied trial 11 (dev_acc 0.9); lr 0.02→{lr:.4g}, "
        f"optimizer.beta 0.95→{beta:.4g}"
    ]
    assert pbt.lineage[:3] == [[], [], []]
    schedule = pbt.schedule(3, epochs=12)
    assert schedule["segments"] == [
        {"from_epoch": 1, "to_epoch": 5, "values": initial[3]},
        {
            "from_epoch": 6,
            "to_epoch": 12,
            "values": {"lr": lr, "optimizer.beta": beta},
            "copied_trial": 11,
            "copied_at_epoch": 5,
        },
    ]
    assert pbt.tags(0)["hyperlab.pbt.lineage"].startswith("never copied")
    # Its weights: trial 11's slot trained epochs 1-5, its own from 6 (its replay line).
    assert schedule["stages"] == [
        {"epoch": 1, "trained_by": 11, "values": initial[1]},
        {"epoch": 6, "trained_by": 13, "values": {"lr": lr, "optimizer.beta": beta}},
    ]
    # Epoch 10: trial 10, now the worst, copies trial 13, now the best: its weights went
    # through trial 11's slot, then 13's, then its own.
    pbt.after_epoch(10, pop, [{"dev_acc": a} for a in (0.4, 0.6, 0.7, 0.95)])
    assert pbt.stages(0)[:2] == pbt.stages(3)
    assert [(s["epoch"], s["trained_by"]) for s in pbt.schedule(0, 12)["stages"]] == [
        (1, 11),
        (6, 13),
        (11, 10),
    ]
    assert pbt.tags(0, lambda st: f"{len(st)} stages")["hyperlab.replay"] == "3 stages"
    too_long = pbt.tags(0, lambda st: "x" * 6000)["hyperlab.replay"]
    assert too_long.startswith("(too long for a tag: 6000 characters")


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["sweep.population=1"], "sweep.population=1"),
        (["sweep.population=8", "sweep.n_trials=4"], "below sweep.population"),
        (["search=optimizers"], "cannot change optimizer mid-training"),
        (["+search.params.batch_size={low:16,high:128}"], "cannot change batch_size"),
        (["pruner=median"], "a pruner"),
        (["early_stopping.patience=3"], "early_stopping.patience"),
        (["pbt.interval=20"], "no exploit"),
        (["pbt.perturb=[0.8,-1]"], "positive factors"),
    ],
)
def test_what_pbt_cannot_do_is_refused(cfg: Compose, overrides: list[str], says: str) -> None:
    base = [
        "search=lr_beta",
        "sweep.schedule=pbt",
        "sweep.population=4",
        "sweep.n_trials=8",
        *overrides,
    ]
    config = validate(cfg(*base))
    with pytest.raises(ConfigError, match=says) as e:
        setup.setup_of(config, base)
    assert e.value.fix  # the fix is named


def test_a_pbt_study_of_lr_and_beta_is_accepted(cfg: Compose) -> None:
    base = ["search=lr_beta", "sweep.schedule=pbt", "sweep.population=4", "sweep.n_trials=8"]
    assert [p.key for p in setup.setup_of(validate(cfg(*base)), base).params] == [
        "lr",
        "optimizer.beta",
    ]


def test_no_exploit_after_the_last_epoch_and_a_pbt_study_has_its_own_name() -> None:
    pop = trained("momentum", [{"beta": 0.9}] * 4, steps=1)
    pbt = PBT([LR], [{"lr": 0.01}] * 4, [0, 1, 2, 3], "dev_acc", True, 5, 0.25, [0.8], epochs=10)
    pbt.bind(pop.members)
    pbt.after_epoch(10, pop, [{"dev_acc": a} for a in (0.1, 0.2, 0.3, 0.4)])
    assert pbt.lineage == [[], [], [], []]
    assert names.study_name("lr_beta", ["sweep.schedule=pbt", "sweep.population=8"]) == (
        "lr_beta sweep.schedule:pbt"
    )
