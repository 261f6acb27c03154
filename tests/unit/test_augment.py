"""Data augmentation (hyperlab.augment): exact shifts, identities, seeded draws, training
batches only (dev, test and evaluation untouched), and in a stacked population."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hyperlab import augment
from hyperlab.augment import Noise, Shift, moved, rotated
from hyperlab.build import Parts, build
from hyperlab.errors import ConfigError
from hyperlab.loop import evaluate, fit
from hyperlab.population import Member, fit_population, groups
from hyperlab.run_population import member_of
from hyperlab.schedules import Constant
from hyperlab.validate import validate
from support.paths import Compose


def images(b: int = 5, side: int = 8) -> torch.Tensor:
    """[b, side*side] images whose every pixel is distinct and non-zero."""
    return torch.arange(1, b * side * side + 1, dtype=torch.float32).reshape(b, side * side)


def by_hand(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image [H, W] moved down dy and right dx pixels, zero filled, one pixel at a time."""
    h, w = image.shape
    out = torch.zeros_like(image)
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[i, j] = image[i - dy, j - dx]
    return out


def test_a_shifted_image_is_the_original_moved_by_exactly_the_drawn_offsets() -> None:
    x = images(40)
    out = Shift(8, 2, 0.0)(x, torch.Generator().manual_seed(3))
    drawn = Shift(8, 2, 0.0).offsets(40, torch.Generator().manual_seed(3))
    assert drawn.abs().max() == 2 and len({tuple(d) for d in drawn.tolist()}) > 5
    for b, (dy, dx) in enumerate(drawn.tolist()):
        want = by_hand(x[b].reshape(8, 8), dy, dx)
        assert torch.equal(out[b].reshape(8, 8), want), (b, dy, dx)


def test_moved_by_known_offsets() -> None:
    x = images(3).reshape(3, 8, 8)
    offsets = torch.tensor([[1, 0], [0, -1], [-2, 3]])
    out = moved(x, offsets)
    assert torch.equal(out[0, 1:], x[0, :-1]) and torch.equal(out[0, 0], torch.zeros(8))
    assert torch.equal(out[1, :, :-1], x[1, :, 1:]) and torch.equal(out[1, :, -1], torch.zeros(8))
    assert torch.equal(out[2], by_hand(x[2], -2, 3))


def test_rotations_are_exact_at_0_and_90_degrees() -> None:
    x = images(2).reshape(2, 8, 8)
    assert torch.allclose(rotated(x, torch.zeros(2)), x, atol=1e-4)
    quarter = rotated(x, torch.tensor([90.0, -90.0]))
    # 90 degrees maps the grid onto itself: the pixels only move (either way round).
    for b, k in ((0, 1), (1, -1)):
        assert any(torch.allclose(quarter[b], torch.rot90(x[b], s * k), atol=1e-3) for s in (1, -1))


def test_zero_shift_zero_rotation_and_zero_noise_are_the_identity() -> None:
    x, g = images(4), torch.Generator().manual_seed(0)
    assert torch.equal(Shift(8, 0, 0.0)(x, g), x)
    assert torch.equal(Noise(0.0)(x, g), x)
    # The builders skip the transform altogether: the loop runs as without augmentation.
    assert augment.shift(64, max_shift=0, max_degrees=0.0) is None
    assert augment.noise(2, std=0.0) is None
    assert augment.none(64) is None


def test_the_same_seed_gives_the_same_augmented_batches() -> None:
    x = images(16)
    for transform in (Shift(8, 1, 10.0), Noise(0.3)):
        a = [transform(x, g) for g in [torch.Generator().manual_seed(7)] * 3]
        b = [transform(x, g) for g in [torch.Generator().manual_seed(7)] * 3]
        other = transform(x, torch.Generator().manual_seed(8))
        assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
        assert not torch.equal(a[0], a[1])  # the stream moves on between batches
        assert not torch.equal(a[0], other)


def test_noise_has_the_asked_spread() -> None:
    x = torch.zeros(20000, 2)
    out = Noise(0.25)(x, torch.Generator().manual_seed(0))
    assert out.std().item() == pytest.approx(0.25, rel=0.02)
    assert abs(out.mean().item()) < 0.01


def test_shift_refuses_data_that_is_not_a_square_image() -> None:
    with pytest.raises(ConfigError) as e:
        augment.shift(2)
    assert "augment=shift needs image data such as dataset=digits (64 features = 8x8)" in (
        e.value.fix
    )
    assert "for tabular data use augment=noise" in e.value.fix
    with pytest.raises(ConfigError, match="out of view"):
        augment.shift(64, max_shift=8)
    assert isinstance(augment.shift(64), Shift)


# --- in the loop: training batches only --------------------------------------------------


class Spy:
    """Records the batches it is given; returns them unchanged (no random draw)."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        self.seen.append(x.clone())
        return x


def trained(cfg: Compose, *overrides: str, transform: object = "built") -> tuple[Parts, list]:  # type: ignore[type-arg]
    config = validate(cfg("epochs=3", *overrides))
    torch.manual_seed(config.seed)
    parts = build(config)
    data = parts.data
    history = fit(
        parts.model,
        parts.optimizer,
        parts.schedule,
        (data.x_train, data.y_train),
        (data.x_dev, data.y_dev),
        lr=config.lr,
        epochs=config.epochs,
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
        augment=parts.augment if transform == "built" else transform,  # type: ignore[arg-type]
    )
    return parts, history


def test_augmentation_never_touches_dev_or_test(cfg: Compose) -> None:
    config = validate(cfg("augment=noise"))
    data = build(config).data
    before = {s: tuple(t.clone() for t in data.split(s)) for s in ("train", "dev", "test")}
    # An identity that sees every batch: the loop is the plain one, metric for metric.
    spy = Spy()
    _, with_spy = trained(cfg, "augment=noise", transform=spy)
    _, plain = trained(cfg, "augment=none")
    assert with_spy == plain
    train_rows = {tuple(r) for r in data.x_train.tolist()}
    dev_rows = {tuple(r) for r in data.x_dev.tolist()}
    assert len(spy.seen) == 3 * -(-len(data.y_train) // 64)
    assert all(tuple(r) in train_rows for b in spy.seen for r in b.tolist())
    assert not any(tuple(r) in dev_rows for b in spy.seen for r in b.tolist())
    # Trained with real noise: every split's tensors are as they were, and the dev metrics
    # are those of the clean dev set under the final weights, evaluated as without augment.
    parts, noisy = trained(cfg, "augment=noise", "augment.std=0.5")
    for s in ("train", "dev", "test"):
        assert all(torch.equal(a, b) for a, b in zip(data.split(s), before[s], strict=True))
    twin = copy.deepcopy(parts.model)
    assert (noisy[-1]["dev_loss"], noisy[-1]["dev_acc"]) == evaluate(twin, *data.split("dev"))
    assert noisy != plain  # the noise did train the model differently


def test_shift_trains_digits_and_is_reproducible(cfg: Compose) -> None:
    a = trained(cfg, "augment=shift", "augment.max_degrees=10")[1]
    b = trained(cfg, "augment=shift", "augment.max_degrees=10")[1]
    plain = trained(cfg)[1]
    assert a == b and a != plain
    assert a[-1]["dev_acc"] > 0.5


# --- in a stacked population: each member's own transform and stream ----------------------


def test_augmented_members_train_as_their_runs_would(cfg: Compose) -> None:
    overrides = [
        ["seed=0", "augment=noise", "augment.std=0.3"],
        ["seed=1", "augment=none"],
        ["seed=2", "augment=noise", "augment.std=0.1", "lr=0.01"],
    ]
    configs = [validate(cfg("dataset=moons", "epochs=3", *o)) for o in overrides]
    assert len(groups(configs)) == 1  # one stack: caviar's stackable() is unchanged

    def built(config: object) -> tuple[Member, Parts]:
        torch.manual_seed(config.seed)  # type: ignore[attr-defined]
        parts = build(config)  # type: ignore[arg-type]
        return member_of(config, parts), parts  # type: ignore[arg-type]

    pairs = [built(c) for c in configs]
    data = pairs[0][1].data
    train, dev = (data.x_train, data.y_train), (data.x_dev, data.y_dev)
    results = fit_population([m for m, _ in pairs], train, dev, epochs=3, batch_size=64)
    for result in results:
        assert result.outcome == "complete"
    for config, result in zip(configs, results, strict=True):
        m, _ = built(config)
        want = fit(
            m.model,
            m.optimizer,
            Constant() if m.schedule is None else m.schedule,
            train,
            dev,
            lr=m.lr,
            epochs=3,
            batch_size=64,
            generator=torch.Generator().manual_seed(m.seed),
            augment=m.augment,
        )
        for g, w in zip(result.history, want, strict=True):
            for key in w:
                assert g[key] == pytest.approx(w[key], rel=1e-5, abs=1e-6), (config.seed, key)


def test_a_model_in_eval_mode_is_not_augmented() -> None:
    """evaluate() takes no transform at all: only fit's training batches are augmented."""
    model = nn.Linear(64, 10)
    x, y = images(8), torch.arange(8)
    assert evaluate(model, x, y) == evaluate(model, x.clone(), y)


def test_the_header_line_names_the_augment_when_one_is_on(cfg: Compose) -> None:
    from hyperlab.display import header
    from hyperlab.validate import validate

    config = validate(cfg("epochs=3"))
    choices = {"model": "mlp", "dataset": "digits", "optimizer": "adam"}
    off = header(config, {**choices, "augment": "none"})
    assert off == header(config, choices)  # the default line is today's
    assert "augment" not in off
    on = header(config, {**choices, "augment": "shift"})
    assert on == off + ", augment=shift"
