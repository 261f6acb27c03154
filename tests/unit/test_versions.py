"""Versions that hold (issue 11, section 8): every direct dependency is held below its next
major release, and each study and run records the versions it ran with, so that a retest
says when they changed.

Here: the pieces on their own;
integration/test_versions.py and e2e/test_versions.py hold the rest."""

from __future__ import annotations

import tomllib
from importlib import metadata

import optuna
import pytest
from packaging.requirements import Requirement

from hyperlab.tracking import default_tags, version_changes, versions
from support.paths import ROOT


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


@pytest.mark.parametrize("req", requirements(), ids=str)
def test_every_dependency_is_held_below_its_next_major(req: Requirement) -> None:
    upper = [s for s in req.specifier if s.operator in ("<", "<=", "~=", "==")]
    lower = [s for s in req.specifier if s.operator in (">=", "~=", "==")]
    assert upper, f"{req}: no upper bound"
    assert lower, f"{req}: no lower bound"


@pytest.mark.parametrize("req", requirements(), ids=str)
def test_the_installed_release_is_within_the_pins(req: Requirement) -> None:
    """The pins hold the releases the tests run on (else the bounds are guesses)."""
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{req.name} is not installed here (an extra)")
    assert req.specifier.contains(installed.split("+")[0], prereleases=True), (
        f"{req.name} {installed} is outside {req.specifier}"
    )


def test_the_pins_of_the_decisive_libraries() -> None:
    pins = {r.name: str(r.specifier) for r in requirements()}
    for name, bound in (("optuna", "<6"), ("mlflow", "<4"), ("hydra-core", "<1.4")):
        assert bound in pins[name].split(","), pins[name]


def test_versions_are_the_installed_ones() -> None:
    import hydra
    import torch

    found = versions()
    assert set(found) == {"python", "hyperlab", "torch", "optuna", "mlflow", "hydra-core"}
    assert found["torch"] == torch.__version__
    assert found["optuna"] == optuna.__version__
    assert found["hydra-core"] == hydra.__version__
    assert found["mlflow"] == metadata.version("mlflow")


def test_every_run_is_tagged_with_the_versions() -> None:
    tags = default_tags("hyperlab epochs=1")
    assert {k: v for k, v in tags.items() if k.startswith("version.")} == {
        f"version.{k}": v for k, v in versions().items()
    }


def test_version_changes_lists_each_change() -> None:
    now = {"torch": "2.13.0", "optuna": "5.0.0", "mlflow": "3.17.2"}
    then = {"torch": "2.13.0", "optuna": "4.5.0", "mlflow": "3.17.2", "gone": "1.0"}
    assert version_changes(then, now) == ["optuna 4.5.0 -> 5.0.0", "gone 1.0 -> not installed"]
    assert version_changes(now, now) == []
    assert version_changes({}, now) == []  # a study that recorded none: nothing to say
