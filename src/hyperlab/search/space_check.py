"""A config's search space checked against the config: the space is well formed
(hyperlab.search.space parses it), names keys the config has, chooses options its groups
have, and every value it can sample is one its key allows (otherwise the study would
start, record a parent run, and fail trial after trial).

check_search is told a group's options and a key's rules by its caller: validate() passes
group_options (Hydra's config loader, where Hydra runs) and its rule table's rule_for, so
that this module does not import the rule table that imports it, and a test can pass its
own."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hyperlab.errors import ConfigError

if TYPE_CHECKING:
    from hyperlab.search.space import Param

# The options of a config group, or None where the key is no group (or nothing can tell).
GroupOptions = Callable[[str], list[str] | None]
# The check of a key's rules (the error for a value they forbid, else None), or None where
# no rule covers the key.
RuleFor = Callable[[str], Callable[[Any], ConfigError | None] | None]


def group_options(group: str) -> list[str] | None:
    """The options of config group `group`, or None where it is no group (or Hydra is not
    initialized, and nothing can tell). Kept per config loader: asking Hydra costs tens of
    milliseconds, and every trial's config is validated."""
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    if "/" in group or "." in group or not gh.is_initialized():
        return None
    return _options(id(gh.config_loader()), group)


@functools.lru_cache(maxsize=256)
def _options(loader: int, group: str) -> list[str] | None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    found = (
        GlobalHydra.instance()
        .config_loader()
        .get_group_options(group, results_filter=ObjectType.CONFIG)
    )
    return list(found) or None


ABSENT = object()


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """The value at dotted `key`, or ABSENT."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ABSENT
        node = node[part]
    return node


def check_search(plain: Mapping[str, Any], group_options: GroupOptions, rule_for: RuleFor) -> None:
    """The search space: parsed (hyperlab.search.space), every key a setting of the config
    or of a group the search selects, every group choice an option of its group, and every
    value the space can produce within its key's allowed range (each range's ends: every
    rule is an interval)."""
    from hyperlab.search import space

    search = plain["search"]
    if not isinstance(search, Mapping) or not isinstance(search.get("params"), Mapping):
        raise ConfigError(
            "search must hold a name and params (a mapping of override keys to ranges)",
            "select a space from conf/search/ (search=NAME), or write one like them",
        )
    if not search.get("name") or not isinstance(search["name"], str):
        raise ConfigError(
            f"search.name={search.get('name')!r} must be a non-empty name",
            "give the space a name: search.name=my_space (it names the study)",
        )
    params = space.parse(search["params"])
    # A group: Hydra knows it, or (Hydra not running) the config holds a node there.
    groups = [
        p.key
        for p in params
        if p.kind == "categorical"
        and (group_options(p.key) or isinstance(lookup(plain, p.key), Mapping))
    ]
    _check_conditions(params, groups, group_options, rule_for)
    for p in params:
        where = f"search.params.{p.key}"
        in_group = any(p.key.startswith(g + ".") for g in groups)
        if p.key not in groups and not in_group and lookup(plain, p.key) is ABSENT:
            raise ConfigError(
                f"{where}: {p.key} is not a setting of the config",
                "check its spelling (hyperlab --cfg job prints every setting), or search "
                "the group that has it too, e.g. optimizer: {choices: [...]}",
            )
        if p.key in groups:
            options = group_options(p.key) or []
            for choice in p.choices if options else ():  # (no list: Hydra is not running)
                if str(choice) not in options:
                    raise ConfigError(
                        f"{where}: {choice!r} is not an option of the group {p.key}",
                        f"choose among {', '.join(options)}",
                    )
            continue
        check = rule_for(p.key)
        if check is None:
            continue
        if p.kind == "categorical":
            values: list[Any] = list(p.choices)
        elif p.kind == "int":
            values = [int(p.low), int(p.high)]
        else:
            values = [float(p.low), float(p.high)]
        for v in values:
            error = check(v)
            if error:
                raise ConfigError(
                    f"{where} can produce {p.key}={v!r}, which is not allowed: "
                    f"{error.problem.split(': ', 1)[1]}",
                    "narrow the range (or the choices) to allowed values",
                )


def _check_conditions(
    params: list[Param], groups: list[str], group_options: GroupOptions, rule_for: RuleFor
) -> None:
    """A `when:` value that is not among its parent's choices never holds, which silently
    turns the parameter off: refused, unless it is a value the parent's key can take (a
    group's option, a value its rule allows), so that a space narrowed on the command line
    (`search.params.optimizer.choices=[adam]`) keeps its other options' conditions."""
    from hyperlab.search import space

    for p, parent, value in space.unreachable(params):
        if parent.key in groups:
            options = group_options(parent.key)
            if options is None or str(value) in options:
                continue  # an option of the group (or Hydra cannot tell)
            also = f", nor an option of the group {parent.key} ({', '.join(options)})"
        else:
            check = rule_for(parent.key)
            if check is not None and check(value) is None:
                continue
            also = ""
        raise ConfigError(
            f"search.params.{p.key}: when: {parent.key}={value!r} can never hold: "
            f"{value!r} is not among {parent.key}'s choices {list(parent.choices)}{also}",
            f"test a value {parent.key} can take (check its spelling), or drop the condition",
        )
