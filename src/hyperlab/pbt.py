"""Population-based training: babysitting many pandas at once (Jaderberg et al. 2017, as
Ray Tune's PopulationBasedTraining does it), on a stacked population (hyperlab.population).

The K members start from the values the study's sampler drew. Every `interval` epochs they
are ranked by the objective's metric on dev, and each member of the bottom `quantile`
*exploits* one of the top `quantile`: the j-th worst copies the j-th best's rows of every
stacked tensor (weights, batch norm's running averages, optimizer state), bit for bit.
Then it *explores*: each searched value of the copied member is multiplied by one of the
`perturb` factors, drawn at random, on the parameter's own scale (a log or linear value
times the factor; 1 - beta times the factor on a one_minus_log scale; ints rounded), and
clipped to the space's range. A categorical value is left alone (copied as it is).

Only what the stack holds per member can change mid-training: the learning rate, the
optimizer's betas, eps and weight decay, and the L2 lambda (MUTABLE); `check` refuses the
rest before a study starts. Hydra-free, like hyperlab.population.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from hyperlab.errors import ConfigError
from hyperlab.loop import Metrics
from hyperlab.stages import KEYS, Stage

if TYPE_CHECKING:
    from hyperlab.population import Member, Population
    from hyperlab.schema import Config
    from hyperlab.search.space import Param, Value

# The override keys whose values live in the stack's per-member columns: those a stage of
# one run may set too, so that a member's schedule replays (hyperlab.stages).
MUTABLE = tuple(KEYS.values())
LINEAGE_TAG = "hyperlab.pbt.lineage"
LINEAGE_ATTR = "pbt_lineage"  # the trial's user attrs: the lineage, and the schedule
SCHEDULE_ATTR = "pbt_schedule"
ARTIFACT = "pbt_schedule.json"
TAG_MAX = 5000  # characters of an MLflow tag this module writes (MLflow's own limit: 8000)


def check(config: Config, params: Sequence[Param]) -> None:
    """Refuse, before a study starts, what population-based training cannot do."""
    if config.sweep.schedule != "pbt":
        return
    sweep, settings = config.sweep, config.pbt
    if sweep.population < 2:
        raise ConfigError(
            f"sweep.schedule=pbt with sweep.population={sweep.population}: a member needs "
            "others to copy from",
            "set sweep.population=8 or more (e.g. sweep.population=16)",
        )
    if sweep.n_trials < sweep.population:
        raise ConfigError(
            f"sweep.n_trials={sweep.n_trials} is below sweep.population={sweep.population}: "
            "PBT trains each population's members together",
            f"set sweep.n_trials to a multiple of the population (e.g. {sweep.population})",
        )
    for p in params:
        if p.key not in MUTABLE:
            raise ConfigError(
                f"search.params.{p.key}: population-based training cannot change {p.key} "
                "mid-training (the members share one stack: one architecture, batch size, "
                "optimizer kind, schedule and normalization)",
                f"search only {', '.join(MUTABLE)} with sweep.schedule=pbt; fix {p.key} on "
                "the command line, or drop sweep.schedule=pbt to search it",
            )
    refusals = [
        (
            config.early_stopping.patience > 0,
            "early_stopping.patience",
            "early_stopping.patience=0",
        ),
        (config.repeats > 1, "repeats", "repeats=1"),
        (bool(config.checkpoint.every), "checkpoint.every", "checkpoint.every=0"),
        (config.diagnostics != "none", "diagnostics", "diagnostics=none"),
        (
            not str(config.pruner.get("_target_", "")).endswith("NopPruner"),
            "a pruner",
            "pruner=none",
        ),
    ]
    for refused, what, fix in refusals:
        if refused:
            raise ConfigError(
                f"sweep.schedule=pbt with {what}: PBT replaces its bottom members' weights "
                "instead of stopping them, and trains each member once, in one stack",
                f"set {fix}",
            )
    if config.stages:
        raise ConfigError(
            "sweep.schedule=pbt with stages: PBT makes each member's schedule itself (a "
            "trial's replay line then sets its stages)",
            "drop stages from the study's command (stages=[])",
        )
    if settings.interval >= config.epochs:
        raise ConfigError(
            f"pbt.interval={settings.interval} with epochs={config.epochs}: no exploit "
            "would happen before training ends",
            f"set pbt.interval below epochs (e.g. pbt.interval={max(1, config.epochs // 4)})",
        )
    if not settings.perturb or not all(
        isinstance(f, int | float) and math.isfinite(f) and f > 0 for f in settings.perturb
    ):
        raise ConfigError(
            f"pbt.perturb={list(settings.perturb)} must list positive factors",
            "e.g. pbt.perturb=[0.8,1.2]",
        )


def pairs(scores: Sequence[float], quantile: float, maximize: bool) -> list[tuple[int, int]]:
    """(copier, donor) per member of the bottom quantile: the j-th worst copies the j-th
    best. ceil(K * quantile) members each side, at most K // 2; a NaN ranks last, and among
    equal scores the lower index ranks higher."""
    n = min(math.ceil(len(scores) * quantile), len(scores) // 2)

    def badness(k: int) -> tuple[float, int]:
        s = scores[k]
        return (math.inf if s != s else -s if maximize else s), k

    order = sorted(range(len(scores)), key=badness)  # best first
    return list(zip(order[::-1][:n], order[:n], strict=True))


def perturb(p: Param, value: Value, factor: float) -> Value:
    """`value` scaled by `factor` on the parameter's scale, clipped to its range: a log or
    linear value times the factor, 1 - value times it on a one_minus_log scale, an int
    rounded. A categorical value is left alone."""
    if p.kind == "categorical" or isinstance(value, str | bool):
        return value
    v = float(value)
    moved = 1.0 - (1.0 - v) * factor if p.scale == "one_minus_log" else v * factor
    moved = min(max(moved, p.low), p.high)
    return round(moved) if p.kind == "int" else moved


@torch.no_grad()
def copy_member(pop: Population, src: int, dst: int) -> None:
    """Member dst (a row of the stack) becomes member src: its parameters, running
    averages, per-member settings, optimizer state and values. The step count (Adam's bias
    correction) is the stack's own, shared by every member."""
    for layer in pop.layers:
        for tensors in (layer.params, layer.buffers, layer.settings):
            for t in tensors.values():
                t[dst] = t[src]
    for state in pop.state:
        for t in state.values():
            t[dst] = t[src]
    for t in pop.opt.values():
        t[dst] = t[src]
    pop.l2[dst] = pop.l2[src]
    pop.members[dst].lr, pop.members[dst].l2 = pop.members[src].lr, pop.members[src].l2


def set_value(pop: Population, k: int, key: str, value: float) -> None:
    """Write a value of MUTABLE into member k's column of the stack."""
    if key == "lr":
        pop.members[k].lr = value
    elif key == "regularization.l2":
        pop.members[k].l2 = value
        pop.l2[k] = value
        pop.has_l2 = pop.has_l2 or bool(value)
    else:
        pop.opt[key.removeprefix("optimizer.")][k] = value


def _shown(v: Value) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass
class PBT:
    """The hook of fit_population (population.EpochHook) that runs PBT on one stack, and
    each member's record: its lineage and the schedule of its values."""

    params: Sequence[Param]
    initial: Sequence[Mapping[str, Value]]  # each member's sampled values, in stack order
    trials: Sequence[int]  # each member's trial number
    metric: str
    maximize: bool
    interval: int
    quantile: float
    factors: Sequence[float]
    seed: int = 0
    epochs: int = 0  # the last epoch: no exploit after it (0: none known)
    current: list[dict[str, Value]] = field(init=False)
    segments: list[list[dict[str, Any]]] = field(init=False)
    # The values that trained each member's weights, as stages from epoch 1, each with the
    # trial whose slot trained it: a copier's are its donor's up to the copy, then its own.
    ancestry: list[list[tuple[int, Stage]]] = field(init=False)
    lineage: list[list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.current = [dict(v) for v in self.initial]
        self.segments = [[{"from_epoch": 1, "values": dict(v)}] for v in self.initial]
        self.ancestry = [
            [(t, Stage(1, _numbers(v)))] for t, v in zip(self.trials, self.initial, strict=True)
        ]
        self.lineage = [[] for _ in self.initial]
        self.rng = random.Random(self.seed)
        self.index: dict[int, int] = {}
        self.by_key = {p.key: p for p in self.params}

    def bind(self, members: Sequence[Member]) -> None:
        """The stack's members, in the order of `initial`."""
        self.index = {id(m): i for i, m in enumerate(members)}

    def values(self, pop: Population, k: int) -> Metrics:
        """Member k's searched values this epoch, as metrics (lr is logged already)."""
        current = self.current[self.index[id(pop.members[k])]]
        return {
            key: float(v)
            for key, v in current.items()
            if key != "lr" and isinstance(v, int | float) and not isinstance(v, bool)
        }

    def after_epoch(self, epoch: int, pop: Population, metrics: Sequence[Metrics]) -> None:
        """Every `interval` epochs: the bottom members exploit the top ones, then explore."""
        if epoch % self.interval or len(pop.members) < 2 or epoch == self.epochs:
            return
        scores = [m[self.metric] for m in metrics]
        for dst, src in pairs(scores, self.quantile, self.maximize):
            i, j = self.index[id(pop.members[dst])], self.index[id(pop.members[src])]
            copy_member(pop, src, dst)
            donor = self.current[j]
            moved = {}
            for key, v in donor.items():
                p = self.by_key.get(key)
                moved[key] = perturb(p, v, self.rng.choice(self.factors)) if p else v
            numbers = _numbers(moved)
            for key, v in numbers.items():
                set_value(pop, dst, key, v)
            self.current[i] = moved
            self.ancestry[i] = [*self.ancestry[j], (self.trials[i], Stage(epoch + 1, numbers))]
            self.segments[i].append(
                {
                    "from_epoch": epoch + 1,
                    "values": dict(moved),
                    "copied_trial": self.trials[j],
                    "copied_at_epoch": epoch,
                }
            )
            changes = ", ".join(f"{k} {_shown(donor[k])}→{_shown(v)}" for k, v in moved.items())
            self.lineage[i].append(
                f"epoch {epoch}: {self.metric} {scores[dst]:.4g}, copied trial "
                f"{self.trials[j]} ({self.metric} {scores[src]:.4g}); {changes}"
            )

    def lineage_text(self, i: int) -> str:
        """Member i's lineage in one line (cut to fit an MLflow tag)."""
        text = " | ".join(self.lineage[i]) or "never copied: trained its own values throughout"
        return text if len(text) <= TAG_MAX else text[: TAG_MAX - 10] + " …"

    def schedule(self, i: int, epochs: int) -> dict[str, Any]:
        """Member i's values over its epochs, with where its weights came from."""
        segs = [dict(s) for s in self.segments[i]]
        for s, nxt in zip(segs, [*segs[1:], {"from_epoch": epochs + 1}], strict=True):
            s["to_epoch"] = nxt["from_epoch"] - 1
        return {
            "trial": self.trials[i],
            "metric": self.metric,
            "interval": self.interval,
            "initial": dict(self.initial[i]),
            "final": dict(self.current[i]),
            "segments": segs,
            "lineage": list(self.lineage[i]),
            "stages": [
                {"epoch": s.epoch, "trained_by": t, "values": dict(s.values)}
                for t, s in self.ancestry[i]
            ],
        }

    def stages(self, i: int) -> list[Stage]:
        """The values that trained member i's weights, from epoch 1: its replay line's."""
        return [s for _, s in self.ancestry[i]]

    def tags(self, i: int, replay: Replay | None = None) -> dict[str, str]:
        """Member i's MLflow tags: its lineage, and its replay line (its stages)."""
        out = {LINEAGE_TAG: self.lineage_text(i)}
        if replay:
            line = replay(self.stages(i))
            # A cut line would not run: a long one stays in the trial's user attr.
            out["hyperlab.replay"] = (
                line
                if len(line) <= TAG_MAX
                else f"(too long for a tag: {len(line)} characters; the trial's user attr "
                "replay holds the line, and pbt_schedule.json its stages)"
            )
        return out


# A member's replay line, from its stages (the first one: the values it started from).
Replay = Callable[[Sequence[Stage]], str]


def _numbers(values: Mapping[str, Value]) -> dict[str, float]:
    """The values a stage sets: the numbers of MUTABLE."""
    return {
        k: float(v)
        for k, v in values.items()
        if k in MUTABLE and isinstance(v, int | float) and not isinstance(v, bool)
    }


def of_config(
    config: Config,
    params: Sequence[Param],
    initial: Sequence[Mapping[str, Value]],
    trials: Sequence[int],
) -> PBT:
    """The PBT of one stack, from the study's validated config and space."""
    metric = config.objective.metric
    return PBT(
        params,
        initial,
        trials,
        metric=metric,
        maximize=config.objective.direction == "maximize",
        interval=config.pbt.interval,
        quantile=config.pbt.quantile,
        factors=[float(f) for f in config.pbt.perturb],
        seed=config.sweep.seed + min(trials, default=0),  # one stream per stack, reproducible
        epochs=config.epochs,
    )
