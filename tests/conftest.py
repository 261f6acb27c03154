from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from hyperlab.cli import CONFIG_DIR

# tests/services.py holds helpers that assert; test modules import it before pytest loads
# it as a plugin (pytest_plugins), so its asserts are rewritten from here, before any.
pytest.register_assert_rewrite("services")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Keep the suite on one thread per process, as the runner does.
os.environ.setdefault("OMP_NUM_THREADS", "1")

Compose = Callable[..., DictConfig]


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


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
