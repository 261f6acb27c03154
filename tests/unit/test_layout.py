"""The layout a newcomer walks: each check is its own function (more join them later)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from hyperlab.allowlist import check_target
from hyperlab.cli import CONFIG_DIR
from support.paths import ROOT

SRC = ROOT / "src"  # hyperlab and its Hydra plugin
# The config groups whose option selects code: each option file names it by `_target_`.
# (search, experiment and hydra hold settings and presets, no code of their own.)
CODE_GROUPS = (
    "dataset",
    "model",
    "init",
    "normalization",
    "regularization",
    "optimizer",
    "schedule",
    "sampler",
    "pruner",
)


def option_files(group: str) -> list[Path]:
    return sorted((Path(CONFIG_DIR) / group).glob("*.yaml"))


def own_target(path: Path) -> object:
    """The option's `_target_`, or, for an alias (`defaults: [tpe]`), its base option's."""
    node = yaml.safe_load(path.read_text()) or {}
    if "_target_" not in node and node.get("defaults"):
        (base,) = node["defaults"]
        return own_target(path.with_name(f"{base}.yaml"))
    return node.get("_target_")


@pytest.mark.parametrize("group", CODE_GROUPS)
def test_every_option_of_a_code_group_names_its_code(group: str) -> None:
    files = option_files(group)
    assert files, f"conf/{group} has no options"
    for path in files:
        target = own_target(path)
        assert target, f"conf/{group}/{path.name} has no _target_"
        check_target(f"{group}/{path.name}: _target_", target)  # hyperlab's or Optuna's


def instantiate_uses(path: Path) -> list[str]:
    """Where a module imports or calls Hydra's instantiate, by any name it binds."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, functions, modules = [], set(), set()  # names bound to instantiate / to hydra
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "hydra":
                    modules.add(alias.asname or "hydra")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hydra":
            for alias in node.names:
                bound = alias.asname or alias.name
                if alias.name == "instantiate":
                    functions.add(bound)
                    found.append(f"{path.name}:{node.lineno} imports instantiate")
                else:
                    modules.add(bound)  # `from hydra import utils`
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in functions:
            found.append(f"{path.name}:{node.lineno} calls {f.id}")
        elif isinstance(f, ast.Attribute) and f.attr == "instantiate":
            base = ast.unparse(f.value)
            if base.split(".")[0] in modules:
                found.append(f"{path.name}:{node.lineno} calls {base}.instantiate")
    return found


def test_only_build_py_instantiates() -> None:
    users = {
        str(p.relative_to(SRC)): uses
        for p in sorted(SRC.rglob("*.py"))
        if (uses := instantiate_uses(p))
    }
    assert set(users) == {"hyperlab/build.py"}, users


def test_the_instantiate_finder_sees_each_spelling(tmp_path: Path) -> None:
    """The check above would pass on a finder that sees nothing: it sees these."""
    spellings = [
        "from hydra.utils import instantiate\ninstantiate(node)",
        "from hydra.utils import instantiate as make\nmake(node)",
        "import hydra.utils\nhydra.utils.instantiate(node)",
        "import hydra\nhydra.utils.instantiate(node)",
        "import hydra.utils as hu\nhu.instantiate(node)",
        "from hydra import utils\nutils.instantiate(node)",
    ]
    for i, code in enumerate(spellings):
        path = tmp_path / f"m{i}.py"
        path.write_text(code + "\n")
        assert instantiate_uses(path), code
