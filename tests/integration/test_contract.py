"""One contract over every optimizer x normalization x init: it builds from its config
files, steps, and overfits a tiny batch, or, for zeros, shows the symmetry it never breaks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyperlab.build import _instantiate, build_model
from hyperlab.validate import validate
from support.paths import Compose, group_options

LR = {"gd": 0.05, "momentum": 0.05, "rmsprop": 0.01, "adam": 0.01, "adamw": 0.01}


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 8, generator=g), torch.randint(0, 4, (16,), generator=g)


@pytest.mark.parametrize("init", group_options("init"))
@pytest.mark.parametrize("normalization", group_options("normalization"))
@pytest.mark.parametrize("optimizer", group_options("optimizer"))
def test_overfits_a_tiny_batch(cfg: Compose, optimizer: str, normalization: str, init: str) -> None:
    config = validate(
        cfg(
            f"optimizer={optimizer}",
            f"normalization={normalization}",
            f"init={init}",
            f"lr={LR[optimizer]}",
            "model.hidden_units=32",
        )
    )
    torch.manual_seed(0)
    model = build_model(config, n_features=8, n_classes=4)
    opt = _instantiate(config.optimizer)(model.parameters())
    x, y = tiny_batch()
    model.train()
    first = F.cross_entropy(model(x), y).item()
    for _ in range(300):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = model(x)
    acc = (logits.argmax(1) == y).float().mean().item()
    hidden = next(m for m in model if isinstance(m, nn.Linear))
    if init == "zeros":
        # Every hidden unit computes the same function and gets the same update: they
        # stay identical, so the network cannot fit the batch.
        assert torch.equal(hidden.weight, hidden.weight[:1].expand_as(hidden.weight))
        assert acc < 1.0
    else:
        assert torch.isfinite(logits).all()
        assert acc == 1.0, f"accuracy {acc:.2f} (cost {first:.3f} -> {loss.item():.3f})"
