"""Caviar in one process: a worker's batch of claimed trials trained as stacked populations.

`sweep.population=K` has each worker claim K trials at a time and hand them to
train_stacked: the trials whose configs may share a stack (population.group_key: one data
set, architecture, batch size and epoch count) train as one model (run_population), each
with its own MLflow run, pruning reporter and outcome; a trial alone in its group, or one
that a stack cannot train (seed repeats, checkpoints), trains as a sweep's worker trains
it. Hydra-free, like the worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hyperlab import stops
from hyperlab.schema import Config
from hyperlab.search.worker import (
    Claimed,
    Outcome,
    Worker,
    compose_trial,
    failed,
    settle,
    stopped,
    train_trial,
    trial_job,
)

if TYPE_CHECKING:
    from hyperlab.pbt import PBT, Replay


def stackable(config: Config) -> bool:
    """Whether a trial may train in a stack: one seed, no checkpoints, no resume, no layer
    diagnostics (they read one model's layers), no stages (the stack's values change only
    by PBT)."""
    return (
        config.repeats == 1
        and not config.stages
        and not config.checkpoint.every
        and not config.resume
        and config.diagnostics == "none"
    )


def train_stacked(w: Worker, batch: Sequence[Claimed]) -> list[Outcome]:
    """The batch's outcomes, in order: its trials trained in as few stacks as their configs
    allow. A stop fails the trials not yet trained (and those of the stack it cut)."""
    from hyperlab.population import groups

    outcomes: dict[int, Outcome] = {}
    configs: dict[int, Config] = {}
    alone: list[int] = []
    for i, c in enumerate(batch):
        try:
            configs[i] = compose_trial(w, c)
        except Exception:  # it fails as a trial alone fails, with its reason recorded
            alone.append(i)
            continue
        if not stackable(configs[i]):
            alone.append(i)
            del configs[i]
    order = list(configs)
    stacks = [[order[j] for j in group] for group in groups([configs[i] for i in order])]
    alone += [s[0] for s in stacks if len(s) == 1]
    _say_how(
        w,
        [[batch[i].trial.number for i in s] for s in stacks if len(s) > 1],
        sorted(batch[i].trial.number for i in alone),
    )
    try:
        for i in sorted(alone):
            outcomes[i] = train_trial(w, batch[i])
        for stack in (s for s in stacks if len(s) > 1):
            outcomes.update(_train_stack(w, [batch[i] for i in stack], stack, configs))
    except stops.STOPS as e:
        return [outcomes.get(i) or stopped(e) for i in range(len(batch))]
    return [outcomes[i] for i in range(len(batch))]


def _say_how(w: Worker, stacks: list[list[int]], alone: list[int]) -> None:
    """One line per stack, and one for the trials that train alone (a shape of their own,
    seed repeats or checkpoints), naming the trials."""
    from hyperlab.display import error_console

    worker = f"worker {w.cfg.sweep.worker}"
    for numbers in stacks:
        error_console.print(
            f"{worker}: trials {spans(numbers)} train as one stacked model of {len(numbers)}",
            highlight=False,
        )
    if alone:
        error_console.print(
            f"{worker}: trial{'s' if len(alone) > 1 else ''} {spans(alone)} train"
            f"{'' if len(alone) > 1 else 's'} alone (no other claimed trial shares its "
            "shape, or it has seed repeats or checkpoints)",
            highlight=False,
        )


def spans(numbers: Sequence[int]) -> str:
    """Trial numbers as runs: [0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _train_stack(
    w: Worker, claimed: list[Claimed], stack: list[int], configs: Mapping[int, Config]
) -> dict[int, Outcome]:
    """One stack's trials trained together; each outcome settled as a trial's alone."""
    from hyperlab.repeats import of_one
    from hyperlab.run_population import run_population

    composed = [configs[i] for i in stack]
    opened: list[list[object]] = [[] for _ in claimed]
    jobs = [
        trial_job(w, c, config, seen.append)
        for c, config, seen in zip(claimed, composed, opened, strict=True)
    ]
    # Which stack a run trained in: the worker, the stack's first trial, and its size.
    group = f"worker {w.cfg.sweep.worker}, trials {spans([c.trial.number for c in claimed])}"
    tag = {"hyperlab.population": f"{group} ({len(jobs)} members)"}
    pbt, replays = _pbt(w, claimed, composed[0])
    if pbt:
        tag["hyperlab.pbt"] = f"every {pbt.interval} epochs, quantile {pbt.quantile}"
    jobs = [dataclasses.replace(job, tags={**job.tags, **tag}) for job in jobs]
    try:
        ends = run_population(composed, jobs, pbt, replays)
    except Exception as e:  # the stack could not be built: each trial fails with the reason
        return {
            i: failed(w, c, e, bool(seen))
            for i, c, seen in zip(stack, claimed, opened, strict=True)
        }
    outcomes = {}
    for i, c, config, seen, end in zip(stack, claimed, composed, opened, ends, strict=True):
        try:
            if isinstance(end, BaseException):
                raise end
            if pbt:
                k = stack.index(i)
                record_lineage(c, pbt, k, config.epochs, replays[k](pbt.stages(k)))
            outcomes[i] = settle(w, c, config, of_one(config, end))
        except Exception as e:
            outcomes[i] = failed(w, c, e, bool(seen))
    return outcomes


def _pbt(w: Worker, claimed: Sequence[Claimed], config: Config) -> tuple[PBT | None, list[Replay]]:
    """With sweep.schedule=pbt: the stack's PBT, and each member's replay line: the values
    it started from, and its later ones as stages (hyperlab.stages)."""
    if config.sweep.schedule != "pbt":
        return None, []
    from hyperlab.pbt import of_config
    from hyperlab.search.space import overrides
    from hyperlab.search.trial import replay
    from hyperlab.stages import Stage, override

    pbt = of_config(
        config, w.setup.params, [c.values for c in claimed], [c.trial.number for c in claimed]
    )

    def replay_of(c: Claimed) -> Replay:
        def line(stages: Sequence[Stage]) -> str:
            first, *later = stages
            staged = [override(later)] if later else []
            return replay(w.base, [*overrides(first.values), *staged], c.choices, w.root_choices)

        return line

    return pbt, [replay_of(c) for c in claimed]


def record_lineage(c: Claimed, pbt: PBT, i: int, epochs: int, line: str) -> None:
    """The trial's lineage and schedule as user attrs, and its replay `line` (its stages:
    the trial's params, the sampler's values, are where its slot started)."""
    from hyperlab.pbt import LINEAGE_ATTR, SCHEDULE_ATTR
    from hyperlab.search.report import REPLAY_ATTR

    c.trial.set_user_attr(LINEAGE_ATTR, pbt.lineage_text(i))
    c.trial.set_user_attr(SCHEDULE_ATTR, pbt.schedule(i, epochs))
    c.trial.set_user_attr(REPLAY_ATTR, line)
