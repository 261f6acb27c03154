"""A population member trains as the same trial trained alone (hyperlab.loop.fit)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from sklearn.datasets import make_moons

from hyperlab import init, models, optim
from hyperlab.build import Parts, build
from hyperlab.loop import Diverged, Metrics, fit
from hyperlab.models import MLP
from hyperlab.population import Member, Population, fit_population, groups, structure
from hyperlab.run_population import member_of
from hyperlab.schedules import Constant, InverseTime
from hyperlab.validate import validate
from support.paths import Compose

Data = tuple[torch.Tensor, torch.Tensor]


def moons() -> tuple[Data, Data]:
    x, y = make_moons(n_samples=400, noise=0.2, random_state=0)
    xt = torch.tensor(x, dtype=torch.float32)
    xt = (xt - xt[:280].mean(0)) / xt[:280].std(0)
    yt = torch.tensor(y)
    return (xt[:280], yt[:280]), (xt[280:], yt[280:])


TRAIN, DEV = moons()
SETTINGS: dict[str, dict[str, float]] = {
    "gd": {},
    "momentum": {"beta": 0.9},
    "rmsprop": {"beta": 0.9, "eps": 1e-8},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
}


def member(
    kind: str,
    lr: float,
    seed: int,
    *,
    normalization: str = "none",
    l2: float = 0.0,
    keep_prob: float = 1.0,
    schedule: Any = None,
    **settings: float,
) -> Member:
    """The trial as hyperlab builds it: seeded, initialized, its own optimizer."""
    torch.manual_seed(seed)
    norm = getattr(models, normalization)()  # the function conf/normalization/<name> names
    model = MLP(2, 2, [10, 5], normalization=norm, keep_prob=keep_prob)
    init.he(model)
    models.seed_dropout(model, seed)  # as build() does
    opt = getattr(optim, kind)(model.parameters(), lr=lr, **{**SETTINGS[kind], **settings})
    return Member(model, opt, schedule or Constant(), lr=lr, seed=seed, l2=l2)


def alone(m: Member, epochs: int, batch_size: int = 64) -> list[Metrics]:
    return fit(
        m.model,
        m.optimizer,
        m.schedule,
        TRAIN,
        DEV,
        lr=m.lr,
        epochs=epochs,
        batch_size=batch_size,
        l2=m.l2,
        weights=m.model.weights,
        generator=torch.Generator().manual_seed(m.seed),
    )


def assert_same(got: list[Metrics], want: list[Metrics]) -> None:
    assert len(got) == len(want)
    for epoch, (g, w) in enumerate(zip(got, want, strict=True)):
        for key in w:
            assert math.isclose(g[key], w[key], rel_tol=1e-5, abs_tol=1e-6), (epoch, key, g, w)


@pytest.mark.parametrize("normalization", ["none", "batchnorm", "layernorm"])
@pytest.mark.parametrize("kind", list(SETTINGS))
def test_a_member_trains_as_the_trial_alone(kind: str, normalization: str) -> None:
    lrs = [0.003, 0.03, 0.3] if kind != "gd" else [0.05, 0.2, 0.5]
    build = [
        dict(kind=kind, lr=lr, seed=seed, normalization=normalization)
        for lr, seed in zip(lrs, [0, 1, 2], strict=True)
    ]
    results = fit_population([member(**b) for b in build], TRAIN, DEV, epochs=6, batch_size=64)
    for b, result in zip(build, results, strict=True):
        assert result.outcome == "complete"
        assert_same(result.history, alone(member(**b), epochs=6))


def test_mixed_learning_rates_betas_l2_schedules_and_seeds() -> None:
    build: list[dict[str, Any]] = [
        dict(kind="adam", lr=0.01, seed=0, beta1=0.8, beta2=0.99, l2=0.0),
        dict(kind="adam", lr=0.002, seed=7, beta1=0.95, beta2=0.9999, l2=0.7),
        dict(kind="adam", lr=0.05, seed=7, beta1=0.9, beta2=0.999, eps=1e-4, l2=3.0),
        dict(kind="adam", lr=0.02, seed=3, schedule=InverseTime(1.0), l2=0.1),
    ]
    for normalization in ("none", "batchnorm"):
        members = [member(normalization=normalization, **b) for b in build]
        results = fit_population(members, TRAIN, DEV, epochs=8, batch_size=32)
        for b, result in zip(build, results, strict=True):
            assert_same(result.history, alone(member(normalization=normalization, **b), 8, 32))


def test_trained_weights_are_written_back_and_evaluate_as_alone() -> None:
    from hyperlab.loop import evaluate

    build = [dict(kind="momentum", lr=0.1, seed=s, normalization="batchnorm") for s in (0, 1)]
    members = [member(**b) for b in build]
    fit_population(members, TRAIN, DEV, epochs=4, batch_size=64)
    for b, m in zip(build, members, strict=True):
        ref = member(**b)
        alone(ref, 4)
        for (name, got), want in zip(
            m.model.state_dict().items(), ref.model.state_dict().values(), strict=True
        ):
            assert torch.allclose(got.float(), want.float(), rtol=1e-4, atol=1e-6), name
        assert evaluate(m.model, *DEV) == pytest.approx(evaluate(ref.model, *DEV), rel=1e-5)


class StopAt:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> None:
        if epoch == self.epoch:
            raise RuntimeError("pruned")


def test_a_stopped_or_diverged_member_leaves_and_the_rest_go_on() -> None:
    build = [dict(kind="gd", lr=lr, seed=s) for lr, s in [(0.1, 0), (0.2, 1), (1e30, 2), (0.3, 3)]]
    members = [member(**b) for b in build]
    members[1].listeners = [StopAt(3)]
    results = fit_population(members, TRAIN, DEV, epochs=6, batch_size=64)
    assert [r.outcome for r in results] == ["complete", "stopped", "diverged", "complete"]
    assert len(results[1].history) == 3 and str(results[1].error) == "pruned"
    assert isinstance(results[2].error, Diverged)
    for i in (0, 3):  # the survivors train exactly as if the others were never there
        assert_same(results[i].history, alone(member(**build[i]), 6))
    stopped = member(**build[1])
    assert_same(results[1].history, alone(stopped, 3))


@pytest.mark.parametrize("normalization", ["none", "batchnorm"])
def test_a_member_with_dropout_trains_as_the_trial_alone(normalization: str) -> None:
    """Alone, a trial's dropout draws from its own stream, seeded as the stack seeds the
    member's: the same masks, so the same training (to float rounding)."""
    build = [
        dict(kind="adam", lr=0.01, seed=0, keep_prob=0.5),
        dict(kind="adam", lr=0.02, seed=1, keep_prob=0.8),
        dict(kind="momentum", lr=0.1, seed=0, keep_prob=0.7, l2=0.3),
    ]
    kinds = {b["kind"] for b in build}
    for kind in kinds:
        same = [b for b in build if b["kind"] == kind]
        results = fit_population(
            [member(normalization=normalization, **b) for b in same],
            TRAIN,
            DEV,
            epochs=6,
            batch_size=64,
        )
        for b, result in zip(same, results, strict=True):
            assert_same(result.history, alone(member(normalization=normalization, **b), 6))


def test_dropout_masks_keep_each_members_rate_from_its_own_stream() -> None:
    members = [member("gd", 0.1, seed, keep_prob=keep) for seed, keep in [(0, 0.5), (1, 0.8)]]
    pop = Population(members)
    x = torch.ones(2, 4000, 2)
    first = pop.layers[0].forward(x, True, pop.noise)  # the first Linear layer's output
    hidden = pop.layers[1].forward(first, True, pop.noise)
    dropped = pop.layers[2].forward(hidden, True, pop.noise)
    active = hidden > 0
    kept = (dropped[active] != 0).float()
    rates = [kept[: active[0].sum()].mean().item(), kept[active[0].sum() :].mean().item()]
    assert rates[0] == pytest.approx(0.5, abs=0.02)
    assert rates[1] == pytest.approx(0.8, abs=0.02)
    # inverted: kept units are scaled by 1/keep_prob
    ratio = dropped[0][active[0]] / hidden[0][active[0]]
    assert set(torch.unique(ratio).round(decimals=4).tolist()) <= {0.0, 2.0}
    # a member's masks come from its own seeded stream: the same seed, the same masks
    again = Population([member("gd", 0.1, 0, keep_prob=0.5)])
    masks = again.layers[2].forward(torch.ones(1, 4000, 5), True, again.noise)
    fresh = Population([member("gd", 0.1, 0, keep_prob=0.5)])
    assert torch.equal(masks, fresh.layers[2].forward(torch.ones(1, 4000, 5), True, fresh.noise))


def test_members_of_different_structure_are_refused() -> None:
    a = member("adam", 0.01, 0)
    torch.manual_seed(0)
    wider = MLP(2, 2, [20, 5])
    b = Member(wider, optim.adam(wider.parameters(), lr=0.01), Constant(), lr=0.01, seed=0)
    assert structure(a.model) != structure(b.model)
    with pytest.raises(ValueError, match="architecture"):
        Population([a, b])
    with pytest.raises(ValueError, match="optimizer"):
        Population([a, member("gd", 0.1, 0)])


# --- trials from configs: which may share a stack, and built as hyperlab builds them ------


def test_trials_that_differ_only_in_what_a_stack_allows_share_a_group(cfg: Compose) -> None:
    base = ["dataset=moons", "optimizer=adam", "regularization=dropout", "epochs=3"]
    same = [
        [],
        ["lr=0.3"],
        ["optimizer.beta1=0.8", "optimizer.eps=1e-4"],
        ["regularization.l2=0.7", "regularization.keep_prob=0.5"],
        ["init=xavier"],
        ["schedule=inverse_time"],
        ["seed=5"],
    ]
    apart = [
        ["model.hidden_units=64"],
        ["optimizer=rmsprop"],
        ["normalization=batchnorm"],
        ["batch_size=32"],
        ["epochs=4"],
        ["dataset=circles"],
        ["regularization=none"],  # no dropout layer at all
    ]
    configs = [validate(cfg(*base, *o)) for o in [*same, *apart]]
    assert groups(configs) == [list(range(len(same)))] + [
        [len(same) + i] for i in range(len(apart))
    ]


def test_members_built_from_configs_train_as_their_runs_would(cfg: Compose) -> None:
    """Built as run() builds a trial (seed, build()), trained in one stack, each member
    matches loop.fit on its own build, optimizer factories and schedules included."""
    overrides = [
        ["lr=0.01", "seed=0"],
        ["lr=0.05", "seed=1", "optimizer.beta1=0.8", "schedule=inverse_time"],
        ["lr=0.002", "seed=2", "regularization=l2", "init=xavier"],
    ]
    base = ["dataset=moons", "optimizer=adam", "normalization=batchnorm", "epochs=3"]
    configs = [validate(cfg(*base, *o)) for o in overrides]
    assert len(groups(configs)) == 1

    def built(config: dict[str, Any]) -> tuple[Member, Parts]:
        torch.manual_seed(config.seed)
        parts = build(config)
        return member_of(config, parts), parts

    pairs = [built(c) for c in configs]
    data = pairs[0][1].data
    train, dev = (data.x_train, data.y_train), (data.x_dev, data.y_dev)
    results = fit_population([m for m, _ in pairs], train, dev, epochs=3, batch_size=64)
    for config, result in zip(configs, results, strict=True):
        member, _ = built(config)
        want = fit(
            member.model,
            member.optimizer,
            member.schedule,
            train,
            dev,
            lr=member.lr,
            epochs=3,
            batch_size=64,
            l2=member.l2,
            weights=member.model.weights,
            generator=torch.Generator().manual_seed(member.seed),
        )
        assert_same(result.history, want)


def test_trial_numbers_are_said_as_runs() -> None:
    from hyperlab.search.caviar import spans

    assert spans([5, 0, 1, 2, 7, 8]) == "0-2, 5, 7-8"
    assert spans([3]) == "3"
