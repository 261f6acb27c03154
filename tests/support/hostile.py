"""Inputs that try to run code: a user's own package (the user_package fixture), a pickle
that proves it ran by creating a marker file, a checkpoint and a study that carry them, and
the replay lines a study could hold. Integration and end-to-end allowlist tests share them."""

from __future__ import annotations

import base64
import builtins
import pickle
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from hyperlab.checkpoint import save
from hyperlab.models import MLP
from hyperlab.search import study as st
from hyperlab.search.report import REPLAY_ATTR


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`mypkg`: a data set of its own (mypkg.data.load), and a re-export of pickle.loads."""
    root = tmp_path / "pythonpath"
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("from pickle import loads\n")
    (root / "mypkg" / "data.py").write_text(
        "import numpy as np\n\n\n"
        "def load(n: int = 200):\n"
        "    x = np.random.default_rng(0).normal(size=(n, 2))\n"
        "    return x, (x[:, 0] > 0).astype(int)\n"
    )
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


class Payload:
    """Unpickled, it creates `marker` (open(marker, "w")): proof that the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (str(self.marker), "w"))


def pickle_overrides(marker: Path) -> list[str]:
    """The issue's overrides: torch.load of a pickle built from the config, unsafely."""
    blob = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    inner = f"{{_target_:base64.b64decode,_args_:['{blob}']}}"
    return [
        "dataset._target_=torch.load",
        f"+dataset.f={{_target_:io.BytesIO,_args_:[{inner}]}}",
        "+dataset.weights_only=false",
    ]


def fake_checkpoint(path: Path, overrides: list[str]) -> Path:
    """A well-formed checkpoint file whose stored overrides are `overrides`."""
    model = MLP(n_features=2, n_classes=2, hidden_units=4, layers=1)
    return save(
        path,
        epoch=1,
        model=model,
        optimizer=torch.optim.Adam(model.parameters()),
        generator=torch.Generator(),
        overrides=overrides,
    )


def shared_study(journal: Path, replay: str) -> None:
    """A study with one complete trial whose replay attribute is `replay`."""
    s = optuna.create_study(study_name="shared", storage=st.storage(str(journal)))
    s.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.1},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)},
            value=0.5,
            user_attrs={REPLAY_ATTR: replay},
        )
    )


def pickle_line(marker: Path) -> str:
    # Quoted for the shell as hyperlab records replay lines: the attack must parse to run.
    return "hyperlab " + " ".join(shlex.quote(o) for o in pickle_overrides(marker))


REPLAYS = {
    # (the stored replay line, given the payload's marker file; a part of the message)
    "pickle": (pickle_line, "dataset._target_=torch.load is not allowed"),
    "allow_targets": (
        lambda m: "hyperlab allow_targets=[os.] dataset._target_=os.system",
        "dataset._target_=os.system is not allowed",
    ),
    "grammar": (lambda m: "hyperlab 'lr=[1,2'", "the override 'lr=[1,2' does not parse"),
    "composition": (lambda m: "hyperlab epoch=3", "they do not compose"),
    "range": (lambda m: "hyperlab lr=-1", "lr=-1.0 is not allowed"),
    "not hyperlab": (lambda m: "rm -rf / lr=0.1", "not a `hyperlab ...` command line"),
    "quotes": (lambda m: "hyperlab 'lr=0.1", "does not split into words"),
}
