"""Versions that hold (issue 11, section 8): every direct dependency is held below its next
major release, and each study and run records the versions it ran with, so that a retest
says when they changed.

Here: in this process, from composed configs;
unit/test_versions.py and e2e/test_versions.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra import compose

from hyperlab.search import study as st
from hyperlab.search.retest import retest
from hyperlab.search.setup import VERSIONS_ATTR
from hyperlab.tracking import versions
from support.paths import Compose
from support.records import stale_study


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
