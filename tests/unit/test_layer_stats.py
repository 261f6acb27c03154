"""diagnostics=layers: the statistics are what they say, and measuring them changes nothing
the training reads."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from hyperlab import init
from hyperlab.layer_stats import LayerStats, draw, key
from hyperlab.loop import fit
from hyperlab.models import MLP


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(300, 6, generator=g), torch.randint(0, 3, (300,), generator=g)


def mlp(seed: int = 0, **kw: object) -> MLP:
    torch.manual_seed(seed)
    return MLP(6, 3, hidden_units=8, layers=3, **kw)  # type: ignore[arg-type]


def test_the_statistics_are_the_layers_rms_measured_on_the_probe() -> None:
    model, (x, y) = mlp(keep_prob=0.5), data()
    model.train()
    logged: list[tuple[dict[str, float], int]] = []
    stats = LayerStats(model, x, y, lambda m, e: logged.append((dict(m), e)))
    # By hand, in eval mode (no dropout): a[l] after each ReLU, then the logits.
    model.eval()
    a, acts = x, []
    for module in model:
        a = module(a)
        if isinstance(module, torch.nn.ReLU):
            acts.append(a)
    acts.append(a)
    grads = torch.autograd.grad(F.cross_entropy(a, y), [w for w in model.weights])
    epoch, first = stats.history[0]
    assert epoch == 0 and first["update_ratio"] == []  # the start: no update yet
    assert first["act_rms"] == [float(t.detach().square().mean().sqrt()) for t in acts]
    assert first["grad_rms"] == [float(g.square().mean().sqrt()) for g in grads]
    model.train()
    stats.measure()
    assert model.training  # the mode it found is restored
    assert all(w.grad is None for w in model.weights)  # nothing left for the optimizer
    assert logged[0][1] == 0 and set(logged[0][0]) == {
        key(q, layer) for q in ("act_rms", "grad_rms") for layer in range(1, 5)
    }
    assert key("act_rms", 3) == "act_rms/layer_03"


def test_measuring_every_epoch_changes_no_metric_of_training() -> None:
    (x, y), dev = data(0), data(1)

    def train(listen: bool) -> tuple[list[dict[str, float]], LayerStats | None]:
        model = mlp(normalization=None, keep_prob=0.8)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        stats = LayerStats(model, x, y) if listen else None
        history = fit(
            model,
            opt,
            lambda e: 1.0,
            (x, y),
            dev,
            lr=0.01,
            epochs=4,
            batch_size=32,
            generator=torch.Generator().manual_seed(0),
            listeners=[stats] if stats else [],
        )
        return history, stats

    plain, _ = train(False)
    measured, stats = train(True)
    assert measured == plain  # bit for bit: the probe draws no random numbers, steps nothing
    assert stats is not None and [e for e, _ in stats.history] == [0, 1, 2, 3, 4]


def test_the_update_ratio_is_the_epoch_s_relative_change_of_the_weights() -> None:
    model, (x, y) = mlp(), data()
    stats = LayerStats(model, x, y)
    before = [w.detach().clone() for w in model.weights]
    with torch.no_grad():
        for w in model.weights:
            w.mul_(1.5)  # every weight moved by half its size
    stats.on_epoch_end(1, {})
    ratios = stats.history[1][1]["update_ratio"]
    assert ratios == [
        float(torch.linalg.norm(w.detach() - b) / torch.linalg.norm(b))
        for w, b in zip(model.weights, before, strict=True)
    ]
    assert all(math.isclose(r, 0.5, rel_tol=1e-6) for r in ratios)


def test_zeros_give_exact_zeros_large_weights_overflow_and_both_are_drawn(tmp_path: Path) -> None:
    x, y = data()
    zeros = init.zeros(mlp())
    assert isinstance(zeros, MLP)
    flat = LayerStats(zeros, x, y)
    assert flat.history[0][1]["act_rms"] == [0.0] * 4  # logits too: every unit is 0
    assert flat.history[0][1]["grad_rms"][:3] == [0.0] * 3
    big = init.random_large(MLP(6, 3, hidden_units=8, layers=12), scale=1e4)
    assert isinstance(big, MLP)
    blown = LayerStats(big, x, y)
    assert not math.isfinite(blown.history[0][1]["act_rms"][-1])  # inf, or inf - inf
    for stats in (flat, blown):
        stats.on_epoch_end(1, {})
        path = draw(stats.history, tmp_path / f"{id(stats)}.png", "title")
        assert path.stat().st_size > 10_000
