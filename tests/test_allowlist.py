"""Nothing runs from a shared file: every `_target_` a config names passes an allowlist
before anything is built or recorded, and the overrides a checkpoint or a study stores are
data that pass it too (issue 11, section 1).

The three attacks of the issue run as real commands: a `_target_` on the command line that
would truncate a file, a checkpoint whose stored overrides would run a pickle, and a study
whose replay line would. Each is refused (exit 2, the key or the file named), the victim
file is unchanged, the pickle's payload (it creates a marker file) never runs, and the
MLflow store and the journal are byte for byte as they were."""

from __future__ import annotations

import base64
import builtins
import os
import pickle
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml

from conftest import CONF, Compose
from hyperlab import allowlist, build
from hyperlab.allowlist import check_allow_targets, check_target, stored
from hyperlab.build import _instantiate
from hyperlab.checkpoint import CheckpointError, save
from hyperlab.cli import _resumed, compose_stored
from hyperlab.errors import ConfigError
from hyperlab.models import MLP
from hyperlab.search import study as st
from hyperlab.search.report import REPLAY_ATTR
from hyperlab.search.retest import retest
from hyperlab.validate import validate

HYPERLAB = str(Path(sys.executable).parent / "hyperlab")


# --- the allowlist itself ------------------------------------------------------------------------


def shipped_targets() -> list[tuple[str, str]]:
    """(file: key, target) of every `_target_` in every shipped config file."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        for key, target in allowlist.targets(yaml.safe_load(path.read_text()) or {}):
            found.append((f"{path.relative_to(CONF)}: {key}", target))
    return found


def test_every_shipped_target_passes_the_allowlist() -> None:
    found = shipped_targets()
    assert len(found) > 30  # every group's options, and the multirun callback
    for where, target in found:
        check_target(where, target)  # as validation checks it, without importing
        allowlist.check_node({"_target_": target})  # as the builder does, resolved


@pytest.mark.parametrize(
    "target",
    [
        "builtins.open",
        "torch.load",
        "io.BytesIO",
        "os.system",
        "pickle.loads",
        "hyperlab.checkpoint.save",  # hyperlab, but no builder
        "hyperlab.tracking.start_run",
        "hyperlab.data.torch.load",  # a builder module's import, reached through it
        "hyperlab.models.torch.load",
        "hyperlab.build.instantiate",
        "hyperlab.data._existing",  # private
        "hyperlab.models.MLP.__init__",
        "hyperlab.data.",
        "optuna.samplers.nsgaii.NSGAIISampler",
        "optuna.storages.JournalStorage",
        "",
        "mypkg.Thing",  # a user's class, not allowed by allow_targets
    ],
)
def test_a_target_outside_the_allowlist_is_refused(target: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("model._target_=")) as e:
        check_target("model._target_", target)
    assert "allow_targets=['mypkg.']" in e.value.fix or "public" in str(e.value)


def test_a_non_string_target_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a dotted name"):
        check_target("model._target_", 3)


@pytest.mark.parametrize(
    "entry", ["", "builtins", "builtins.", "os.", "os.path.", "torch.", "torch.optim.", "sys."]
)
def test_an_allow_targets_entry_that_opens_too_much_is_refused(entry: str) -> None:
    with pytest.raises(ConfigError, match="allow_targets") as e:
        check_allow_targets([entry])
    assert "mypkg." in e.value.fix


@pytest.mark.parametrize("entry", ["mypkg", "hyperlab.", "1bad.", "my pkg.", "mypkg..x"])
def test_a_malformed_or_whole_package_entry_is_refused(entry: str) -> None:
    with pytest.raises(ConfigError, match="allow_targets"):
        check_allow_targets([entry])


def test_prefixes_end_with_a_dot_or_name_one_thing() -> None:
    assert check_allow_targets(["mypkg.", "other.mod.Net"]) == ("mypkg.", "other.mod.Net")
    assert check_allow_targets(None) == ()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        # A nested target in a dict value, as the checkpoint attack's io.BytesIO.
        (
            ["+dataset.f={_target_:io.BytesIO}"],
            "dataset.f._target_=io.BytesIO",
        ),
        # Hydra resolves targets inside _args_ lists too.
        (
            ["+model.extra={_target_:hyperlab.models.MLP,_args_:[{_target_:builtins.bytes}]}"],
            "model.extra._args_.0._target_=builtins.bytes",
        ),
        # Outside any group that is built: still refused.
        (["+anything={_target_:os.system}"], "anything._target_=os.system"),
        (["dataset._target_=builtins.open"], "dataset._target_=builtins.open"),
        # A search space that samples a target (the override nests the key).
        (
            ["search=lr", "+search.params.dataset._target_={choices:[builtins.open]}"],
            "search.params.dataset._target_=",
        ),
    ],
)
def test_validation_checks_every_target_in_the_tree(
    cfg: Compose, overrides: list[str], key: str
) -> None:
    with pytest.raises(ConfigError, match="_target_") as e:
        validate(cfg(*overrides))
    assert key in e.value.problem


def test_a_searched_target_is_checked_choice_by_choice() -> None:
    space = {"lr": {"low": 0.1, "high": 1.0}, "dataset._target_": {"choices": []}}
    ok = ["hyperlab.data.moons", "hyperlab.data.circles"]
    allowlist.check_config({"search": {"params": {**space, "dataset._target_": {"choices": ok}}}})
    bad = {"choices": [*ok, "builtins.open"]}
    with pytest.raises(ConfigError, match=re.escape("dataset._target_=builtins.open is not")):
        allowlist.check_config({"search": {"params": {**space, "dataset._target_": bad}}})


def test_the_builder_checks_again_before_it_builds(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    node = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    with pytest.raises(ConfigError, match=re.escape("_target_=builtins.open")):
        _instantiate(node)
    nested = {"_target_": "hyperlab.schedules.Constant", "lr": {**node, "_args_": []}}
    with pytest.raises(ConfigError, match=re.escape("lr._target_=builtins.open")):
        _instantiate(nested)
    with pytest.raises(ConfigError, match=re.escape("args_.0._target_=builtins.open")):
        build.instantiate({"_target_": "hyperlab.models.MLP", "_args_": [node]})
    assert victim.read_text() == "precious"


def test_stored_overrides_cannot_set_allow_targets() -> None:
    overrides = [
        "allow_targets=[evil.]",
        "+allow_targets=[evil.]",
        "++allow_targets=[evil.]",
        " allow_targets = [evil.]",
        "allow_targets.0=evil.",
        "~allow_targets",
        "lr=0.1",
        "allow_targets_x=1",
    ]
    assert stored(overrides) == ["lr=0.1", "allow_targets_x=1"]


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


def test_allow_targets_lets_a_users_class_in_and_nothing_it_imports(
    cfg: Compose, user_package: Path
) -> None:
    with pytest.raises(
        ConfigError, match=re.escape("dataset._target_=mypkg.data.load is not allowed")
    ):
        validate(cfg("dataset._target_=mypkg.data.load"))
    plain = validate(cfg("allow_targets=[mypkg.]", "dataset._target_=mypkg.data.load"))
    assert plain["allow_targets"] == ["mypkg."]
    with pytest.raises(ConfigError, match=re.escape("it is _pickle.loads, defined outside mypkg")):
        validate(cfg("allow_targets=[mypkg.]", "dataset._target_=mypkg.loads"))
    with pytest.raises(ConfigError, match="cannot be imported"):
        validate(cfg("allow_targets=[mypkg.]", "dataset._target_=mypkg.data.nothing"))


# --- the attacks, through the real command ----------------------------------------------------


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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow store that already holds a finished run."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    c = MlflowClient(f"sqlite:///{db}")
    run = c.create_run(c.create_experiment("hyperlab"))
    c.log_param(run.info.run_id, "lr", "0.1")
    c.set_terminated(run.info.run_id)
    return db


def recorded(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("select run_uuid, status, end_time from runs order by 1").fetchall()


def hyperlab(
    cwd: Path, *args: str, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300"}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [HYPERLAB, *args, "progress=false"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def refused(r: subprocess.CompletedProcess[str], *parts: str) -> None:
    message = " ".join(r.stderr.split())
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "fix:" in message
    for part in parts:
        assert part in message, r.stderr


def test_a_target_on_the_command_line_cannot_truncate_a_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    db = tmp_path / "outputs" / "mlflow.db"
    r = hyperlab(
        tmp_path,
        "dataset._target_=builtins.open",
        "+dataset.file=victim.txt",
        "+dataset.mode=w",
        "epochs=1",
    )
    refused(r, "dataset._target_=builtins.open is not allowed", "hyperlab.data.", "allow_targets")
    assert victim.read_text() == "precious"
    assert not db.exists()  # refused before the tracking store was opened


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


@pytest.mark.slow
def test_a_checkpoint_cannot_run_a_pickle(tmp_path: Path, store: Path) -> None:
    marker = tmp_path / "marker"
    ckpt = fake_checkpoint(tmp_path / "shared.pt", pickle_overrides(marker))
    before = recorded(store)
    r = hyperlab(tmp_path, f"resume={ckpt}", "epochs=3", f"tracking.uri=sqlite:///{store}")
    assert not marker.exists()  # the pickle never ran
    refused(r, f"checkpoint {ckpt}", "dataset._target_=torch.load is not allowed")
    assert recorded(store) == before


@pytest.mark.slow
def test_a_checkpoint_cannot_widen_its_own_allowlist(
    tmp_path: Path, store: Path, user_package: Path
) -> None:
    marker = tmp_path / "marker"
    (user_package / "evil.py").write_text(
        f"def boom():\n    open({str(marker)!r}, 'w')\n    return [], []\n"
    )
    ckpt = fake_checkpoint(
        tmp_path / "shared.pt", ["allow_targets=[evil.]", "dataset._target_=evil.boom"]
    )
    before = recorded(store)
    r = hyperlab(
        tmp_path,
        f"resume={ckpt}",
        "epochs=3",
        f"tracking.uri=sqlite:///{store}",
        pythonpath=user_package,
    )
    assert not marker.exists()
    refused(r, f"checkpoint {ckpt}", "dataset._target_=evil.boom is not allowed")
    assert "allow_targets (empty)" in " ".join(r.stderr.split())
    assert recorded(store) == before


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


@pytest.mark.slow
@pytest.mark.parametrize("case", REPLAYS)
def test_a_study_cannot_run_code_or_bad_values_from_its_replay_lines(
    tmp_path: Path, store: Path, case: str
) -> None:
    line, message = REPLAYS[case]
    marker = tmp_path / "marker"
    journal = tmp_path / "shared.log"
    shared_study(journal, line(marker))
    before, data = recorded(store), journal.read_bytes()
    r = hyperlab(
        tmp_path,
        "task=retest",
        "study=shared",
        f"sweep.storage={journal}",
        "epochs=2",
        f"tracking.uri=sqlite:///{store}",
    )
    assert not marker.exists()
    refused(r, f"study 'shared' in {journal}", "trial 0's stored replay line is refused", message)
    assert journal.read_bytes() == data
    assert recorded(store) == before


@pytest.mark.slow
def test_allow_targets_on_the_command_line_trains_a_users_data_set(
    tmp_path: Path, store: Path, user_package: Path
) -> None:
    args = ["dataset._target_=mypkg.data.load", "epochs=1", f"tracking.uri=sqlite:///{store}"]
    before = recorded(store)
    r = hyperlab(tmp_path, *args, pythonpath=user_package)
    refused(r, "dataset._target_=mypkg.data.load is not allowed")
    assert recorded(store) == before
    r = hyperlab(tmp_path, "allow_targets=[mypkg.]", *args, pythonpath=user_package)
    assert r.returncode == 0, r.stderr
    assert len(recorded(store)) == len(before) + 1


# --- the same refusals in-process (fast): resume's and retest's own code paths -------------------


def test_resume_refuses_a_checkpoint_whose_overrides_name_code(
    cfg: Compose, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    ckpt = fake_checkpoint(tmp_path / "shared.pt", pickle_overrides(marker))
    config = cfg(f"resume={ckpt}", "epochs=3")
    with pytest.raises(CheckpointError, match=f"checkpoint {re.escape(str(ckpt))}") as e:
        _resumed(config, [f"resume={ckpt}", "epochs=3"])
    assert "dataset._target_=torch.load is not allowed" in e.value.problem
    assert "allow_targets" in e.value.fix and "a checkpoint you trust" in e.value.fix
    assert not marker.exists()


def test_resume_drops_a_stored_allow_targets_and_keeps_the_live_one(
    cfg: Compose, tmp_path: Path, user_package: Path
) -> None:
    ckpt = fake_checkpoint(
        tmp_path / "shared.pt", ["allow_targets=[mypkg.]", "dataset._target_=mypkg.data.load"]
    )
    with pytest.raises(CheckpointError, match=re.escape("mypkg.data.load is not allowed")):
        _resumed(cfg(f"resume={ckpt}"), [f"resume={ckpt}"])
    live = ["allow_targets=[mypkg.]", f"resume={ckpt}"]
    config, overrides, _ = _resumed(cfg(*live), live)
    assert config.allow_targets == ["mypkg."] and config.dataset._target_ == "mypkg.data.load"
    assert overrides == ["dataset._target_=mypkg.data.load", "allow_targets=[mypkg.]"]


@pytest.mark.parametrize("case", REPLAYS)
def test_retest_refuses_a_study_whose_replay_line_fails(
    cfg: Compose, tmp_path: Path, case: str
) -> None:
    line, message = REPLAYS[case]
    marker, journal = tmp_path / "marker", tmp_path / "shared.log"
    shared_study(journal, line(marker))
    data = journal.read_bytes()
    own = [f"sweep.storage={journal}", "study=shared", "task=retest", "epochs=2"]
    config = cfg(*own)
    with pytest.raises(ConfigError, match=f"study 'shared' in {re.escape(str(journal))}") as e:
        retest(config, own, lambda o: (compose_stored(["tracking.enabled=false", *o]), {}))
    assert not marker.exists()
    assert message in e.value.problem and e.value.fix
    assert journal.read_bytes() == data


def test_a_sweep_worker_builds_a_users_sampler_that_allow_targets_names(
    cfg: Compose, user_package: Path
) -> None:
    from hyperlab.search.setup import make_sampler, setup_of

    (user_package / "mypkg" / "samplers.py").write_text(
        "import optuna\n\n\ndef mine(seed: int = 0):\n"
        "    return optuna.samplers.RandomSampler(seed=seed)\n"
    )
    allowlist._approved.clear()  # a worker process: nothing validated in it yet
    mine = ["search=lr", "sampler=random", "sampler._target_=mypkg.samplers.mine"]
    config = cfg(*mine)
    with pytest.raises(ConfigError, match=re.escape("_target_=mypkg.samplers.mine is not")):
        make_sampler(config, setup_of(config, []), 0)
    config = cfg("allow_targets=[mypkg.]", *mine)
    assert isinstance(make_sampler(config, setup_of(config, []), 0), optuna.samplers.RandomSampler)


def test_a_checkpoint_cannot_widen_the_allowlist_through_a_preset(
    cfg: Compose, tmp_path: Path, user_package: Path
) -> None:
    presets = tmp_path / "conf" / "experiment"
    presets.mkdir(parents=True)
    (presets / "evil.yaml").write_text(
        "# @package _global_\nallow_targets: [mypkg.]\ndataset:\n  _target_: mypkg.data.load\n"
    )
    ckpt = fake_checkpoint(
        tmp_path / "shared.pt",
        [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=evil"],
    )
    with pytest.raises(CheckpointError, match=re.escape("they set allow_targets to ['mypkg.']")):
        _resumed(cfg(f"resume={ckpt}"), [f"resume={ckpt}"])
