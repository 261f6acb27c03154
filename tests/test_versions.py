"""Versions that hold (issue 11, section 8): every direct dependency is held below its next
major release, and each study and run records the versions it ran with, so that a retest
says when they changed."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import optuna
import pytest
from hydra import compose
from mlflow import MlflowClient
from packaging.requirements import Requirement

from conftest import ROOT, Compose
from hyperlab.search import study as st
from hyperlab.search.retest import retest
from hyperlab.search.setup import VERSIONS_ATTR
from hyperlab.stores import DEFAULT_JOURNAL
from hyperlab.tracking import default_tags, version_changes, versions
from test_retest import stale_study
from test_sweep import QUICK, hyperlab


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


def test_retest_says_which_versions_changed(
    cfg: Compose, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = stale_study(tmp_path / "journal.log")
    s = optuna.load_study(study_name="stale", storage=st.storage(url))
    old = {**versions(), "optuna": "4.0.0", "torch": "2.3.0"}
    s.set_user_attr(VERSIONS_ATTR, old)
    own = [f"sweep.storage={url}", "study=stale", "top_k=1", "seeds=1", "task=retest"]
    config = cfg(*own)

    def composer(overrides: list[str]) -> tuple:  # type: ignore[type-arg]
        return compose("config", overrides=["tracking.enabled=false", *overrides]), {}

    retest(config, own, composer)
    out = " ".join(capsys.readouterr().out.split())  # as one line, whatever the width
    line = out[out.index("versions changed") :].split(" trial ")[0]
    assert f"torch 2.3.0 -> {versions()['torch']}" in line
    assert f"optuna 4.0.0 -> {versions()['optuna']}" in line
    assert "mlflow" not in line  # unchanged

    s.set_user_attr(VERSIONS_ATTR, versions())
    retest(config, own, composer)
    assert "versions changed" not in capsys.readouterr().out


@pytest.mark.slow
def test_a_study_records_its_versions_and_retest_reports_a_change(tmp_path: Path) -> None:
    args = ["search=lr", *QUICK, "sweep.n_trials=2"]
    r = hyperlab(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    storage = st.storage(str(tmp_path / DEFAULT_JOURNAL))
    (name,) = optuna.get_all_study_names(storage)
    s = optuna.load_study(study_name=name, storage=storage)
    assert s.user_attrs[VERSIONS_ATTR] == versions()

    runs = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").search_runs(["1"])
    (parent,) = [r for r in runs if r.info.run_name == f"study {name}"]
    for package, version in versions().items():
        assert parent.data.params[f"version.{package}"] == version
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2
    assert all(t.data.tags["version.optuna"] == versions()["optuna"] for t in trials)

    # As if the study had been made with an older Optuna: a resume says so, and the record
    # of what it was made with stays.
    old = {**versions(), "optuna": "4.0.0"}
    s.set_user_attr(VERSIONS_ATTR, old)
    r = hyperlab(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    assert f"optuna 4.0.0 -> {versions()['optuna']}" in r.stderr
    assert optuna.load_study(study_name=name, storage=storage).user_attrs[VERSIONS_ATTR] == old

    r = hyperlab(tmp_path, "task=retest", f"study={name}", "top_k=1", "seeds=1")
    assert r.returncode == 0, r.stderr
    assert f"versions changed since the study ran: optuna 4.0.0 -> {versions()['optuna']}" in (
        " ".join(r.stdout.split())
    )
    runs = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").search_runs(["1"])
    (retested,) = [r for r in runs if r.info.run_name == f"retest {name}"]
    assert retested.data.tags["hyperlab.versions_changed"] == (
        f"optuna 4.0.0 -> {versions()['optuna']}"
    )
