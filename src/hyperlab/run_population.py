"""run_population(configs, jobs): trials of one architecture trained as one stacked model
(hyperlab.population), each recorded as run() records a run alone.

Each member is prepared as its run would be (validated, seeded, built), opens its own MLflow
run with its params and tags, reports its per-epoch metrics to its own listeners (its
tracker, its trial's pruning reporter), and ends as its run would: finished with its final
evaluation, diverged, or pruned. The members' configs must share a population group
(population.group_key): one data set, architecture, batch size and number of epochs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from hyperlab import stops
from hyperlab.build import Parts
from hyperlab.devices import threads
from hyperlab.early_stopping import EarlyStopping, early_stopping
from hyperlab.loop import Listener
from hyperlab.models import layer_sizes
from hyperlab.population import Member, fit_population
from hyperlab.record import Record, open_record
from hyperlab.run import Job, RunResult, end_early, finish, prepare, run_metrics
from hyperlab.schema import Config
from hyperlab.tracking import batched

if TYPE_CHECKING:
    from hyperlab.pbt import PBT, Replay


def member_of(
    config: Config,
    parts: Parts,
    listeners: Sequence[Listener] = (),
    stopper: EarlyStopping | None = None,
) -> Member:
    """A trial's member of a stack: its built parts and the settings of its validated
    config that the stack reads per member (early stopping hears each epoch first)."""
    return Member(
        parts.model,
        parts.optimizer,
        parts.schedule,
        lr=config.lr,
        seed=config.seed,
        l2=parts.regularization.l2,
        listeners=[*([stopper] if stopper else []), *listeners],
        stopper=stopper,
        augment=parts.augment,
    )


def _batched(config: Config) -> contextlib.AbstractContextManager[None]:
    """The members' MLflow requests sent together, with tracking on."""
    return batched() if config.tracking.enabled else contextlib.nullcontext()


def run_population(
    cfgs: Sequence[Config | DictConfig | Mapping[str, Any]],
    jobs: Sequence[Job],
    pbt: PBT | None = None,
    replays: Sequence[Replay] = (),
) -> list[RunResult | BaseException]:
    """Train the members as one stack; per member, how its run ended (a RunResult, NaN for
    a diverged one) or the error that ended it (a pruner's TrialPruned). A stop signal
    records every member's run as stopped and is raised. With `pbt`, the stack trains by
    population-based training, and each run records its lineage (tags, `replays` giving
    each member's replay line of its stages) and its schedule (a JSON artifact)."""
    prepared, records, built = [], [], []
    for cfg in cfgs:
        start = time.perf_counter()
        prepared.append(prepare(cfg))  # seeded: each member its own initialization
        built.append(time.perf_counter() - start)
    # The members' runs are created together, in one transaction of a database store.
    with _batched(prepared[0][0]):
        for (config, parts), job in zip(prepared, jobs, strict=True):
            record = open_record(config, job, parts.data.sha256, {})
            if record.tracker and job.on_opened:
                job.on_opened(record.tracker)
            records.append(record)
    stoppers = [early_stopping(config, parts.model) for config, parts in prepared]
    members = [
        member_of(
            config, parts, [*([record.tracker] if record.tracker else []), *job.listeners], stop
        )
        for (config, parts), record, job, stop in zip(
            prepared, records, jobs, stoppers, strict=True
        )
    ]
    if pbt:
        pbt.bind(members)
    first, data = prepared[0][0], prepared[0][1].data
    sizes = layer_sizes(first.model, data.n_features, data.n_classes)
    step = sum(a * b for a, b in itertools.pairwise(sizes))
    torch.set_num_threads(threads(first, work=len(members) * first.batch_size * step))
    start = time.perf_counter()
    try:
        ends = fit_population(
            members,
            (data.x_train, data.y_train),
            (data.x_dev, data.y_dev),
            epochs=first.epochs,
            batch_size=first.batch_size,
            hook=pbt,
        )
    except BaseException as e:  # a stop: every member's run is recorded as stopped
        for (config, _), record in zip(prepared, records, strict=True):
            end_early(e, config, record)
        raise
    # Each member's share of the stack's training time.
    fit_seconds = (time.perf_counter() - start) / len(members)
    out: list[RunResult | BaseException] = []
    # Trained: recorded as it ended, then a stop; the runs ended together.
    with stops.held(until_checked=True), _batched(first):
        for i, ((config, parts), job, record, end, build_seconds, stopper) in enumerate(
            zip(prepared, jobs, records, ends, built, stoppers, strict=True)
        ):
            timings = {"build": build_seconds, "fit": fit_seconds}
            sha256 = parts.data.sha256
            if end.outcome != "complete":
                assert end.error is not None
                run_id = end_early(end.error, config, record)
                if end.outcome == "stopped":  # its listener raised: pruned, or failed
                    out.append(end.error)
                    continue
                out.append(RunResult(float("nan"), run_id, timings, sha256))
                continue
            start = time.perf_counter()
            measured = run_metrics(fit_seconds, parts.model)
            tags = _record_pbt(pbt, i, job, record, replays[i] if replays else None, first.epochs)
            final, run_id = finish(
                config, parts, end.history, job, record, 0, stopper, measured, tags
            )
            timings["finish"] = time.perf_counter() - start
            out.append(RunResult(final.value, run_id, timings, sha256, final.measures))
    return out


def _record_pbt(
    pbt: PBT | None, i: int, job: Job, record: Record, replay: Replay | None, epochs: int
) -> dict[str, str]:
    """Member i's schedule as a JSON file in its directory (and its run's artifact), and
    its lineage tags; nothing without PBT."""
    if pbt is None:
        return {}
    from hyperlab.pbt import ARTIFACT

    path = record.out / ARTIFACT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pbt.schedule(i, epochs), indent=2) + "\n")
    if record.tracker:
        record.tracker.log_files([path])
    return pbt.tags(i, replay)
