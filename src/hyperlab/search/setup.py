"""A study's settings, as the sweeper and every worker derive them from the config: the
study's name, space and budget; its sampler and pruner (built through hyperlab.build);
opening it (refusing to join a study made with another space or objective); the trial
composer; and what the sweeper records when it launches workers. Hydra-free.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from hyperlab.schema import Config, as_dict
from hyperlab.search.space_check import ABSENT, lookup
from hyperlab.search.study import Retry

if TYPE_CHECKING:
    import optuna

    from hyperlab.search.space import Param

SEEDS_ATTR = "per_seed"  # with repeats > 1: {seed: value}
WORKERS_ATTR = "hyperlab:workers_started"  # worker ids handed out so far: seeds differ
# What the study was made with: joining it with another space or objective is refused.
SPACE_ATTR = "hyperlab:space"  # {"search": name, "params": space.canonical(...)}
OBJECTIVE_ATTR = "hyperlab:objective"  # {"metric": ..., "direction": ...}
DATA_ATTR = "data.sha256"  # a trial's: the hash of the data it trained on
FIRST_DATA_ATTR = "hyperlab:data.sha256"  # the study's: its first trial's data hash
VERSIONS_ATTR = "hyperlab:versions"  # {package: version} when the study was created


@dataclass
class Setup:
    """A study's settings, as the sweeper and every worker derive them from the config."""

    url: str
    name: str
    params: list[Param]
    naive: bool  # sampler=random: every range on its linear scale
    n_trials: int
    legacy: str = ""  # the name this study had before names were readable


def setup_of(cfg: Config, overrides: Sequence[str]) -> Setup:
    """The study's settings. Its search space is checked against the config first: well
    formed, naming settings the config has, every value it can sample within its range."""
    from hyperlab import pbt
    from hyperlab.errors import ConfigError
    from hyperlab.search import names, space
    from hyperlab.search.space_check import check_search, group_options
    from hyperlab.validate import rule_for

    search = cfg.search
    if search is None:
        raise ConfigError("no search space selected", "add search=NAME (see conf/search/)")
    plain = as_dict(cfg)
    check_search(plain, group_options, rule_for(plain))
    params = space.parse(search["params"])
    pbt.check(cfg, params)  # before anything is written: what PBT cannot do
    naive = cfg.sampler.get("scales") == "linear"
    name = cfg.sweep.study or names.study_name(search["name"], overrides)
    legacy = "" if cfg.sweep.study else names.legacy_name(search["name"], overrides)
    n_trials = cfg.sweep.n_trials
    if _target(cfg.sampler).endswith("GridSampler"):
        size = math.prod(len(p.grid_points()) for p in params)
        n_trials = min(n_trials, size)
    return Setup(cfg.sweep.storage, name, params, naive, n_trials, legacy)


def _target(node: Mapping[str, Any]) -> str:
    return str(node.get("_target_", ""))


def make_sampler(cfg: Config, setup: Setup, worker: int) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded per worker (workers with one seed would sample the
    same points); grid gets the space's grid points."""
    from hyperlab.build import build_sampler
    from hyperlab.search import space

    # Worker ids grow with every launch of a study: wrapped into the samplers' seed range.
    kwargs: dict[str, Any] = {"seed": (cfg.sweep.seed + worker) % 2**32}
    if _target(cfg.sampler).endswith("GridSampler"):
        kwargs["search_space"] = space.grid_space(setup.params)
    if _target(cfg.sampler).endswith("CoarseToFineSampler"):
        kwargs["n_trials"] = setup.n_trials  # its stages are fractions of the study
    return build_sampler(cfg.sampler, cfg.allow_targets, **kwargs)


def load_study(
    cfg: Config, setup: Setup, worker: int, retry: Retry | None = None, join: bool = False
) -> optuna.Study:
    """Create or load the study, retrying an unreachable storage with `retry`.

    Under the budget lock: on an empty database, two processes creating Optuna's tables
    at once collide (a duplicate key on PostgreSQL's enum types), so they take turns.
    With `join` (the sweeper), an existing study made with another search space or
    objective is refused before anything is written to it, and the study records the
    space and objective it is run with (a study made before they were recorded gets
    them now)."""
    import optuna

    from hyperlab import objectives
    from hyperlab.build import build_pruner
    from hyperlab.search import study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # The worker loop keeps its own heartbeat (worker._Heartbeat): Optuna's warning on
    # every ask that heartbeats belong to Study.optimize does not apply.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    retry = retry or Retry(setup.url, cfg.sweep.retry_seconds)

    def create() -> optuna.Study:
        with study.budget_lock(setup.url):
            storage = study.storage(setup.url, cfg.sweep.heartbeat_seconds)
            if setup.legacy and _exists(storage, setup.legacy) and not _exists(storage, setup.name):
                setup.name = setup.legacy  # made before names were readable: resumed as it is
            made_with = _made_with(cfg, setup)
            if join:
                _check_joinable(storage, setup, made_with)
            s = optuna.create_study(
                study_name=setup.name,
                storage=storage,
                sampler=make_sampler(cfg, setup, worker),
                pruner=build_pruner(cfg.pruner, cfg.allow_targets),
                directions=[
                    optuna.study.StudyDirection[d.upper()] for d in objectives.directions(cfg)
                ],
                load_if_exists=True,
            )
            if join and len(s.directions) > 1 and s.metric_names is None:
                s.set_metric_names(objectives.names(cfg))  # the plots' and the report's
            if join:
                recorded = s.user_attrs
                for attr, value in made_with.items():
                    if attr not in recorded:
                        s.set_user_attr(attr, value)
            return s

    return retry("opening the study", create)


def _exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def _made_with(cfg: Config, setup: Setup) -> dict[str, dict[str, Any]]:
    """The study attributes that say what a study is: its space and its objective."""
    import json

    from hyperlab.search import space

    made_with = {
        SPACE_ATTR: {
            "search": cfg.search["name"],
            "params": space.canonical(setup.params, setup.naive),
        },
        OBJECTIVE_ATTR: _objective(cfg),
    }
    # As the storage gives it back (tuples become lists), so that the two compare equal.
    return json.loads(json.dumps(made_with))  # type: ignore[no-any-return]


def _objective(cfg: Config) -> dict[str, Any]:
    """The objective attribute: {metric, direction}, or for several {metrics, directions}."""
    o = cfg.objective
    if len(o.metrics) > 1:
        return {"metrics": list(o.metrics), "directions": list(o.directions)}
    return {"metric": o.metric, "direction": o.direction}


def _described(objective: Mapping[str, Any]) -> str:
    """`dev_acc (maximize)`, or `dev_acc (maximize), n_params (minimize)`."""
    from hyperlab.objectives import describe

    if "metrics" in objective:
        return describe(objective["metrics"], objective.get("directions") or [])
    return f"{objective.get('metric')} ({objective.get('direction')})"


def _objective_fix(objective: Mapping[str, Any]) -> str:
    """The override that selects a recorded objective again."""
    if objective.get("metrics"):
        return f"objective.metrics=[{','.join(map(str, objective['metrics']))}]"
    return f"objective.metric={objective['metric']}" if objective.get("metric") else ""


def _check_joinable(
    storage: optuna.storages.BaseStorage, setup: Setup, made_with: dict[str, dict[str, Any]]
) -> None:
    """Refuse to join an existing study made with another space or objective: their trials
    would be mixed in one ranking. Reads only: a refused command writes nothing."""
    from hyperlab.errors import ConfigError
    from hyperlab.search import space
    from hyperlab.stores import where

    try:
        study_id = storage.get_study_id_from_name(setup.name)
    except KeyError:
        return  # a new study
    attrs = storage.get_study_user_attrs(study_id)
    then_dirs = [d.name.lower() for d in storage.get_study_directions(study_id)]
    then_space, now_space = attrs.get(SPACE_ATTR), made_with[SPACE_ATTR]
    then_obj, now_obj = attrs.get(OBJECTIVE_ATTR), made_with[OBJECTIVE_ATTR]
    differences = []
    if isinstance(then_space, dict) and isinstance(then_space.get("params"), dict):
        differences += space.changes(then_space["params"], now_space["params"])
    now_dirs = now_obj.get("directions") or [now_obj["direction"]]
    if isinstance(then_obj, dict) and then_obj != now_obj:
        differences.append(
            f"objective changed from {_described(then_obj)} to {_described(now_obj)}"
        )
    elif then_dirs != now_dirs and len(then_dirs) == len(now_dirs) == 1:
        # a study made before the objective was kept
        differences.append(
            f"the study {then_dirs[0]}s, this command would {now_dirs[0]} {now_obj['metric']}"
        )
    elif then_dirs != now_dirs:
        differences.append(
            f"the study has {len(then_dirs)} objective(s) ({', '.join(then_dirs)}), this "
            f"command {_described(now_obj)}"
        )
    if not differences:
        return
    how = []
    if isinstance(then_space, dict) and then_space.get("search"):
        how.append(f"search={then_space['search']}")
    if isinstance(then_obj, dict) and _objective_fix(then_obj):
        how.append(_objective_fix(then_obj))
    if setup.naive and any("linear scale" in d for d in differences):
        differences.append(
            "sampler=random samples every range on its linear scale (sampler=log_uniform "
            "is random search on each range's own scale)"
        )
    raise ConfigError(
        f"study {setup.name!r} in {where(setup.url)} was "
        f"made with another search space or objective: {'; '.join(differences)}. "
        "Joining it would mix the two searches' trials in one ranking",
        "start a new study under another name (sweep.study=NEW_NAME), or resume this one "
        "with the search it was made with"
        + (f" ({', '.join(how)}, and its search.params overrides)" if how else ""),
    )


# (overrides) -> (config, group options): the sweeper composes with Hydra, tests and
# benchmarks with Hydra's compose API; nothing below the sweeper imports Hydra.
Compose = Callable[[list[str]], tuple[DictConfig, dict[str, str]]]
# (a trial's values) -> (its config, its group options)
Composer = Callable[[dict[str, Any]], tuple[DictConfig, dict[str, str]]]


class TrialComposer:
    """Trial configs: one `compose` per combination of group options, then the trial's
    other values set on it (a compose costs tens of milliseconds). Returns the config and
    the group options it was composed with.

    The config returned is the kept one, with the trial's values set: it is good until the
    next call, which first puts the values it replaced back. A copy of it would cost more
    than a stacked trial's training (deep-copying an OmegaConf config takes milliseconds);
    the worker validates each one into its own plain Config at once (compose_trial)."""

    def __init__(self, compose: Compose, base: list[str], groups: set[str]) -> None:
        self.compose, self.base, self.groups = compose, base, groups
        # group options -> (config, its values unresolved ("${lr}" stays), group options)
        self.cache: dict[tuple[str, ...], tuple[DictConfig, dict[str, Any], dict[str, str]]] = {}
        self.lent: tuple[DictConfig, dict[str, Any]] | None = None  # config, replaced values

    def __call__(self, values: dict[str, Any]) -> tuple[DictConfig, dict[str, str]]:
        from hyperlab.search.space import overrides

        self._restore()
        group_part = tuple(overrides({k: v for k, v in values.items() if k in self.groups}))
        if group_part not in self.cache:
            composed, choices = self.compose([*self.base, *group_part])
            OmegaConf.update(composed, "progress", False)  # workers print the report, not bars
            raw = OmegaConf.to_container(composed, resolve=False)
            self.cache[group_part] = composed, raw, choices  # type: ignore[assignment]
        cfg, raw, choices = self.cache[group_part]
        own = {k: v for k, v in values.items() if k not in self.groups}
        replaced = {k: lookup(raw, k) for k in own}
        if any(v is ABSENT for v in replaced.values()):  # a new key: set on a copy
            cfg = copy.deepcopy(cfg)
        else:
            self.lent = cfg, replaced
        for key, value in own.items():
            OmegaConf.update(cfg, key, value, merge=False)
        return cfg, choices

    def _restore(self) -> None:
        if self.lent is not None:
            cfg, replaced = self.lent
            self.lent = None
            for key, value in replaced.items():
                OmegaConf.update(cfg, key, value, merge=False)


def check_not_fixed(setup: Setup, arguments: Sequence[str], required: Collection[str] = ()) -> None:
    """A key both searched and set on the command line (`search=lr lr=0.5`): every trial
    would override the fixed value, silently. Only the user's own overrides are looked at
    (the sweeper's worker jobs add theirs later), and overrides of the space itself
    (`search.params.lr.low=...`) are no conflict. A key in `required` has no default
    (`dataset.path` of dataset=csv): its value completes the base config, and the line
    printed says that each trial uses its own."""
    from hyperlab.display import error_console, plain
    from hyperlab.errors import ConfigError
    from hyperlab.overrides import override_key

    searched = {p.key: p for p in setup.params}
    for override in arguments:
        key = override_key(override)
        p = searched.get(key)
        if p is None:
            continue
        if key in required:
            error_console.print(
                f"[yellow]note:[/] {plain(key)} is searched: {plain(override)} only completes "
                "the base config, and each trial trains with its own value",
                highlight=False,
            )
            continue
        narrow = (
            f"search.params.{key}.choices=[...]"
            if p.kind == "categorical"
            else f"search.params.{key}.low=... search.params.{key}.high=..."
        )
        raise ConfigError(
            f"{key} is searched ({p.describe()}) and also fixed on the command line "
            f"({override}): every trial would replace {override} with its own value",
            f"to search {key}, remove {override}; to keep it fixed, search without it "
            f"(~search.params.{key}, or another search=...), or narrow its range: {narrow}",
        )


def record_versions(s: optuna.Study) -> None:
    """A new study records the versions of the libraries that decide its results
    (task=retest compares them); a resumed one whose versions changed since says so."""
    from hyperlab.display import error_console
    from hyperlab.tracking import version_changes, versions

    then = s.user_attrs.get(VERSIONS_ATTR)
    if then is None:
        if not s.get_trials(deepcopy=False):  # (a study made before they were recorded: unknown)
            s.set_user_attr(VERSIONS_ATTR, versions())
    elif changes := version_changes(then, versions()):
        error_console.print(
            f"[yellow]warning:[/] versions changed since this study was created: "
            f"{', '.join(changes)}; its earlier trials ran on the old ones"
        )


def worker_ids(s: optuna.Study, url: str, workers: int) -> int:
    """The first of `workers` new worker ids. A worker's sampler is seeded with
    sweep.seed + its id: the workers of a resumed study, or of the same command on another
    machine, would otherwise sample the very points the first launch sampled. The first
    launch of a new study gets 0 .. workers-1, so it stays reproducible."""
    from hyperlab.search.study import budget_lock

    with budget_lock(url):
        first = int(s.user_attrs.get(WORKERS_ATTR, 0))
        s.set_user_attr(WORKERS_ATTR, first + workers)
    return first
