"""Hydra callbacks: the output directory is checked before Hydra writes to it, passwords are
kept out of what Hydra writes and logs, and a multirun's jobs are grouped under one MLflow
parent run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from hyperlab.overrides import override_key
from hyperlab.tracking import PARENT_RUN_ID

# What Hydra saves of a job in its output subdirectory (.hydra/) before the job starts.
SAVED = ("config.yaml", "hydra.yaml", "overrides.yaml")


class MaskSecrets(Callback):
    """A password in a URL on the command line (`sweep.storage=postgresql://u:pw@host/db`)
    is masked in the files Hydra saves (.hydra/*.yaml, a multirun's multirun.yaml) and in
    the lines it logs (`[HYDRA] #0 : ...`), as it is in MLflow and in hyperlab's messages.

    Hydra writes .hydra/ before on_job_start and multirun.yaml before the first job
    starts, so each job start masks them, before hyperlab runs a line of the job (a run
    refused at once leaves them masked too). `${oc.env:VAR}` keeps a password out of all
    of it in the first place."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hyperlab.errors import mask_log_records

        mask_log_records()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hyperlab.errors import mask_log_records

        mask_log_records()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hyperlab.errors import mask_file, mask_log_records

        mask_log_records()  # again: a launcher may run the job in a process of its own
        hc = config.hydra
        files = []
        if hc.output_subdir is not None:
            saved = Path(hc.runtime.output_dir) / str(hc.output_subdir)
            files += [saved / name for name in SAVED]
        if hc.mode == RunMode.MULTIRUN:
            files.append(Path(hc.sweep.dir) / "multirun.yaml")
        for f in files:
            mask_file(f)


class OutputDir(Callback):
    """Refuses, with the path and the fix, a run or sweep directory that cannot be created
    (a read-only outputs/), before Hydra's own mkdir fails with a traceback. Nothing is
    created here: only the nearest existing parent is checked."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(Path(str(config.hydra.sweep.dir)))


def _check_writable(directory: Path) -> None:
    import os

    from hyperlab.display import exit_with
    from hyperlab.errors import ConfigError

    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    why = "not a directory" if not existing.is_dir() else "not writable"
    if existing.is_dir() and os.statvfs(existing).f_flag & os.ST_RDONLY:
        why = "on a read-only file system"
    exit_with(
        ConfigError(
            f"the output directory {directory} cannot be created: {existing} is {why}",
            "make it writable, run from a directory you can write to, or set "
            "hydra.run.dir= (hydra.sweep.dir= for a study or -m) to a writable directory",
        )
    )


class MlflowParentRun(Callback):
    """Creates the parent run when a multirun starts, with the swept keys as params, and
    ends it when the multirun ends, with the best child and a comparison of every child.

    Jobs may run in other processes (joblib, submitit), so the parent's id travels in a
    file in the sweep directory, which every job's output directory sits in."""

    def __init__(self) -> None:
        self.parent: Any = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A study validates its trials and keeps a parent run of its own across resumes.
        if config.hydra.sweeper.get("_target_", "").startswith("hydra_plugins.hyperlab_sweeper"):
            return
        # Every job, before the first starts: its values, its data and its tracking store
        # (a server that does not answer), whether or not the multirun has a parent run.
        _validate_jobs(config)
        if config.tracking.enabled:
            _or_exit(self._start_parent, config)

    def _start_parent(self, config: DictConfig) -> None:
        from hyperlab.errors import masked
        from hyperlab.tracking import default_tags, start_run

        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = " ".join(config.hydra.overrides.task)
        self.parent = start_run(
            config.tracking.uri,
            config.tracking.experiment,
            config.tracking.artifacts,
            run_name=masked(f"multirun {overrides}")[:250],  # mask, then cut
            tags={**default_tags(f"hyperlab -m {overrides}"), "hyperlab.sweep_dir": str(sweep_dir)},
            params={k: masked(v)[:6000] for k, v in _swept(config).items()},
        )
        # Waits for the writer, whose retries are bounded (hyperlab.tracking.store): a
        # store lost since the check stops the multirun here, before its first job.
        (sweep_dir / PARENT_RUN_ID).write_text(self.parent.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent is not None:
            _or_exit(self._end_parent, config)

    def _end_parent(self, config: DictConfig) -> None:
        from hyperlab.display import console, plain
        from hyperlab.tracking import client, drain
        from hyperlab.tracking.comparison import best, children, markdown
        from hyperlab.validate import direction_of

        parent, self.parent = self.parent, None
        drain()  # the children's records, before they are read back
        metric, direction = str(config.objective.metric), direction_of(config.objective)
        runs = children(client(str(config.tracking.uri)), parent.run_id)
        top = best(runs, metric, direction)
        table = Path(config.hydra.sweep.dir) / "comparison.md"
        table.write_text(markdown(runs, metric, direction))
        parent.log_files([table])
        metrics, tags = {}, {"hyperlab.objective": f"{metric} ({direction})"}
        if top is not None:
            metrics["best_value"] = top.metrics[metric]
            tags |= {"hyperlab.best_run": top.run_id, "hyperlab.best_params": top.params}
            console.print(
                f"best of {len(runs)} runs: {plain(top.params)}  {metric} "
                f"{top.metrics[metric]:.4g}  (MLflow run {top.run_id}; every run: "
                f"{plain(table)})",
                soft_wrap=True,
            )
        parent.finish("FINISHED", metrics=metrics, tags=tags)
        drain()


def _or_exit(fn: Callable[..., None], *args: Any) -> None:
    """fn(*args); a user's error (a tracking store that stopped answering) is printed
    with its fix and exits 2, as in a job, instead of Hydra's traceback."""
    from hyperlab.display import exit_with
    from hyperlab.errors import HyperlabError

    try:
        fn(*args)
    except HyperlabError as e:
        exit_with(e)


def _swept(config: DictConfig) -> dict[str, str]:
    """The multirun's keys as its command gave them (`optimizer: adam,gd`, `epochs: 3`),
    a preset's sweep (hydra.sweeper.params) among them: the parent's params."""
    params = config.hydra.sweeper.get("params") or {}
    found = {str(k): str(v) for k, v in params.items()}
    for line in map(str, config.hydra.overrides.task):
        found[override_key(line)] = line.partition("=")[2]
    return found


def _validate_jobs(config: DictConfig) -> None:
    """Compose and validate every job of a multirun, as BasicSweeper will split it, before
    its parent run is created: a bad value in a sweep (`-m lr=-1,1e-3`) exits 2 with
    nothing recorded, rather than leaving a parent run over failed jobs."""
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hyperlab.display import exit_with
    from hyperlab.errors import HyperlabError
    from hyperlab.validate import validate

    params = config.hydra.sweeper.get("params") or {}
    arguments = [*(f"{k}={v}" for k, v in params.items()), *config.hydra.overrides.task]
    parsed = OverridesParser.create().parse_overrides(arguments)
    for batch in BasicSweeper.split_arguments(parsed, None):
        for job in batch:
            try:
                validate(compose(str(config.hydra.job.config_name), overrides=list(job)))
            except HyperlabError as e:
                exit_with(e)
