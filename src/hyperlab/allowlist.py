"""Which code a config may name: every `_target_` is checked against an allowlist before
anything is built or recorded.

Hydra's instantiate imports and calls whatever a `_target_` names, and its own blocklist
stops only a few names (`os.system`...): `builtins.open`, `torch.load` or `io.BytesIO` pass.
Configs come from elsewhere (a checkpoint's stored overrides, a study's replay lines, a
colleague's command), so only an allowlist is safe:

- hyperlab's builders (BUILTIN): one public name defined in one of the modules the config
  groups use, checked on the module's source, so checking a config imports nothing heavy;
- Optuna's samplers and pruners, which conf/sampler and conf/pruner name;
- what the live command line (or conf/config.yaml) allows with `allow_targets: [mypkg.]`:
  a package prefix ending in "." or one exact dotted name. A checkpoint or a study cannot
  set it: `stored` drops it from their overrides, and `check_unwidened` refuses a config
  composed from them that sets it another way (a preset, a config search path).

A name is checked as written and, where it is imported, as resolved: the object must be
defined inside the allowed package, so `hyperlab.checkpoint.torch.load` or a re-export of
`pickle.loads` from an allowed package is refused too.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hyperlab.errors import ConfigError

# The modules the config groups build from, and the library classes they name.
BUILTIN = (
    "hyperlab.data.",
    "hyperlab.augment.",
    "hyperlab.init.",
    "hyperlab.models.",
    "hyperlab.optim.",
    "hyperlab.schedules.",
    "hyperlab.search.samplers.",
    "hyperlab.search.coarse_to_fine.",
    "hyperlab.callbacks.",  # the MLflow parent run of a multirun (conf/config.yaml's hydra)
    "optuna.samplers.",
    "optuna.pruners.",
)
KEY = "allow_targets"
# Roots whose namespaces can read pickles, run code or open files (or hyperlab's own,
# beyond its builders): allow_targets may not open them.
_LIBRARIES = frozenset(
    {
        "hyperlab",
        "torch",
        "numpy",
        "scipy",
        "sklearn",
        "pandas",
        "joblib",
        "loky",
        "hydra",
        "omegaconf",
        "optuna",
        "mlflow",
        "yaml",
        "dill",
        "cloudpickle",
        "sqlalchemy",
        "IPython",
    }
)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
FIX = (
    "use a hyperlab config option (hyperlab --help lists them), or, for a class or function "
    "of your own, name its package on the command line: allow_targets=['mypkg.']"
)

# User prefixes that a validated config allowed in this process: the defensive check at
# build time accepts them (a validated config's allow_targets come from the live command
# line, never from stored data).
_approved: set[str] = set()


def allowed_text(allow: Sequence[str] = ()) -> str:
    """The allowed prefixes, as an error message states them."""
    extra = ", ".join(allow) if allow else "empty"
    return f"{', '.join(BUILTIN)}, or under allow_targets ({extra})"


def check_allow_targets(entries: Any) -> tuple[str, ...]:
    """The `allow_targets` setting, checked: a list of package prefixes ending in "." or
    exact dotted names, none of which opens the standard library or a library that can
    load or run code."""
    if entries is None:
        return ()
    if not isinstance(entries, list | tuple):
        raise ConfigError(
            f"{KEY}={entries!r} must be a list of package prefixes",
            f"write {KEY}=['mypkg.'] (a prefix ends with '.')",
        )
    for entry in entries:
        _check_entry(entry)
    return tuple(entries)


def _check_entry(entry: Any) -> None:
    name = entry[:-1] if isinstance(entry, str) and entry.endswith(".") else entry
    if not isinstance(entry, str) or not entry or not _DOTTED.match(str(name)):
        raise ConfigError(
            f"{KEY} entry {entry!r} is not a package prefix or a dotted name",
            f"write {KEY}=['mypkg.'] (a package prefix ends with '.'), or "
            f"{KEY}=['mypkg.module.MyClass'] for one name",
        )
    root = name.split(".", 1)[0]
    if root in sys.stdlib_module_names or root in _LIBRARIES:
        raise ConfigError(
            f"{KEY} entry {entry!r} would let configs call into {root}, which can read "
            "files, load pickles or run code: a checkpoint or a shared config could use it",
            "allow only your own package (allow_targets=['mypkg.']); wrap a library class "
            "you need in a function of yours",
        )
    if not entry.endswith(".") and "." not in entry:
        raise ConfigError(
            f"{KEY} entry {entry!r} names a whole package without the closing '.'",
            f"write {KEY}=['{entry}.'] to allow the package {entry}",
        )


def targets(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every `_target_` in a tree of dicts and lists, outer first:
    Hydra instantiates nested ones too, in `_args_` lists and in dict values."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield f"{key}._target_" if key else "_target_", node["_target_"]
        for k, v in node.items():
            if k != "_target_":
                yield from targets(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            yield from targets(v, f"{key}.{i}")


def check_config(plain: Mapping[str, Any]) -> None:
    """Refuse a resolved config that names code outside the allowlist, anywhere in its
    tree (Hydra's own node aside: Hydra builds its callbacks before hyperlab runs)."""
    allow = check_allow_targets(plain.get(KEY))
    ours = {k: v for k, v in plain.items() if k != "hydra"}
    for key, target in targets(ours):
        check_target(key, target, allow)
    for key, target in _searched_targets(ours.get("search")):
        check_target(key, target, allow)
    _approved.update(allow)


def _searched_targets(search: Any) -> Iterator[tuple[str, Any]]:
    """A search space may sample a `_target_` key: each of its choices is checked."""
    params = search.get("params") if isinstance(search, Mapping) else None
    if not isinstance(params, Mapping):
        return
    for key, spec in params.items():
        if str(key).rsplit(".", 1)[-1] == "_target_":
            choices = spec.get("choices") if isinstance(spec, Mapping) else spec
            for choice in choices if isinstance(choices, list) else [choices]:
                yield f"search.params.{key}", choice


def check_target(key: str, target: Any, allow: Sequence[str] = ()) -> None:
    """Raise ConfigError unless `target` is a hyperlab builder, an Optuna sampler or
    pruner, or inside one of the `allow` prefixes (imported and checked where it is)."""
    shown = f"{key}={target}"
    if not isinstance(target, str) or not _DOTTED.match(target):
        raise ConfigError(f"{shown} is not a dotted name of a class or function", FIX)
    if any(part.startswith("_") for part in target.split(".")):
        raise ConfigError(
            f"{shown} is not allowed: a target names a public class or function "
            f"(no part starting with '_') under {allowed_text(allow)}",
            FIX,
        )
    builtin = next((p for p in BUILTIN if target.startswith(p)), None)
    if builtin is not None:
        if target.removeprefix(builtin) in _public_names(builtin[:-1]):
            return
        raise ConfigError(
            f"{shown} is not allowed: {builtin[:-1]} defines no public "
            f"{target.removeprefix(builtin)!r} to build (allowed: one public class or function "
            f"under {allowed_text(allow)})",
            FIX,
        )
    entry = _matching(target, allow)
    if entry is None:
        raise ConfigError(
            f"{shown} is not allowed: a config builds only what is under {allowed_text(allow)}",
            FIX,
        )
    _check_resolved(shown, target, entry)


def _matching(target: str, allow: Sequence[str]) -> str | None:
    for entry in allow:
        if (entry.endswith(".") and target.startswith(entry)) or target == entry:
            return entry
    return None


def _check_resolved(shown: str, target: str, entry: str) -> None:
    """Import `target` as Hydra will, and check that what it names is defined inside the
    package `entry` allows (not imported into it from elsewhere)."""
    from hydra._internal.utils import _locate  # the lookup instantiate() itself uses

    try:
        obj = _locate(target)
    except Exception as e:
        cause = e.__cause__ or e
        raise ConfigError(
            f"{shown} cannot be imported: {type(cause).__name__}: {cause}",
            "check the name, and that its package is importable (on PYTHONPATH)",
        ) from None
    package = entry[:-1] if entry.endswith(".") else entry.rsplit(".", 1)[0]
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not callable(obj):
        raise ConfigError(f"{shown} is not a class or function", FIX)
    if module != package and not module.startswith(package + "."):
        raise ConfigError(
            f"{shown} is not allowed: it is {module}.{getattr(obj, '__qualname__', '?')}, "
            f"defined outside {package} (allow_targets entry {entry!r})",
            "name the class or function where your package defines it",
        )


def check_node(node: Any, allow: Sequence[str] = ()) -> None:
    """The defensive check before instantiate(): every `_target_` in `node` is a builtin,
    or inside a prefix that a validated config allowed in this process or that `allow`
    (the live config's allow_targets) names, and resolves inside its package."""
    approved = tuple(sorted(_approved.union(check_allow_targets(list(allow)))))
    for key, target in targets(node):
        check_target(key, target, approved)
        if isinstance(target, str) and _matching(target, approved) is None:
            builtin = next(p for p in BUILTIN if target.startswith(p))
            _check_resolved(f"{key}={target}", target, builtin)


def stored(overrides: Sequence[str]) -> list[str]:
    """Overrides read back from a checkpoint or a study are data: `allow_targets` among
    them is dropped, so that a shared file cannot widen its own allowlist (only the live
    command line sets it); the rest goes through the same allowlist and validation."""
    return [o for o in overrides if _root_key(str(o)) != KEY]


def check_unwidened(found: Sequence[str], live: Any) -> None:
    """A config composed from stored overrides keeps the live command's allow_targets
    (`found`: its allow_targets): dropping the key is not enough where a stored override
    selects a preset or a config search path that sets it."""
    found = list(found or [])
    if found != list(live or []):
        raise ConfigError(
            f"they set {KEY} to {found} (this command: {list(live or [])}), through a "
            "preset or a config search path",
            f"only the command line sets {KEY}",
        )


def _root_key(override: str) -> str:
    key = override.split("=", 1)[0].strip().lstrip("+~").strip()
    return re.split(r"[.@\[\s]", key, maxsplit=1)[0]


# --- hyperlab's and Optuna's modules, read without importing them ---------------------------


@functools.cache
def _public_names(module: str) -> frozenset[str]:
    """The public names `module` defines at its top level (def, class), or imports from
    its own submodules (Optuna's samplers package re-exports them so), read from its
    source: importing hyperlab.models to check a config would import torch."""
    path = source_of(module)
    if path is None:
        return frozenset()
    names: set[str] = set()
    for stmt in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(stmt, ast.FunctionDef | ast.ClassDef):
            names.add(stmt.name)
        elif (
            isinstance(stmt, ast.ImportFrom)
            and stmt.level == 0
            and (stmt.module or "").startswith(module + ".")
        ):
            names.update(alias.asname or alias.name for alias in stmt.names)
    return frozenset(n for n in names if not n.startswith("_"))


def source_of(module: str) -> Path | None:
    """The source file of `module`, found from its top-level package's location without
    importing any of it."""
    root, *rest = module.split(".")
    spec = importlib.util.find_spec(root)
    if spec is None or spec.origin is None:
        return None
    path, dirs = Path(spec.origin), list(spec.submodule_search_locations or [])
    for part in rest:
        for d in dirs:
            package, plain = Path(d) / part / "__init__.py", Path(d) / f"{part}.py"
            if package.is_file():
                path, dirs = package, [str(package.parent)]
                break
            if plain.is_file():
                path, dirs = plain, []
                break
        else:
            return None
    return path if path.suffix == ".py" else None
