"""The allowlist of `_target_`s (issue 11, section 1), in this process: validation, resume,
retest and the sweep worker check every target a config, a checkpoint or a study names.
unit/test_allowlist.py and e2e/test_allowlist.py hold the rest."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import optuna
import pytest

from hyperlab import allowlist
from hyperlab.checkpoint import CheckpointError
from hyperlab.cli import _resumed, compose_stored
from hyperlab.errors import ConfigError
from hyperlab.search.retest import retest
from hyperlab.validate import validate
from support.hostile import REPLAYS, fake_checkpoint, pickle_overrides, shared_study
from support.paths import Compose


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


def test_allow_targets_lets_a_users_class_in_and_nothing_it_imports(
    cfg: Compose, user_package: Path
) -> None:
    with pytest.raises(
        ConfigError, match=re.escape("dataset._target_=mypkg.data.load is not allowed")
    ):
        validate(cfg("dataset._target_=mypkg.data.load"))
    plain = validate(cfg("allow_targets=[mypkg.]", "dataset._target_=mypkg.data.load"))
    assert plain.allow_targets == ["mypkg."]
    with pytest.raises(ConfigError, match=re.escape("it is _pickle.loads, defined outside mypkg")):
        validate(cfg("allow_targets=[mypkg.]", "dataset._target_=mypkg.loads"))
    with pytest.raises(ConfigError, match="cannot be imported"):
        validate(cfg("allow_targets=[mypkg.]", "dataset._target_=mypkg.data.nothing"))


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
    assert config.allow_targets == ["mypkg."] and config.dataset["_target_"] == "mypkg.data.load"
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
    mine = ["search=lr", "sampler=random", "sampler._target_=mypkg.samplers.mine"]
    config = validate(cfg("allow_targets=[mypkg.]", *mine))
    allowlist._approved.clear()  # a worker process: nothing validated in it yet
    # The same config without the live command's allow_targets: the sampler's own check.
    refused = dataclasses.replace(config, allow_targets=[])
    with pytest.raises(ConfigError, match=re.escape("_target_=mypkg.samplers.mine is not")):
        make_sampler(refused, setup_of(refused, []), 0)
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
