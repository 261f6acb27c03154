"""run(config) -> objective: one training job, as the CLI, the sweeper and the tests call it."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig

from hyperlab import display, stops
from hyperlab.build import Parts, build, build_data
from hyperlab.checkpoint import DIR as CHECKPOINT_DIR
from hyperlab.checkpoint import Checkpoint, Checkpointer
from hyperlab.diagnose import bias_variance
from hyperlab.errors import ConfigError, masked
from hyperlab.loop import Diverged, Listener, evaluate, fit
from hyperlab.models import hidden_sizes
from hyperlab.tracking import Tracker, TrackingError, default_tags, params_of
from hyperlab.validate import validate


@dataclass
class Job:
    """What the caller knows about a job beyond its config."""

    choices: Mapping[str, str] = field(default_factory=dict)  # group -> option
    overrides: Sequence[str] = ()
    command: str = "hyperlab"
    parent_run_id: str | None = None
    listeners: Sequence[Listener] = ()  # e.g. a sweeper's pruning reporter
    tags: Mapping[str, str] = field(default_factory=dict)
    run_name: str = ""  # default: the overrides
    output_dir: Path | None = None  # learning curve and checkpoints (default: a temp dir)
    resume: Checkpoint | None = None  # continue from this checkpoint
    timings: dict[str, float] = field(default_factory=dict)  # filled in: build, fit, finish
    # Filled in: data.sha256, the hash of the data trained on (one dict for seed repeats)
    found: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None  # filled in: the MLflow run, once it is closed


def _prepare(
    cfg: DictConfig | Mapping[str, Any], *, gradcheck: bool = False
) -> tuple[dict[str, Any], Parts]:
    """Check the config, set threads and the seed, and build the parts of a run (with
    `gradcheck`, of a gradient check)."""
    config = validate(cfg if isinstance(cfg, DictConfig) else DictConfig(cfg))
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])  # initialization and dropout masks
    data = build_data(config["dataset"])  # kept: build() below gets the same splits
    _check_model_size(config, data.n_features, data.n_classes)
    if gradcheck:
        _check_gradcheck_size(config, data.n_features, data.n_classes)
    try:
        return config, build(config)
    except Exception as e:  # torch's allocator error comes wrapped by Hydra's instantiate
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        lines = str(e).splitlines() or [type(e).__name__]
        why = next((line for line in lines if "allocate" in line), lines[0])
        raise _too_big(config, f"the model cannot be allocated ({why.strip()})") from None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_model_size(config: Mapping[str, Any], n_features: int, n_classes: int) -> None:
    """A model whose weights, gradients and optimizer state exceed the machine's memory
    fails here, before torch allocates it (a typo such as model.hidden_units=1000000 would
    otherwise exhaust the memory or stop with an allocator's traceback)."""
    model = config["model"]
    sizes = [n_features, *hidden_sizes(model["hidden_units"], model["layers"]), n_classes]
    weights = sum(a * b + b for a, b in itertools.pairwise(sizes))
    memory = _memory_bytes()
    # float32 weights, their gradients and up to two optimizer moments (Adam)
    if memory and weights * 4 * 4 > memory:
        raise _too_big(
            config,
            f"the model has {weights:.3g} weights: with their gradients and the optimizer's "
            f"state that is {weights * 16 / 2**30:.3g} GiB, more than this machine's "
            f"{memory / 2**30:.3g} GiB of memory",
        )


def _check_gradcheck_size(config: Mapping[str, Any], n_features: int, n_classes: int) -> None:
    """A gradient check whose float64 copy of the model, its gradient and the compared
    components (hyperlab.gradcheck.bytes_needed) exceed the machine's memory fails here,
    before the model is built: the kernel would otherwise kill the check without a word."""
    from hyperlab.gradcheck import bytes_needed

    model, settings = config["model"], config["gradcheck"]
    sizes = [n_features, *hidden_sizes(model["hidden_units"], model["layers"]), n_classes]
    weights = sum(a * b + b for a, b in itertools.pairwise(sizes))

    def need(sample: int) -> int:
        return bytes_needed(
            weights,
            sample if 0 < sample < weights else weights,
            largest=max(a * b for a, b in itertools.pairwise(sizes)),
            activations=settings["batch"] * sum(sizes),
            l2=config["regularization"]["l2"] > 0,
            trained=settings["after_epochs"] > 0,
        )

    memory = _memory_bytes()
    needed = need(settings["max_components"])
    if not memory or needed <= memory:
        return
    sample = 1000
    smaller = "a smaller model of the same design, e.g. model.hidden_units=128"
    fix = (
        f"check a sample of the components, e.g. gradcheck.max_components={sample} (about "
        f"{need(sample) / 2**30:.3g} GiB), or {smaller}"
        if need(sample) <= memory and settings["max_components"] != sample
        else f"check {smaller}: its backprop is the same code (gradcheck.max_components "
        "bounds the components compared, not the float64 copy)"
    )
    checked = settings["max_components"] if 0 < settings["max_components"] < weights else weights
    raise ConfigError(
        f"task=gradcheck with model.hidden_units={model['hidden_units']}, "
        f"model.layers={model['layers']}: the check needs about {needed / 2**30:.3g} GiB "
        f"(a float64 copy of the model's {weights:.3g} weights and its gradient, beside the "
        f"model, and {checked:.3g} components compared), more than this machine's "
        f"{memory / 2**30:.3g} GiB of memory",
        fix,
    )


def _too_big(config: Mapping[str, Any], why: str) -> ConfigError:
    model = config["model"]
    return ConfigError(
        f"model.hidden_units={model['hidden_units']}, model.layers={model['layers']}: {why}",
        "use fewer hidden units or layers, e.g. model.hidden_units=128",
    )


def _yaml(data: Any) -> str:
    """YAML text, by libyaml where PyYAML has it: ten times faster than the pure-Python
    dumper, which cost 10 ms per config, every trial of a study."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False)  # type: ignore[no-any-return]


def _is_pruned(e: BaseException) -> bool:
    return type(e).__name__ == "TrialPruned"


def run(cfg: DictConfig | Mapping[str, Any], job: Job | None = None) -> float:
    """Train the configured model and return the objective (NaN when training diverged).

    Bad config values raise ConfigError and bad data DataError, before anything is
    recorded."""
    job = job or Job()
    start = time.perf_counter()
    config, parts = _prepare(cfg)
    job.timings["build"] = time.perf_counter() - start
    data = parts.data
    job.found["data.sha256"] = data.sha256
    generator = torch.Generator().manual_seed(config["seed"])  # mini-batch shuffles
    start_epoch, resume_tags = 0, {}
    if job.resume:
        ckpt = job.resume
        if config["epochs"] <= ckpt.epoch:
            raise ConfigError(
                f"epochs={config['epochs']}: the checkpoint has trained {ckpt.epoch} epochs "
                "already",
                f"ask for more in all, e.g. epochs={ckpt.epoch + max(ckpt.epoch, 10)}",
            )
        ckpt.restore(parts.model, parts.optimizer, generator)
        start_epoch = ckpt.epoch
        resume_tags = {
            "hyperlab.resumed_from": ckpt.run_id,
            "hyperlab.resumed_at_epoch": str(ckpt.epoch),
            "hyperlab.resumed_checkpoint": str(ckpt.path),
        }
    header = (
        f"{job.choices.get('model', 'model')} on {job.choices.get('dataset', 'data')}: "
        f"{len(data.y_train)} train / {len(data.y_dev)} dev / {len(data.y_test)} test, "
        f"{data.n_features} features, {data.n_classes} classes; "
        f"{job.choices.get('optimizer', 'optimizer')} lr={config['lr']:g}, "
        f"{config['epochs']} epochs, batch {config['batch_size']}"
    )
    if config["progress"]:
        display.console.print(f"[bold]hyperlab[/] {display.plain(header)}")

    tracking = config["tracking"]
    tracker = None
    if tracking["enabled"]:
        tracker = Tracker(
            tracking["uri"],
            tracking["experiment"],
            artifact_root=tracking["artifacts"],
            run_name=masked(job.run_name or " ".join(job.overrides) or "defaults")[:250],
            parent_run_id=job.parent_run_id,
            params={**params_of(config, job.choices), "data.sha256": data.sha256},
            tags={**default_tags(job.command), **resume_tags, **job.tags},
            # Passwords (a database URL in sweep.storage, tracking.uri, the overrides) are
            # masked in every param, tag and artifact; the Tracker masks them as well.
            artifacts={
                "config.yaml": _yaml(masked(config)),
                "overrides.yaml": _yaml(masked(list(job.overrides))),
            },
            flush_seconds=tracking["flush_seconds"],
        )
    out = job.output_dir or Path(tempfile.gettempdir()) / "hyperlab-runs" / uuid.uuid4().hex
    curve = out / "learning_curve.png" if tracking["curve"] else None
    title = masked(f"hyperlab {' '.join(job.overrides)}")
    listeners: list[Listener] = [*([tracker] if tracker else []), *job.listeners]
    every = config["checkpoint"]["every"]
    if every:
        listeners.insert(
            len(listeners) - len(job.listeners),  # saved before a pruner may stop the run
            Checkpointer(
                out / CHECKPOINT_DIR,
                every,
                config["epochs"],
                parts.model,
                parts.optimizer,
                generator,
                # A checkpoint replays its run's overrides on resume, and is logged to
                # MLflow: an override holding a password stays out (give it again).
                [o for o in job.overrides if masked(o) == o],
                run_id=(lambda: tracker.run_id) if tracker else (lambda: ""),
                on_saved=(lambda p: tracker.log_files([p], CHECKPOINT_DIR))
                if tracker
                else (lambda p: None),
            ),
        )
    progress = (
        display.ProgressDisplay(config["epochs"], start_epoch) if config["progress"] else None
    )
    if progress:
        listeners.append(progress)

    start = time.perf_counter()
    try:
        if progress:
            progress.__enter__()
        try:
            history = fit(
                parts.model,
                parts.optimizer,
                parts.schedule,
                (data.x_train, data.y_train),
                (data.x_dev, data.y_dev),
                lr=config["lr"],
                epochs=config["epochs"],
                batch_size=config["batch_size"],
                l2=parts.regularization.l2,
                weights=parts.model.weights,
                generator=generator,
                listeners=listeners,
                start_epoch=start_epoch,
            )
        finally:
            if progress:
                progress.__exit__(None, None, None)
    except Diverged as e:
        reason = f"{e}; lower the learning rate (lr={config['lr']:g}) or check the data"
        display.error_console.print(f"[bold red]diverged:[/] {display.plain(reason)}")
        if tracker:
            tags = {"hyperlab.failure_reason": reason, "hyperlab.outcome": "diverged"}
            tracker.finish("FAILED", tags=tags, curve=curve, title=title)
        return math.nan
    except BaseException as e:
        if tracker:
            stopped = isinstance(e, stops.STOPS)
            outcome = "pruned" if _is_pruned(e) else "stopped" if stopped else "failed"
            why = {
                "hyperlab.failure_reason": f"stopped by {stops.describe(e)}"
                if stopped
                else f"{type(e).__name__}: {e}",
                "hyperlab.outcome": outcome,
            }
            # The original error matters more than a failure to record it.
            with contextlib.suppress(TrackingError):
                job.run_id = tracker.finish(
                    "FAILED" if outcome == "failed" else "KILLED",
                    tags=why,
                    curve=curve,
                    title=title,
                )
        raise

    job.timings["fit"] = time.perf_counter() - start
    # Trained: a stop from here on would lose the result for a moment's work. It is kept
    # for the caller (stops.take), which records this run as it ended, then stops.
    with stops.held(until_checked=True):
        value = _finish(config, parts, history, job, tracker, curve, title, start_epoch)
    return value


def _finish(
    config: Mapping[str, Any],
    parts: Parts,
    history: list[dict[str, float]],
    job: Job,
    tracker: Tracker | None,
    curve: Path | None,
    title: str,
    start_epoch: int,
) -> float:
    """The final evaluation, and the run recorded as FINISHED."""
    data = parts.data
    tracking = config["tracking"]
    if curve and tracker is None and job.output_dir:
        from hyperlab.curves import draw

        epochs = range(start_epoch, config["epochs"])
        draw(
            {k: list(zip(epochs, [h[k] for h in history], strict=True)) for k in history[0]},
            curve,
            title,
        )
    start = time.perf_counter()
    final = {split: evaluate(parts.model, *data.split(split)) for split in ("train", "dev", "test")}
    reading = bias_variance(
        1 - final["train"][1],
        1 - final["dev"][1],
        config["bayes_error"],
        config["diagnosis_threshold"],
    )
    metric = config["objective"]["metric"]
    value = history[-1][metric]
    run_id = None
    if tracker:
        run_id = job.run_id = tracker.finish(
            "FINISHED",
            metrics={
                "test_loss": final["test"][0],
                "test_acc": final["test"][1],
                "train_error": 1 - final["train"][1],
                "dev_error": 1 - final["dev"][1],
            },
            step=config["epochs"] - 1,
            tags={
                "hyperlab.bias_variance": reading.verdict,
                "hyperlab.avoidable_bias": f"{reading.avoidable_bias:.4f}",
                "hyperlab.variance": f"{reading.variance:.4f}",
                "hyperlab.next_step": reading.advice,
                "hyperlab.objective": f"{metric} ({config['objective']['direction']})",
                "hyperlab.outcome": "complete",
            },
            curve=curve,
            title=title,
        )
    job.timings["finish"] = time.perf_counter() - start
    if config["progress"]:
        display.summary(
            "final evaluation (eval mode)",
            final,
            reading,
            (metric, value),
            run_id,
            masked(tracking["uri"]) if tracker else None,
        )
    return value


def check_gradients(cfg: DictConfig | Mapping[str, Any]) -> float:
    """task=gradcheck: backprop against two-sided differences on a training batch, at the
    initialization and optionally again after some epochs. Returns the largest difference."""
    from rich.table import Table

    from hyperlab.gradcheck import gradient_check

    config, parts = _prepare(cfg, gradcheck=True)
    settings, reg = config["gradcheck"], parts.regularization
    x, y = parts.data.x_train[: settings["batch"]], parts.data.y_train[: settings["batch"]]
    m = len(parts.data.y_train)
    console = display.console
    if reg.keep_prob < 1:
        console.print(
            f"dropout (keep_prob={reg.keep_prob}) is turned off for the check: "
            "its random masks make the cost a different function at every evaluation"
        )
    stages = [("at initialization", 0)]
    if settings["after_epochs"]:
        stages.append((f"after {settings['after_epochs']} epochs", settings["after_epochs"]))
    worst = 0.0
    for label, epochs in stages:
        if epochs:
            fit(
                parts.model,
                parts.optimizer,
                parts.schedule,
                (parts.data.x_train, parts.data.y_train),
                (parts.data.x_dev, parts.data.y_dev),
                lr=config["lr"],
                epochs=epochs,
                batch_size=config["batch_size"],
                l2=reg.l2,
                weights=parts.model.weights,
                generator=torch.Generator().manual_seed(config["seed"]),
            )
        check = gradient_check(
            parts.model,
            x,
            y,
            l2=reg.l2,
            m=m,
            eps=settings["eps"],
            max_components=settings["max_components"],
            seed=config["seed"],
        )
        worst = max(worst, check.difference)
        console.print(
            f"[bold]gradient check {label}[/]: {check.checked} of {check.total} components, "
            f"eps={settings['eps']:g}, L2 lambda={reg.l2:g}\n"
            f"  ||approx - grad|| / (||approx|| + ||grad||) = {check.difference:.3e}  ->  "
            f"{check.verdict}"
        )
        table = Table(title="parameters by their own difference", title_justify="left")
        table.add_column("parameter")
        table.add_column("difference", justify="right")
        for name, diff in check.worst[:5]:
            table.add_row(name, f"{diff:.3e}")
        console.print(table)
    console.print("scale: about 1e-7 great; 1e-5 look closer; 1e-3 or more a bug")
    return worst
