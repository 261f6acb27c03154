"""The layout a newcomer walks, read from the source: every config group's option names its
code, only build.py instantiates, calls go one way (no import circle), a study's worker,
setup and storage code is Hydra-free, and no module grows past 450 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hyperlab.allowlist import check_target
from hyperlab.cli import CONFIG_DIR
from support.paths import SRC  # hyperlab and its Hydra plugin

HYDRA_FREE = ("hyperlab.search.worker", "hyperlab.search.setup", "hyperlab.search.study")
MAX_LINES = 450
# The config groups whose option selects code: each option file names it by `_target_`.
# (search, experiment and hydra hold settings and presets, no code of their own.)
CODE_GROUPS = (
    "dataset",
    "model",
    "init",
    "normalization",
    "regularization",
    "augment",
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


# --- imports: one direction, Hydra only at the study's face ---------------------------------


def _name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in SRC.rglob("*.py")}


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function (a lazy import is still
    a dependency), leaving out imports for type checking only."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)

    Visitor().visit(ast.parse(path.read_text()))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph`: its strongly connected components of two or more
    modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_src() -> None:
    graph = {m: (imported(p) & MODULES.keys()) - {m} for m, p in MODULES.items()}
    assert cycles(graph) == []


@pytest.mark.parametrize("module", HYDRA_FREE)
def test_a_studys_worker_setup_and_storage_import_no_hydra(module: str) -> None:
    hydra = sorted(m for m in imported(MODULES[module]) if m.split(".")[0] == "hydra")
    assert hydra == [], f"{module} imports {hydra}"
    # Nor does anything they import at their top.
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m == 'hydra'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_is_longer_than_450_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
