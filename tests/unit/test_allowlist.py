"""The allowlist of `_target_`s (issue 11, section 1), on its own: which targets and
allow_targets entries pass, and that stored overrides cannot set allow_targets.
integration/test_allowlist.py and e2e/test_allowlist.py hold the rest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hyperlab import allowlist, build
from hyperlab.allowlist import check_allow_targets, check_target, stored
from hyperlab.build import _instantiate
from hyperlab.errors import ConfigError
from support.paths import CONF


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


def test_a_flat_node_is_built_from_its_kept_partial_as_hydra_builds_it(tmp_path: Path) -> None:
    """build.instantiate keeps a flat node's partial (a stack builds the same nodes per
    member): each call still makes its own object, takes its keyword arguments, and the
    allowlist is checked for what the partial would build."""
    from hydra.utils import instantiate as hydra_instantiate

    from hyperlab.models import Regularization
    from hyperlab.schedules import Exponential

    node = {"_target_": "hyperlab.schedules.Exponential", "rate": 0.5}
    a, b = build.instantiate(node), build.instantiate(node)
    assert isinstance(a, Exponential) and a is not b and vars(a) == vars(hydra_instantiate(node))
    assert build.instantiate(node, rate=0.25)(2) == pytest.approx(0.0625)
    partial = build.instantiate({"_target_": "hyperlab.models.Regularization", "_partial_": True})
    one, two = partial(l2=0.1), partial(l2=0.2)
    assert isinstance(one, Regularization) and (one.l2, two.l2) == (0.1, 0.2)
    made = build.instantiate({"_target_": "hyperlab.models.Regularization"}, _partial_=True)
    assert made(keep_prob=0.5).keep_prob == 0.5
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    bad = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    for _ in range(2):  # refused every time, never kept
        with pytest.raises(ConfigError, match=re.escape("_target_=builtins.open")):
            build.instantiate(bad)
    assert victim.read_text() == "precious"
