"""Stages: hyperparameters that change at given epochs of one run.

`stages=[{epoch:11,lr:0.02,beta1:0.95},{epoch:21,lr:0.01}]` trains epochs 1-10 with the
config's own values, epochs 11-20 with lr 0.02 and beta1 0.95, and epochs 21 on with lr
0.01 (beta1 stays 0.95). It is how one model replays the schedule a population-based
training member followed (hyperlab.pbt): a PBT trial's replay line is its first values
and its stages. The schedule group still applies on top: an epoch's learning rate is the
stage's lr times the schedule's factor, as it is in a PBT population.

A stage may set what PBT may change: lr, the optimizer's beta, beta1, beta2, eps and
weight_decay, and l2 (regularization.l2). Torch-free: validation imports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hyperlab.errors import ConfigError

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from hyperlab.loop import Listener, Metrics
    from hyperlab.ranges import Range
    from hyperlab.schema import Config

# A stage's short name -> the override key it sets (the keys whose values a PBT population
# holds per member, and so may change mid-training).
KEYS = {
    "lr": "lr",
    "beta": "optimizer.beta",
    "beta1": "optimizer.beta1",
    "beta2": "optimizer.beta2",
    "eps": "optimizer.eps",
    "weight_decay": "optimizer.weight_decay",
    "l2": "regularization.l2",
}
SHORT = {key: name for name, key in KEYS.items()}
# Values: by override key ({"lr": 0.02, "optimizer.beta1": 0.95}).
Values = dict[str, float]


@dataclass(frozen=True)
class Stage:
    epoch: int  # the first epoch trained with these values
    values: Values


def check(plain: Mapping[str, Any], rules: Mapping[str, Range]) -> None:
    """Refuse stages that are not increasing epochs within training, or that set a value
    the config does not take (beta1 with optimizer=momentum) or out of its range."""
    stages, epochs = plain.get("stages") or [], int(plain.get("epochs", 0))
    last = 1
    for n, stage in enumerate(stages):
        where = f"stages[{n}]"
        epoch = stage.get("epoch")
        if not _whole(epoch) or not last < epoch <= epochs:
            raise ConfigError(
                f"{where}.epoch={epoch}: a stage starts at an epoch after the previous "
                f"stage's ({last}) and at most epochs={epochs}; epoch 1 trains the config's "
                "own values",
                "list stages by increasing epoch, e.g. stages=[{epoch:11,lr:0.01}]",
            )
        last = int(epoch)
        names = [k for k in stage if k != "epoch"]
        if not names:
            raise ConfigError(
                f"{where} sets nothing: a stage gives the values from its epoch on",
                f"add a value to it, e.g. {{epoch:{last},lr:0.01}}",
            )
        for name in names:
            _check_value(plain, rules, f"{where}.{name}", name, stage[name])


def _whole(v: Any) -> bool:
    return (
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v == int(v)
    )


def _check_value(
    plain: Mapping[str, Any], rules: Mapping[str, Range], where: str, name: str, value: Any
) -> None:
    key = KEYS.get(name)
    if key is None or not _takes(plain, key):
        takes = [n for n, k in KEYS.items() if _takes(plain, k)]
        raise ConfigError(
            f"{where}: {name} is not a value this config takes mid-training (it takes "
            f"{', '.join(takes)})",
            "set one of those in the stage (weight_decay needs optimizer=adamw; beta "
            "momentum or rmsprop; beta1, beta2 and eps adam or adamw)",
        )
    r = rules.get(key)
    if r is not None and not r.check(value):
        raise ConfigError(
            f"{where}={value!r} is not allowed: {key} must be {r.allowed}",
            f"e.g. {name}:{r.example}",
        )


def _takes(plain: Mapping[str, Any], key: str) -> bool:
    group, _, arg = key.rpartition(".")
    node = plain.get(group) if group else plain
    return isinstance(node, Mapping) and arg in node


def of_config(config: Config) -> list[Stage]:
    """The config's stages, by override key (validated: see check)."""
    return [
        Stage(int(s["epoch"]), {KEYS[k]: float(v) for k, v in s.items() if k != "epoch"})
        for s in config.stages
    ]


def override(stages: Sequence[Stage]) -> str:
    """The command-line override of these stages: `stages=[{epoch:11,lr:0.02}]`, each
    value in full (repr), so that a replay sets the very same numbers."""
    items = [
        "{"
        + ",".join([f"epoch:{s.epoch}", *(f"{SHORT[k]}:{v!r}" for k, v in s.values.items())])
        + "}"
        for s in stages
    ]
    return f"stages=[{','.join(items)}]"


def optimizer_values(config: Config) -> Values:
    """The config's own values of the optimizer's keys a stage may set (its betas, eps,
    weight decay), by override key."""
    node = config.optimizer
    return {
        key: float(node[arg])
        for key in KEYS.values()
        if (arg := key.removeprefix("optimizer.")) != key and arg in node
    }


def spans(
    stages: Sequence[Stage], base: Values, start: int, epochs: int
) -> list[tuple[int, int, Values]]:
    """(first epoch, last epoch, values in force) for epochs start + 1 to `epochs`."""
    bounds = [start + 1, *(s.epoch for s in stages if start + 1 < s.epoch <= epochs)]
    out = []
    for first, nxt in zip(bounds, [*bounds[1:], epochs + 1], strict=True):
        values = dict(base)
        for s in stages:
            if s.epoch <= first:
                values.update(s.values)
        out.append((first, nxt - 1, values))
    return out


def set_optimizer(optimizer: Optimizer, values: Mapping[str, float]) -> None:
    """Write the optimizer's values (optimizer.beta, beta1, beta2, eps, weight_decay) into
    its param groups, under torch's names (RMSprop's beta is its alpha, Adam's betas a
    pair). AdamW's weight decay applies to its group of weight matrices only."""
    for group in optimizer.param_groups:
        for key, v in values.items():
            arg = key.removeprefix("optimizer.")
            if key == arg:  # lr, l2: the loop's
                continue
            if arg in ("beta1", "beta2"):
                pair = list(group["betas"])
                pair[arg == "beta2"] = v
                group["betas"] = tuple(pair)
            elif arg == "beta":
                group["beta" if "beta" in group else "alpha"] = v
            elif arg == "weight_decay":
                if all(p.ndim >= 2 for p in group["params"]):
                    group["weight_decay"] = v
            else:
                group[arg] = v


Train = Callable[[Values, int, int, Sequence["Listener"]], list["Metrics"]]


def train_in_stages(
    stages: Sequence[Stage],
    base: Values,
    optimizer: Optimizer,
    train: Train,
    *,
    start: int,
    epochs: int,
    listeners: Sequence[Listener] = (),
    stop: Callable[[], bool] | None = None,
) -> list[Metrics]:
    """Epochs start + 1 to `epochs`, each span of one stage trained by `train(values,
    start, end, listeners)` (loop.fit from start + 1 to end) with its values in force; the
    listeners and the history hear the staged values beside the metrics (as a PBT member's
    run logs them). `stop` (early stopping, which the loop asks after each epoch) ends
    training within a span or at its end, before the next one trains an epoch."""
    staged = sorted({k for s in stages for k in s.values} - {"lr"})
    history: list[Metrics] = []
    for first, last, values in spans(stages, base, start, epochs):
        set_optimizer(optimizer, values)
        shown = {k: values[k] for k in staged}
        heard = [_Adding(listener, shown) for listener in listeners]
        got = train(values, first - 1, last, heard)
        history += [{**m, **shown} for m in got]
        if len(got) < last - first + 1 or (stop and stop()):
            break
    return history


@dataclass(frozen=True)
class _Adding:
    """A listener that hears the stage's values beside each epoch's metrics."""

    listener: Listener
    values: Mapping[str, float]

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> None:
        self.listener.on_epoch_end(epoch, {**metrics, **self.values})
