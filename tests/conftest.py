"""Fixtures for every test: unit/ (library pieces), integration/ (configs composed in this
process), e2e/ (the `hyperlab` command, real servers, signals). Shared helpers live in
support/."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from hyperlab.cli import CONFIG_DIR

# support/ holds helpers that assert: their asserts are rewritten if this comes before
# anything imports them (test modules and the plugin below import them after conftest).
pytest.register_assert_rewrite("support")

from support.paths import Compose  # noqa: E402

# Fixtures for the tests that ask for them: real servers (postgres, tracking_server), a
# user's own package (user_package).
pytest_plugins = ["support.servers", "support.hostile"]

# Keep the suite on one thread per process, as the runner does.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The data cache of this run's processes (the tests' own and the commands they start): one
# for the session, out of the user's ~/.cache.
os.environ.setdefault("HYPERLAB_CACHE_DIR", tempfile.mkdtemp(prefix="hyperlab-test-cache-"))


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the session: creating its tables costs seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def cfg(tmp_path: Path, mlflow_uri: str, request: pytest.FixtureRequest) -> Iterator[Compose]:
    """compose(*overrides) -> the config a `hyperlab ...` line would get: quiet, short, and
    tracked in the session's store under an experiment named after the test."""
    experiment = request.node.name

    def make(*overrides: str, tracking: bool = False) -> DictConfig:
        base = [
            "progress=false",
            f"tracking.enabled={str(tracking).lower()}",
            f"tracking.uri='{mlflow_uri}'",
            f"tracking.experiment='{experiment}'",
            f"tracking.artifacts='{tmp_path / 'artifacts'}'",
        ]
        return compose(config_name="config", overrides=[*base, *overrides])

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        yield make
