"""The `hyperlab` command: Hydra composes conf/ with the overrides and calls run().

What --help and --cfg do not need (rich, the tracking package, torch) is imported where it
is used: those answer in a fraction of a second."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hyperlab import stops
from hyperlab.errors import ConfigError, HyperlabError
from hyperlab.overrides import merge, override_key
from hyperlab.schema import Config, register

if TYPE_CHECKING:
    from hyperlab.checkpoint import Checkpoint
    from hyperlab.tracking import Tracker

register()


def _command() -> str:
    return " ".join(["hyperlab", *sys.argv[1:]])


# An absolute path: the configs are found from any directory, installed or editable.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def _choices(overrides: list[str] | None = None) -> dict[str, str]:
    """group -> option of this job, or of the config `overrides` compose."""
    if overrides is None:
        choices = HydraConfig.get().runtime.choices
    else:
        from hydra import compose

        choices = compose(
            "config", overrides=overrides, return_hydra_config=True
        ).hydra.runtime.choices
    return {g: c for g, c in choices.items() if c is not None and not g.startswith("hydra/")}


def compose_stored(overrides: list[str]) -> DictConfig:
    """compose() of overrides read back from a file (a checkpoint, a study's replay line):
    an override that does not parse, or a config that does not compose, becomes a
    ConfigError naming it, for the caller to name the file."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except HydraException as e:
            raise ConfigError(
                f"the override {o!r} does not parse: {_gist(e)}",
                "give the key on the command line (later overrides win), in Hydra's "
                "override grammar: https://hydra.cc/docs/advanced/override_grammar/basic/",
            ) from None
    try:
        return compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(
            f"they do not compose: {_gist(e)}",
            "override the key on the command line (later overrides win), or drop it with ~key",
        ) from None


def _gist(e: Exception) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip() and "hydra.cc/docs" not in ln]
    return " ".join(" ".join(lines).split())[:300] or type(e).__name__


def _resumed(
    cfg: DictConfig, overrides: list[str], runs: Path | None = None
) -> tuple[Config, list[str], Checkpoint]:
    """resume=REF: the checkpoint (resume=last: the newest in `runs`, the run dirs), and
    the config its run was trained with (its overrides) with this command's overrides on
    top. The stored overrides are data: without
    allow_targets, through the allowlist and the same validation as a command line; a
    checkpoint whose overrides fail is refused, naming it."""
    from hyperlab.allowlist import check_unwidened, stored
    from hyperlab.checkpoint import CheckpointError, load, locate
    from hyperlab.validate import validate

    ckpt = load(locate(str(cfg.resume), str(cfg.tracking.uri), runs))
    merged = [
        o for o in merge([*stored(ckpt.overrides), *overrides]) if override_key(o) != "resume"
    ]
    try:
        config = validate(compose_stored([*merged, f"resume={cfg.resume}"]))
        check_unwidened(config.allow_targets, cfg.allow_targets)
    except HyperlabError as e:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its stored overrides are refused: {e.problem}",
            f"{e.fix or 'fix the key it names'}; or resume from a checkpoint you trust",
        ) from None
    return config, merged, ckpt


def _retest(cfg: Config, overrides: list[str]) -> NoReturn:
    from hyperlab.search.retest import retest
    from hyperlab.tracking import drain

    try:
        retest(cfg, overrides, lambda o: (compose_stored(o), _choices(o)))
        drain()
    except HyperlabError as e:
        _exit_with(e)
    sys.exit(0)


HELP = """hyperlab: train a model, or search its hyperparameters, from config files.

  hyperlab [group=option ...] [key=value ...]   train one model (recorded in MLflow)
  hyperlab search=NAME [...]                    an Optuna study over a search space
  hyperlab -m key=a,b,c [...]                   a Hydra multirun: one run per value
  hyperlab experiment=NAME                      a lesson preset
  hyperlab task=studies [sweep.storage=...]     list the studies in a storage
  hyperlab --cfg job [overrides]                print the composed config, train nothing
  hyperlab --hydra-help                         Hydra's own flags

Config groups (group=option; * marks the default; conf/<group>/<option>.yaml):
"""


def _exit_with(e: HyperlabError) -> NoReturn:
    from hyperlab.display import exit_with

    _discard_run_dir()
    exit_with(e)


def _discard_run_dir() -> None:
    """Remove the run dir Hydra made for a single run that wrote nothing into it (refused,
    or a task that keeps no files): `ls -t outputs/runs` and resume=last then find the
    last run that trained. A dir holding anything beyond Hydra's own files is kept."""
    import shutil

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return
    out = Path(hc.runtime.output_dir)
    hydra_own = {hc.output_subdir, f"{hc.job.name}.log"}
    with contextlib.suppress(OSError):
        if {p.name for p in out.iterdir()} <= hydra_own:
            shutil.rmtree(out)


def _stopped(cfg: Config, opened: Sequence[Tracker], e: BaseException) -> NoReturn:
    """Say what a stopped run left recorded, once it is written, and exit 128 + signal."""
    from hyperlab.tracking import TrackingError, drain

    recorded = "nothing was recorded (tracking.enabled=false)"
    if cfg.tracking.enabled:
        try:
            drain()
            run_id = opened[0].run_id if len(opened) == 1 else None  # seed repeats: several
            recorded = (
                f"MLflow run {run_id} is recorded as KILLED"
                if run_id
                else "the MLflow runs it started are recorded as KILLED"
            )
        except TrackingError as error:
            recorded = f"its MLflow run could not be closed ({error.problem})"
    print(f"stopped by {stops.describe(e)}: {recorded}", file=sys.stderr)
    sys.exit(stops.exit_code(e))


def help_text() -> str:
    """The command's help: usage, and each config group's options read from conf/.

    Hydra's own --help lists them too, but composes a config repository per group to do
    it: a second and a half here, against a tenth for reading the directory."""
    import yaml

    root = Path(CONFIG_DIR)
    defaults: dict[str, str] = {}
    for item in yaml.safe_load((root / "config.yaml").read_text())["defaults"]:
        if isinstance(item, dict):
            defaults.update({str(k): str(v) for k, v in item.items()})
    lines = []
    for group in sorted(d for d in root.iterdir() if d.is_dir() and d.name != "hydra"):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        marked = [o + ("*" if defaults.get(group.name) == o else "") for o in options]
        lines.append(f"  {group.name}: {', '.join(marked)}")
    return (
        HELP
        + "\n".join(lines)
        + (
            "\n\nAny key of the config can be set (optimizer.beta1=0.95); "
            "`hyperlab --cfg job` shows them all.\nSee README.md for the lessons, studies "
            "and the MLflow UI."
        )
    )


def entry() -> None:
    """The `hyperlab` command: --help answered here, everything else by Hydra."""
    if any(a in ("--help", "-h") for a in sys.argv[1:]):
        print(help_text())
        return
    # SIGTERM (Slurm, Kubernetes, systemd) and SIGHUP stop a run as Ctrl-C does: its MLflow
    # run is closed as KILLED, a study's workers are stopped with it (hyperlab.stops).
    stops.install()
    if "tracking.enabled=false" not in sys.argv[1:]:
        from hyperlab.tracking import writer

        # MLflow's imports (1.4 s) overlap Hydra's composing and the config's checks; the
        # store is named once the config is known (writer(uri) below, a study's parent run).
        writer()
    try:
        main()
    except stops.STOPS as e:  # before a run started (composing the config, its checks)
        print(f"stopped by {stops.describe(e)} before a run started", file=sys.stderr)
        sys.exit(stops.exit_code(e))


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Train the configured model; return the objective for a sweeper."""
    from hyperlab.tracking import drain, writer
    from hyperlab.validate import validate

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    checkpoint = None
    try:
        config = validate(cfg)  # before anything starts: a bad value records nothing
        # Unresolved: an ${oc.env:...} override keeps its secret out of the records.
        overrides = [str(o) for o in OmegaConf.to_container(hc.overrides.task, resolve=False)]  # type: ignore[union-attr]
        if cfg.resume:
            if multirun:
                raise ConfigError(
                    "resume= continues one run; it cannot be part of a multirun",
                    "resume one run per command",
                )
            runs = Path(hc.runtime.output_dir).parent
            config, overrides, checkpoint = _resumed(cfg, overrides, runs)  # validated there
        if config.task == "gradcheck":
            from hyperlab.gradcheck import check_gradients

            worst = check_gradients(config)
            sys.exit(0 if worst < config.gradcheck.fail_at else 1)
        if config.task == "studies":
            from hyperlab.display import console
            from hyperlab.search import listing
            from hyperlab.stores import where

            listing.show(
                listing.studies(config.sweep.storage), where(config.sweep.storage), console
            )
            _discard_run_dir()
            sys.exit(0)
    except HyperlabError as e:
        _exit_with(e)
    if config.tracking.enabled:
        writer(config.tracking.uri)  # start it now: its imports overlap with torch's below
    if config.task == "retest":
        _retest(config, overrides)
    choices = _choices(overrides) if checkpoint else _choices()
    if config.progress:  # at once: torch's and the data's imports take seconds
        from hyperlab.display import console, header

        console.print(header(config, choices))
    # Imported here so that --help and --cfg do not pay for torch.
    from hyperlab.repeats import train
    from hyperlab.run import Job
    from hyperlab.tracking import PARENT_RUN_ID

    parent_file = Path(hc.runtime.output_dir).parent / PARENT_RUN_ID
    opened: list[Tracker] = []  # the run's MLflow run, once opened: a stop's message names it
    job = Job(
        choices=choices,
        announced=config.progress,
        overrides=overrides,
        command=_command(),
        output_dir=Path(hc.runtime.output_dir),
        parent_run_id=parent_file.read_text().strip()
        if multirun and parent_file.is_file()
        else None,
        resume=checkpoint,
        on_opened=opened.append,
    )
    if checkpoint:
        job.run_name = f"resumed at epoch {checkpoint.epoch}: {' '.join(overrides)}"
    try:
        value = train(config, job).objective
        if not multirun:
            drain()  # a multirun drains once, when it ends
    except HyperlabError as e:
        _exit_with(e)
    except stops.STOPS as e:
        _stopped(config, opened, e)
    if math.isnan(value) and not multirun:
        sys.exit(1)  # diverged: a single run failed; in a multirun the other jobs go on
    return value
