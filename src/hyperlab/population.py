"""Caviar in one process: K trials of one architecture trained as one stacked model.

Member k's parameters are row k of `[K, ...]` tensors (weights `[K, in, out]`), and every
mini-batch step runs all members at once with batched matrix products. The losses are
summed over members, so member k's gradient is exactly its own. What does not change a
tensor's shape may differ per member, as `[K, 1, 1]` tensors inside the course's update
rules: learning rate and schedule, the optimizer's betas, eps and weight decay, L2 lambda,
keep_prob, batch norm's eps and averaging coefficient, the initialization, the seed
(each member its own initialization, data order and dropout stream), and the data
augmentation (each member's batches through its own transform, drawn from its own stream).

Each member arrives as the trial alone would be built (its initialized MLP and its torch
optimizer, whose settings are read), so a member trains as the same trial trained alone by
hyperlab.loop.fit, up to float reduction order. A member that diverges, or whose listener
raises (a pruner's TrialPruned), leaves the stack at once: its rows are sliced out of every
parameter, running average and optimizer state, and its weights are written back into its
own MLP. Hydra-free, like hyperlab.loop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

from hyperlab.early_stopping import EarlyStopping
from hyperlab.loop import Diverged, Listener, Metrics
from hyperlab.models import MLP, dropout_seed
from hyperlab.optim import Momentum

if TYPE_CHECKING:
    from hyperlab.augment import Augment
    from hyperlab.schema import Config

F64 = torch.float64


@dataclass
class Member:
    """One trial of a population, built as it would be to train alone."""

    model: MLP  # initialized; receives the trained weights back
    optimizer: Optimizer  # the trial's own optimizer: read for its kind and settings
    schedule: Callable[[int], float]
    lr: float
    seed: int  # data order (as loop.fit's generator) and dropout stream
    l2: float = 0.0
    listeners: Sequence[Listener] = ()
    # Early stopping: also among the listeners; it reads the member's weights each epoch.
    stopper: EarlyStopping | None = None
    augment: Augment | None = None  # its training batches' transform, from its data order's stream


@dataclass
class MemberResult:
    """How a member ended: complete, diverged, or stopped by its listener (`error`)."""

    history: list[Metrics] = field(default_factory=list)
    outcome: str = "complete"
    error: BaseException | None = None


class EpochHook(Protocol):
    """Changes the stack between epochs (hyperlab.pbt): what it adds to a member's metrics,
    and what it does after an epoch's listeners, to the members still training."""

    def values(self, pop: Population, k: int) -> Metrics: ...

    def after_epoch(self, epoch: int, pop: Population, metrics: Sequence[Metrics]) -> None: ...


def optimizer_settings(opt: Optimizer) -> tuple[str, dict[str, float]]:
    """(kind, settings) of one of hyperlab.optim's optimizers."""
    group = opt.param_groups[0]
    if isinstance(opt, Momentum):
        return "momentum", {"beta": group["beta"]}
    if isinstance(opt, torch.optim.AdamW):  # before Adam: AdamW may subclass it
        decay = max(g["weight_decay"] for g in opt.param_groups)
        b1, b2 = group["betas"]
        return "adamw", {"beta1": b1, "beta2": b2, "eps": group["eps"], "weight_decay": decay}
    if isinstance(opt, torch.optim.Adam) and not group["weight_decay"] and not group["amsgrad"]:
        b1, b2 = group["betas"]
        return "adam", {"beta1": b1, "beta2": b2, "eps": group["eps"]}
    if isinstance(opt, torch.optim.RMSprop) and not group["momentum"] and not group["centered"]:
        return "rmsprop", {"beta": group["alpha"], "eps": group["eps"]}
    if isinstance(opt, torch.optim.SGD) and not group["momentum"] and not group["weight_decay"]:
        return "gd", {}
    raise ValueError(f"a population cannot train with {type(opt).__name__}")


def structure(model: MLP) -> tuple[tuple[object, ...], ...]:
    """What must be equal for two models to share a stack: layer kinds, shapes, activation."""
    out: list[tuple[object, ...]] = []
    for m in model:
        if isinstance(m, nn.Linear):
            out.append(("linear", m.in_features, m.out_features, m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d | nn.LayerNorm | nn.Dropout):
            out.append((type(m).__name__,))
        else:
            out.append(("activation", type(m).__name__, getattr(m, "negative_slope", None)))
    return tuple(out)


def _column(
    values: Sequence[float], device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Per-member values as a [K, 1, 1] tensor: broadcasts over any stacked parameter."""
    return torch.tensor(values, dtype=dtype, device=device).view(-1, 1, 1)


_KIND = {nn.Linear: "linear", nn.BatchNorm1d: "batchnorm", nn.LayerNorm: "layernorm"}


class _Layer:
    """One layer of the stack: its kind, its stacked tensors, its per-member settings."""

    def __init__(self, modules: Sequence[nn.Module], device: torch.device) -> None:
        first = modules[0]
        self.kind = _KIND.get(type(first), "dropout" if isinstance(first, nn.Dropout) else "act")
        self.act = first
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self.settings: dict[str, torch.Tensor] = {}

        def stack(name: str, transpose: bool = False) -> torch.Tensor:
            rows = [getattr(m, name).detach() for m in modules]
            rows = [r.T if transpose else r.unsqueeze(0) for r in rows]
            return torch.stack(rows).to(device, copy=True)

        def column(name: str) -> torch.Tensor:
            return _column([float(getattr(m, name)) for m in modules], device)

        if self.kind == "linear":
            self.params["weight"] = stack("weight", transpose=True)  # [K, in, out]
            if first.bias is not None:
                self.params["bias"] = stack("bias")  # [K, 1, out]
        elif self.kind in ("batchnorm", "layernorm"):
            self.params["weight"], self.params["bias"] = stack("weight"), stack("bias")
            self.settings["eps"] = column("eps")
        if self.kind == "batchnorm":
            self.buffers["mean"], self.buffers["var"] = stack("running_mean"), stack("running_var")
            self.buffers["tracked"] = stack("num_batches_tracked")
            # torch's momentum weighs the new batch: 1 - the course's running_beta
            self.settings["momentum"] = column("momentum")
        if self.kind == "dropout":
            self.settings["keep"] = _column([1.0 - float(m.p) for m in modules], device)  # type: ignore[arg-type]

    def forward(
        self, a: torch.Tensor, train: bool, gens: Sequence[torch.Generator]
    ) -> torch.Tensor:
        p, s = self.params, self.settings
        if self.kind == "linear":
            if "bias" in p:
                return torch.baddbmm(p["bias"], a, p["weight"])
            return torch.bmm(a, p["weight"])
        if self.kind == "batchnorm":
            if train:  # each member over its own mini-batch
                mean = a.mean(1, keepdim=True)
                var = a.var(1, unbiased=False, keepdim=True)
                with torch.no_grad():  # as torch: the running variance is the unbiased one
                    n = a.shape[1]
                    self.buffers["tracked"] += 1
                    self.buffers["mean"].lerp_(mean, s["momentum"])
                    self.buffers["var"].lerp_(var * (n / max(n - 1, 1)), s["momentum"])
            else:  # at test time: the exponentially weighted averages
                mean, var = self.buffers["mean"], self.buffers["var"]
            return (a - mean) * torch.rsqrt(var + s["eps"]) * p["weight"] + p["bias"]
        if self.kind == "layernorm":
            mean = a.mean(-1, keepdim=True)
            var = a.var(-1, unbiased=False, keepdim=True)
            return (a - mean) * torch.rsqrt(var + s["eps"]) * p["weight"] + p["bias"]
        if self.kind == "dropout":
            if not train:
                return a
            # Inverted dropout, each member's mask from its own stream.
            noise = torch.stack(
                [torch.rand(a.shape[1:], generator=g, device=a.device) for g in gens]
            )
            return a * (noise < s["keep"]) / s["keep"]
        return self.act(a)  # type: ignore[no-any-return]

    def keep(self, rows: torch.Tensor) -> None:
        for d in (self.params, self.buffers, self.settings):
            for k, t in d.items():
                d[k] = t[rows].detach().requires_grad_(t.requires_grad)

    @torch.no_grad()
    def write_back(self, k: int, module: nn.Module) -> None:
        targets = {
            "weight": "weight",
            "bias": "bias",
            "mean": "running_mean",
            "var": "running_var",
            "tracked": "num_batches_tracked",
        }
        for name, t in [*self.params.items(), *self.buffers.items()]:
            row = t[k].T if self.kind == "linear" and name == "weight" else t[k, 0]
            row = row.squeeze(0) if name == "tracked" else row
            getattr(module, targets[name]).copy_(row)


class Population:
    """K members' MLPs as one stacked network with the course's optimizers, per member."""

    def __init__(self, members: Sequence[Member], device: torch.device | str = "cpu") -> None:
        if not members:
            raise ValueError("a population needs at least one member")
        if len({structure(m.model) for m in members}) > 1:
            raise ValueError("the members of a population must share one architecture")
        settings = [optimizer_settings(m.optimizer) for m in members]
        if len({kind for kind, _ in settings}) > 1:
            raise ValueError("the members of a population must share one optimizer kind")
        self.device = torch.device(device)
        self.members = list(members)
        self.kind = settings[0][0]
        modules = zip(*(list(m.model) for m in members), strict=True)
        self.layers = [_Layer(mods, self.device) for mods in modules]
        for p in self.params:
            p.requires_grad_(True)
        # Kept in double, as torch.optim computes them from Python floats: 1 - beta2 and
        # the bias corrections lose their precision in float32 (1 - 0.999 is off by 6e-5).
        self.opt = {
            key: _column([s[key] for _, s in settings], self.device, F64) for key in settings[0][1]
        }
        self.l2 = torch.tensor([m.l2 for m in members], device=self.device)
        self.has_l2 = any(m.l2 for m in members)  # known without a device sync
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]
        self.steps = 0
        self.shuffles = [torch.Generator().manual_seed(m.seed) for m in members]
        # Dropout's stream: seeded by the member's seed, apart from its data order's.
        self.noise = [
            torch.Generator(device=self.device).manual_seed(dropout_seed(m.seed)) for m in members
        ]

    @property
    def params(self) -> list[torch.Tensor]:
        return [t for layer in self.layers for t in layer.params.values()]

    def decays(self) -> list[bool]:
        """Per parameter: is it a weight matrix (L2 and AdamW's decay apply to those only)."""
        return [
            layer.kind == "linear" and n == "weight" for layer in self.layers for n in layer.params
        ]

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """Logits [K, B, classes] for inputs [K, B, features]."""
        for layer in self.layers:
            x = layer.forward(x, train, self.noise)
        return x

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update of every member in the course's forms, computed as hyperlab.optim and
        torch.optim compute them, with per-member settings; `lr` is [K, 1, 1] in double."""
        self.steps += 1
        o, t, kind = self.opt, self.steps, self.kind
        rate = lr.float()
        f32 = {k: v.float() for k, v in o.items()}
        if kind in ("momentum", "rmsprop"):
            new = (1.0 - o["beta"]).float()  # the weight of the new gradient
        if kind in ("adam", "adamw"):
            new1, new2 = (1.0 - o["beta1"]).float(), (1.0 - o["beta2"]).float()
            step = (lr / (1.0 - o["beta1"] ** t)).float()  # lr / bias correction of v
            root = torch.sqrt(1.0 - o["beta2"] ** t).float()  # sqrt of s's
            decay = (1.0 - lr * o.get("weight_decay", torch.zeros_like(lr))).float()
        for p, state, is_weight in zip(self.params, self.state, self.decays(), strict=True):
            g = p.grad
            assert g is not None
            if kind == "gd":
                p.sub_(rate * g)
            elif kind == "momentum":  # v = beta v + (1 - beta) dW;  W -= lr v
                v = state.setdefault("v", torch.zeros_like(p))
                v.lerp_(g, new)
                p.sub_(rate * v)
            elif kind == "rmsprop":  # s = beta s + (1 - beta) dW^2;  W -= lr dW / (sqrt(s) + eps)
                s = state.setdefault("s", torch.zeros_like(p))
                s.mul_(f32["beta"]).addcmul_(g, g * new)
                p.sub_(rate * g / (s.sqrt() + f32["eps"]))
            else:  # adam: W -= lr v_hat / (sqrt(s_hat) + eps); adamw decays W first
                if kind == "adamw" and is_weight:
                    p.mul_(decay)
                v = state.setdefault("v", torch.zeros_like(p))
                s = state.setdefault("s", torch.zeros_like(p))
                v.lerp_(g, new1)
                s.mul_(f32["beta2"]).addcmul_(g, g * new2)
                p.sub_(step * v / (s.sqrt() / root + f32["eps"]))
            p.grad = None

    def keep(self, rows: list[int]) -> None:
        """Only members `rows` (indices into the current stack) go on."""
        index = torch.tensor(rows, device=self.device)
        for layer in self.layers:
            layer.keep(index)
        self.state = [{k: v[index] for k, v in s.items()} for s in self.state]
        self.opt = {k: v[index] for k, v in self.opt.items()}
        self.l2 = self.l2[index]
        self.has_l2 = any(self.members[i].l2 for i in rows)
        self.members = [self.members[i] for i in rows]
        self.shuffles = [self.shuffles[i] for i in rows]
        self.noise = [self.noise[i] for i in rows]

    def write_back(self, k: int) -> None:
        """Copy member k's parameters and running averages into its own MLP."""
        for layer, module in zip(self.layers, self.members[k].model, strict=True):
            layer.write_back(k, module)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member (cross-entropy, accuracy) in eval mode, as tensors [K]."""
        k = len(self.members)
        logits = self.forward(x.expand(k, *x.shape), train=False)
        target = y.expand(k, *y.shape)
        loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1)
        return loss, (logits.argmax(2) == target).sum(1) / len(y)


def fit_population(
    members: Sequence[Member],
    train: tuple[torch.Tensor, torch.Tensor],
    dev: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    start_epoch: int = 0,
    hook: EpochHook | None = None,
) -> list[MemberResult]:
    """Train every member from epoch start_epoch + 1 to `epochs` (counted from 1) as one
    stack; per member, the per-epoch metrics hyperlab.loop.fit would give and how it ended.
    Each member's trained weights are written back into its model, as they were at its
    last epoch. A `hook` hears every epoch's end, after the listeners."""
    x, y = train
    pop = Population(members, x.device)
    results = {id(m): MemberResult() for m in members}
    m = len(y)
    has_bn = any(layer.kind == "batchnorm" for layer in pop.layers)
    n = m - 1 if has_bn and m % batch_size == 1 else m  # as loop.fit: no lone last example
    sizes = torch.tensor(
        [min(batch_size, n - i) for i in range(0, n, batch_size)], dtype=x.dtype, device=x.device
    )
    for epoch in range(start_epoch + 1, epochs + 1):
        rates = [mem.lr * mem.schedule(epoch) for mem in pop.members]
        lr = _column(rates, pop.device, F64)
        perms = torch.stack([torch.randperm(m, generator=g) for g in pop.shuffles]).to(x.device)
        xs, ys = x[perms], y[perms]  # [K, m, features]: each member in its own order
        weights = [p for p, w in zip(pop.params, pop.decays(), strict=True) if w]
        augmenting = any(mem.augment for mem in pop.members)  # members leave between epochs
        losses, correct = [], []
        for i in range(0, n, batch_size):
            xb, yb = xs[:, i : i + batch_size], ys[:, i : i + batch_size]
            if augmenting:
                xb = _augmented(xb, pop.members, pop.shuffles)
            out = pop.forward(xb, train=True)
            loss = F.cross_entropy(out.transpose(1, 2), yb, reduction="none").mean(1)
            if pop.has_l2:  # lambda / (2m) * sum of ||W||^2, per member
                loss = loss + pop.l2 / (2.0 * m) * sum(w.square().sum((1, 2)) for w in weights)
            loss.sum().backward()  # member k's gradient is its own loss's
            pop.step(lr)
            losses.append(loss.detach())
            correct.append((out.detach().argmax(2) == yb).sum(1))
        # Reduced on the device, synchronised once per epoch.
        train_loss = (sizes @ torch.stack(losses) / n).tolist()
        train_acc = (torch.stack(correct).sum(0) / n).tolist()
        dev_loss, dev_acc = (t.tolist() for t in pop.evaluate(*dev))
        going: list[int] = []
        for k, mem in enumerate(pop.members):
            result = results[id(mem)]
            if not math.isfinite(train_loss[k]):
                result.outcome, result.error = "diverged", Diverged(epoch, train_loss[k])
                pop.write_back(k)
                continue
            metrics = {
                "train_loss": train_loss[k],
                "train_acc": train_acc[k],
                "dev_loss": dev_loss[k],
                "dev_acc": dev_acc[k],
                "lr": rates[k],
                **(hook.values(pop, k) if hook else {}),
            }
            result.history.append(metrics)
            if mem.stopper:
                pop.write_back(k)  # its weights, for the copy of the best epoch's
            try:
                for listener in mem.listeners:
                    listener.on_epoch_end(epoch, metrics)
            except Exception as e:  # a pruner's TrialPruned, or a listener that failed
                result.outcome, result.error = "stopped", e
                pop.write_back(k)
                continue
            if mem.stopper and mem.stopper.stopping:
                continue  # complete, its weights written back above
            going.append(k)
        if len(going) < len(pop.members):
            if not going:
                break
            pop.keep(going)
        if hook:
            hook.after_epoch(epoch, pop, [results[id(mem)].history[-1] for mem in pop.members])
    for k in range(len(pop.members)):
        pop.write_back(k)
    return [results[id(mem)] for mem in members]


def _augmented(
    xb: torch.Tensor, members: Sequence[Member], streams: Sequence[torch.Generator]
) -> torch.Tensor:
    """Each member's batch [K, B, features] through its own transform, drawn from its own
    data order's stream as loop.fit draws it: a member sees the batches it would alone."""
    return torch.stack(
        [
            mem.augment(xb[k], g) if mem.augment else xb[k]
            for k, (mem, g) in enumerate(zip(members, streams, strict=True))
        ]
    )


# What must be equal for trials to train in one stack: shapes, data and its order's length,
# the loop's structure. Learning rate, betas, eps, weight decay, L2, keep_prob's value,
# batch norm's eps and beta, the schedule, the initialization, the seed and the augment may
# differ (each member's batches go through its own transform).
SHARED_KEYS = ("dataset", "model", "batch_size", "epochs", "threads", "checkpoint", "device")


def group_key(config: Config) -> str:
    """Trials with equal keys can be members of one population (a resolved config)."""
    shared = {k: getattr(config, k, None) for k in SHARED_KEYS}
    shared["normalization"] = config.normalization.get("kind")
    shared["optimizer"] = config.optimizer.get("_target_")
    shared["dropout"] = config.regularization["keep_prob"] < 1  # a layer, or none
    return json.dumps(shared, sort_keys=True, default=str)


def groups(configs: Sequence[Config]) -> list[list[int]]:
    """Indices of `configs` grouped by group_key, in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        out.setdefault(group_key(config), []).append(i)
    return list(out.values())
