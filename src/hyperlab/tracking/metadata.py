"""What a run and a study record about themselves besides their metrics: MLflow params
(the chosen options and the resolved config), the default tags (command, user, git
commit, library versions) and the parent-run names that nest a trial under its study."""

from __future__ import annotations

import functools
import getpass
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hyperlab.errors import masked

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
PARENT_TAG = "mlflow.parentRunId"
# Where a study (a user attribute) or a multirun (a file in its sweep directory) keeps the
# id of its MLflow parent run, for its trials and jobs to nest under.
PARENT_RUN_ID = "mlflow_parent_run_id"

# Whose versions a run and a study record: a new release of any may change results
# (sampler defaults, initializations) or the stores' schemas.
VERSIONED = ("python", "hyperlab", "torch", "optuna", "mlflow", "hydra-core")


@functools.cache
def git_commit() -> str | None:
    """The HEAD commit of the git work tree the command runs in (the experiment's configs),
    else of the one hyperlab's code is in (an editable install), else None."""
    for cwd in (None, Path(__file__).parent):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def params_of(config: Mapping[str, Any], choices: Mapping[str, str]) -> dict[str, str]:
    """MLflow params: the chosen option of each group (`optimizer=adam`) and every leaf of
    the resolved config under its dotted key (`optimizer.beta1`), without Hydra's
    instantiation keys, Hydra's node or the tracking settings."""
    # Imported here: the schema brings OmegaConf, which the writer process, importing this
    # package first, has no use for.
    from hyperlab.schema import UNRECORDED
    from hyperlab.validate import flatten

    params = {group: str(option) for group, option in choices.items()}
    for key, value in flatten({k: v for k, v in config.items() if k not in UNRECORDED}):
        if key.endswith(("._target_", "._partial_")):
            continue
        params[key] = masked(str(value))[:MAX_PARAM_LENGTH]
    return params


@functools.cache
def versions() -> dict[str, str]:
    """The installed versions of VERSIONED, read from the packages' metadata (without
    importing them)."""
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in VERSIONED[1:]:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def version_changes(then: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """`name then -> now` for each package recorded in `then` whose version differs now."""
    return [
        f"{name} {old} -> {now.get(name, 'not installed')}"
        for name, old in then.items()
        if now.get(name, "not installed") != old
    ]


def default_tags(command: str) -> dict[str, str]:
    """The command line (its passwords masked), the user, the git commit and the versions
    of the libraries that decide results (`version.torch` ...)."""
    tags = {"hyperlab.command": masked(command), "mlflow.user": getpass.getuser()}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tags.update({f"version.{name}": v for name, v in versions().items()})
    return tags
