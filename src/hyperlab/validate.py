"""Range checks on a composed config: every bad value is reported with its key, the allowed
range and a fix, before anything is trained or recorded.

Beyond the ranges of single keys: the data file must exist, the tracking URI must name a
store MLflow can open, and a search space must be well formed, name keys the config has,
and keep every value it can sample inside its key's allowed range (otherwise the study
would start, record a parent run, and fail trial after trial)."""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from hyperlab.allowlist import check_config
from hyperlab.errors import ConfigError, DataError, masked
from hyperlab.schema import LABELS

if TYPE_CHECKING:
    from hyperlab.search.space import Param

# The names the builders accept (hyperlab.models maps them to modules; a test keeps them in
# step). Spelled out here so that checking a config does not import torch.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu")
METRICS = ("dev_acc", "dev_loss", "train_acc", "train_loss")
Check = Callable[[Any], bool]


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def interval(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    def check(v: Any) -> bool:
        if not _number(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return bool(above and below)

    return check


def at_least(low: float, *, integer: bool = False, strict: bool = False) -> Check:
    def check(v: Any) -> bool:
        ok_type = _integer(v) if integer else _number(v)
        return ok_type and (v > low if strict else v >= low)

    return check


def one_of(*options: str) -> Check:
    return lambda v: v in options


def _hidden_units(v: Any) -> bool:
    if isinstance(v, list):
        return all(_integer(h) and h >= 1 for h in v)
    return _integer(v) and v >= 1


POSITIVE = at_least(0, strict=True)
NON_NEGATIVE = at_least(0)
PROBABILITY = interval(0, 1, high_open=True)  # [0, 1): averaging coefficients, error rates
COUNT = at_least(1, integer=True)

# The seeds each library accepts: torch.manual_seed takes any 64-bit integer, signed or
# unsigned; NumPy's RandomState (scikit-learn's random_state, Optuna's samplers) takes
# [0, 2**32 - 1]. Outside them a run stops with the library's traceback.
TORCH_SEED_MAX = 2**64 - 1
NUMPY_SEED_MAX = 2**32 - 1


def _integer_in(low: int, high: int) -> Check:
    return lambda v: _integer(v) and low <= v <= high


TORCH_SEED = _integer_in(-(2**63), TORCH_SEED_MAX)
NUMPY_SEED = _integer_in(0, NUMPY_SEED_MAX)
TORCH_RANGE = "an integer in [-2**63, 2**64 - 1] (torch's seeds)"
NUMPY_RANGE = "an integer in [0, 2**32 - 1] (NumPy's and scikit-learn's seeds)"

# (key pattern, check, the allowed values as the error message states them, an example)
RULES: list[tuple[str, Check, str, str]] = [
    ("task", one_of("train", "gradcheck", "retest"), "train, gradcheck or retest", "gradcheck"),
    ("checkpoint.every", at_least(0, integer=True), "an integer >= 0 (0: none)", "5"),
    ("repeats", COUNT, "an integer >= 1", "3"),
    ("objective.over_seeds", one_of("mean", "bound"), "mean or bound", "bound"),
    ("objective.z", NON_NEGATIVE, "a number >= 0", "1.0"),
    ("top_k", COUNT, "an integer >= 1", "5"),
    ("seeds", COUNT, "an integer >= 1", "3"),
    ("gradcheck.eps", POSITIVE, "a number > 0", "1e-7"),
    ("gradcheck.batch", COUNT, "an integer >= 1", "32"),
    ("gradcheck.max_components", at_least(0, integer=True), "an integer >= 0", "0"),
    ("gradcheck.after_epochs", at_least(0, integer=True), "an integer >= 0", "0"),
    ("gradcheck.fail_at", POSITIVE, "a number > 0", "1e-3"),
    ("lr", POSITIVE, "a number > 0", "1e-3"),
    ("optimizer.lr", POSITIVE, "a number > 0", "1e-3"),
    ("epochs", COUNT, "an integer >= 1", "20"),
    ("batch_size", COUNT, "an integer >= 1", "64"),
    ("seed", TORCH_SEED, TORCH_RANGE, "0"),
    ("threads", COUNT, "an integer >= 1", "1"),
    ("optimizer.beta*", PROBABILITY, "a number in [0, 1)", "0.9"),
    ("optimizer.eps", POSITIVE, "a number > 0", "1e-8"),
    ("optimizer.weight_decay", NON_NEGATIVE, "a number >= 0", "0.01"),
    ("normalization.eps", POSITIVE, "a number > 0", "1e-5"),
    ("normalization.running_beta", PROBABILITY, "a number in [0, 1)", "0.9"),
    ("regularization.l2", NON_NEGATIVE, "a number >= 0", "0.7"),
    ("regularization.keep_prob", interval(0, 1, low_open=True), "a number in (0, 1]", "0.8"),
    ("schedule.decay_rate", NON_NEGATIVE, "a number >= 0", "1.0"),
    ("schedule.rate", interval(0, 1, low_open=True), "a number in (0, 1]", "0.95"),
    ("schedule.interval", COUNT, "an integer >= 1", "5"),
    ("schedule.epochs", COUNT, "an integer >= 1", "20"),
    ("schedule.min_factor", interval(0, 1), "a number in [0, 1]", "0.0"),
    ("dataset.split.train", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.7"),
    ("dataset.split.dev", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.15"),
    ("dataset.split.test", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.15"),
    ("dataset.split.seed", NUMPY_SEED, NUMPY_RANGE, "0"),
    ("dataset.seed", NUMPY_SEED, NUMPY_RANGE, "0"),
    ("dataset.n_samples", at_least(10, integer=True), "an integer >= 10", "1000"),
    ("dataset.noise", NON_NEGATIVE, "a number >= 0", "0.2"),
    ("dataset.factor", interval(0, 1, low_open=True, high_open=True), "in (0, 1)", "0.5"),
    ("dataset.n_features", COUNT, "an integer >= 1", "2"),
    ("dataset.centers", at_least(2, integer=True), "an integer >= 2", "4"),
    ("dataset.n_classes", at_least(2, integer=True), "an integer >= 2", "3"),
    ("model.hidden_units", _hidden_units, "an integer >= 1 or a list of them", "128"),
    ("model.layers", at_least(0, integer=True), "an integer >= 0", "2"),
    ("model.activation", one_of(*ACTIVATIONS), f"one of {ACTIVATIONS}", "relu"),
    ("init.scale", POSITIVE, "a number > 0", "10.0"),
    ("objective.metric", one_of(*METRICS), f"one of {METRICS}", "dev_acc"),
    (
        "objective.direction",
        one_of("auto", "maximize", "minimize"),
        "auto, maximize or minimize",
        "auto",
    ),
    ("bayes_error", PROBABILITY, "a number in [0, 1)", "0.0"),
    ("diagnosis_threshold", interval(0, 1), "a number in [0, 1]", "0.05"),
    ("sweep.n_trials", COUNT, "an integer >= 1", "20"),
    ("sweep.workers", COUNT, "an integer >= 1", "2"),
    ("sweep.seed", NUMPY_SEED, NUMPY_RANGE + ": the samplers' seeds", "0"),
    ("sweep.max_failure_rate", interval(0, 1), "a number in [0, 1]", "0.5"),
    ("sweep.heartbeat_seconds", COUNT, "an integer >= 1", "60"),
    ("sweep.retry_failed", at_least(0, integer=True), "an integer >= 0", "1"),
    ("sweep.retry_seconds", NON_NEGATIVE, "a number >= 0", "60"),
    ("tracking.flush_seconds", NON_NEGATIVE, "a number >= 0", "1.0"),
]


def flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every leaf of a plain container; lists are leaves."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from flatten(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), node


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers with interpolations resolved; a missing mandatory
    value (`???`) becomes a ConfigError naming the key."""
    # Hydra's own node needs a running job to resolve; it is none of the user's settings.
    ours = (
        OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    )
    try:
        return OmegaConf.to_container(ours, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        key = e.full_key
        raise ConfigError(
            f"{key} is required but not set", f"add {key}=... to the command line"
        ) from None
    except InterpolationResolutionError as e:
        raise ConfigError(f"{e.full_key}: {e.msg}", "fix or remove the interpolation") from None


def _rule_error(key: str, value: Any) -> ConfigError | None:
    """The error for `key=value` if a rule forbids it, else None."""
    for pattern, check, allowed, example in RULES:
        if fnmatch.fnmatchcase(key, pattern) and not check(value):
            return ConfigError(
                f"{key}={value!r} is not allowed: {key} must be {allowed}",
                f"set it on the command line, e.g. {key}={example}",
            )
    return None


def _label_error(plain: Mapping[str, Any]) -> ConfigError | None:
    """A group's label (schema.LABELS) must name the function its `_target_` builds: an
    override of the label alone (`init.scheme=xavier`) would be recorded, not built."""
    for group, label in LABELS.items():
        node = plain.get(group)
        if not isinstance(node, Mapping) or label not in node:
            continue
        built = str(node.get("_target_", ""))
        if built.rsplit(".", 1)[-1] != node[label]:
            return ConfigError(
                f"{group}.{label}={node[label]!r} does not name what {group} builds "
                f"({built}): {group}.{label} records the chosen option, it does not choose it",
                f"choose the option with its group instead, e.g. {group}={node[label]} "
                "(hyperlab --help lists the options)",
            )
    return None


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Check every key that has a rule; return the resolved config or raise ConfigError
    (DataError for a data file that is not there)."""
    plain = resolved(cfg)
    check_config(plain)  # the code a config may name: before any value is looked at
    leaves = flatten({k: v for k, v in plain.items() if k != "hydra"})
    # Shallow keys first: `lr=-1` is reported as lr, not as the optimizer.lr it feeds.
    for key, value in sorted(leaves, key=lambda kv: kv[0].count(".")):
        error = _rule_error(key, value)
        if error:
            raise error
    error = _label_error(plain)
    if error:
        raise error
    plain["objective"]["direction"] = direction_of(plain["objective"])
    _check_derived_seeds(plain)
    split = plain["dataset"].get("split", {})
    if split:
        total = sum(float(split[k]) for k in ("train", "dev", "test"))
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(
                f"dataset.split fractions sum to {total:g}, not 1 "
                f"(train={split['train']}, dev={split['dev']}, test={split['test']})",
                "make dataset.split.train + dataset.split.dev + dataset.split.test = 1",
            )
    if plain["normalization"].get("kind") == "batchnorm" and plain["batch_size"] < 2:
        raise ConfigError(
            f"batch_size={plain['batch_size']} with normalization=batchnorm: batch norm needs "
            "at least 2 examples per mini-batch to compute a mean and a variance",
            "use batch_size >= 2, or normalization=layernorm for SGD",
        )
    if plain.get("task") == "retest" and not plain.get("study"):
        raise ConfigError("task=retest needs the study to retest", "add study=NAME")
    _check_data_path(plain.get("dataset") or {})
    tracking = plain.get("tracking") or {}
    if tracking.get("enabled") or plain.get("resume"):
        check_tracking_uri(str(tracking.get("uri", "")))
    if plain.get("search") is not None:
        check_search(plain, group_options)
    return plain


def direction_of(objective: Mapping[str, Any]) -> str:
    """The direction an objective is optimized in: `auto` follows the metric (a loss is
    minimized, an accuracy maximized); a direction set against its metric is refused, as
    it would search for the worst model. Every reader of objective.direction goes through
    here (validate() returns the config with it resolved)."""
    metric, direction = str(objective["metric"]), str(objective["direction"])
    natural = "minimize" if metric.endswith("_loss") else "maximize"
    if direction in ("auto", natural):
        return natural
    raise ConfigError(
        f"objective.direction={direction} with objective.metric={metric}: this would "
        f"{direction} {'a loss' if natural == 'minimize' else 'an accuracy'}, i.e. search "
        "for the worst model",
        f"drop objective.direction (it follows the metric: {natural} {metric}), or set "
        f"objective.direction={natural}",
    )


def _check_derived_seeds(plain: Mapping[str, Any]) -> None:
    """The seeds a run derives from its settings stay in their library's range too: seed
    repeats train seeds seed .. seed+repeats-1 (a retest, seed .. seed+seeds-1), and a
    study's workers seed their samplers with sweep.seed + their worker id."""
    seed = plain.get("seed")
    counts = [("repeats", plain.get("repeats"))]
    if plain.get("task") == "retest":
        counts.append(("seeds", plain.get("seeds")))
    for key, n in counts:
        if isinstance(seed, int) and isinstance(n, int) and seed + n - 1 > TORCH_SEED_MAX:
            raise ConfigError(
                f"seed={seed} with {key}={n}: the repeats train seeds {seed}..{seed + n - 1}, "
                "past torch's largest seed 2**64 - 1",
                f"use a smaller seed, e.g. seed=0 (seed + {key} - 1 must be at most 2**64 - 1)",
            )
    sweep = plain.get("sweep") or {}
    first, workers = sweep.get("seed"), sweep.get("workers")
    if (
        plain.get("search") is not None
        and isinstance(first, int)
        and isinstance(workers, int)
        and first + workers - 1 > NUMPY_SEED_MAX
    ):
        raise ConfigError(
            f"sweep.seed={first} with sweep.workers={workers}: the workers seed their "
            f"samplers with {first}..{first + workers - 1}, past the samplers' largest "
            "seed 2**32 - 1",
            "use a smaller seed, e.g. sweep.seed=0 "
            "(sweep.seed + sweep.workers - 1 must be at most 2**32 - 1)",
        )


# --- files and stores ----------------------------------------------------------------------


def _check_data_path(dataset: Mapping[str, Any]) -> None:
    """A data file must be there before a run (or a study, or seed repeats) starts."""
    path = dataset.get("path")
    if not isinstance(path, str) or not path:
        return
    p = Path(path).expanduser()
    kind = str(dataset.get("_target_", "")).rsplit(".", 1)[-1].upper() or "data"
    if p.is_dir():
        raise DataError(
            f"dataset.path: '{p}' is a directory, not a {kind} file",
            f"name the file itself: dataset.path={p}/<file>",
        )
    if not p.is_file():
        raise DataError(
            f"dataset.path: {kind} file '{p}' does not exist",
            f"pass an existing file: dataset.path=/absolute/path/to/file.{kind.lower()}",
        )


# MLflow's tracking URI schemes (a "+driver" may follow a database's).
TRACKING_SCHEMES = (
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "http",
    "https",
    "databricks",
    "databricks-uc",
    "uc",
)
_tracking_checked: set[str] = set()


def check_tracking_uri(uri: str) -> None:
    """Raise ConfigError unless MLflow can open `uri`: a known scheme, a driver that is
    installed, a local store that is not a file of another kind. Checked once per process
    (the writer reports a store that goes down later)."""
    if uri in _tracking_checked:
        return
    shown = masked(uri)
    fix = (
        "use sqlite:///outputs/mlflow.db (the default), http://127.0.0.1:5000 (a tracking "
        "server) or postgresql://user@host/db"
    )
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme and scheme.split("+", 1)[0] not in TRACKING_SCHEMES:
        raise ConfigError(f"tracking.uri={shown}: MLflow has no store for {scheme}://", fix)
    local = uri.removeprefix("file://") if scheme in ("", "file") else None
    if local and uri not in TRACKING_SCHEMES:
        if Path(local).expanduser().is_file():
            raise ConfigError(
                f"tracking.uri={shown} is a file: MLflow keeps a local store in a directory",
                fix,
            )
        if _file_store_refused():
            raise ConfigError(
                f"tracking.uri={shown} is a directory store, which this MLflow refuses "
                "(its file store is in maintenance mode)",
                "use tracking.uri=sqlite:///outputs/mlflow.db (the default), or set "
                "MLFLOW_ALLOW_FILE_STORE=true to keep the directory store",
            )
    if scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).expanduser()
        if path.is_dir() or any(p.exists() and not p.is_dir() for p in path.parents):
            where = path if path.is_dir() else next(p for p in path.parents if p.exists())
            raise ConfigError(
                f"tracking.uri={shown}: {where} is in the way ("
                f"{'a directory' if path.is_dir() else 'a file where a directory must be'})",
                fix,
            )
    if scheme.split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        from hyperlab.search.study import check_database

        check_database(uri, "tracking.uri")
    if scheme in ("http", "https"):
        _check_server(uri, shown)
    _tracking_checked.add(uri)


SERVER_SECONDS = 10.0  # how long a tracking server may take to answer the check


def _check_server(uri: str, shown: str) -> None:
    """A tracking server must answer before anything runs: a single run, every job of a
    multirun and a study are refused here, rather than training first and then waiting
    for a server that is not there. Any HTTP answer will do (the server, or a proxy or a
    login in front of it); only no answer at all is refused."""
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # credentials are MLflow's business, not ours
    health = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", "")
    )
    try:
        with urllib.request.urlopen(health, timeout=SERVER_SECONDS):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, ssl.SSLError):  # it speaks TLS: MLflow has its own CA settings
            return
        why = (
            f"did not answer within {SERVER_SECONDS:g} s"
            if isinstance(reason, TimeoutError) or "timed out" in str(reason)
            else f"no server answers there ({reason})"
        )
        raise ConfigError(
            f"tracking.uri={shown}: {why}; nothing was trained or recorded",
            "start the tracking server (mlflow server --host HOST --port PORT), point "
            "tracking.uri at one that runs, or run with tracking.enabled=false",
        ) from None


def _file_store_refused() -> bool:
    """Whether the installed MLflow refuses a directory store (MLflow 3 does, unless
    MLFLOW_ALLOW_FILE_STORE is set), told without importing MLflow (seconds)."""
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
        return False
    spec = importlib.util.find_spec("mlflow")
    if spec is None or spec.origin is None:
        return False
    store = Path(spec.origin).parent / "store" / "tracking" / "file_store.py"
    try:
        return "MLFLOW_ALLOW_FILE_STORE" in store.read_text()
    except OSError:
        return False


# --- search spaces -------------------------------------------------------------------------


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


_ABSENT = object()


def _lookup(config: Mapping[str, Any], key: str) -> Any:
    """The value at dotted `key`, or _ABSENT."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def check_search(
    plain: Mapping[str, Any], group_options: Callable[[str], list[str] | None]
) -> None:
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
        and (group_options(p.key) or isinstance(_lookup(plain, p.key), Mapping))
    ]
    _check_conditions(params, groups, group_options)
    for p in params:
        where = f"search.params.{p.key}"
        in_group = any(p.key.startswith(g + ".") for g in groups)
        if p.key not in groups and not in_group and _lookup(plain, p.key) is _ABSENT:
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
        if p.kind == "categorical":
            values: list[Any] = list(p.choices)
        elif p.kind == "int":
            values = [int(p.low), int(p.high)]
        else:
            values = [float(p.low), float(p.high)]
        for v in values:
            error = _rule_error(p.key, v)
            if error:
                raise ConfigError(
                    f"{where} can produce {p.key}={v!r}, which is not allowed: "
                    f"{error.problem.split(': ', 1)[1]}",
                    "narrow the range (or the choices) to allowed values",
                )


def _check_conditions(
    params: list[Param], groups: list[str], group_options: Callable[[str], list[str] | None]
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
            ruled = any(fnmatch.fnmatchcase(parent.key, rule[0]) for rule in RULES)
            if ruled and _rule_error(parent.key, value) is None:
                continue
            also = ""
        raise ConfigError(
            f"search.params.{p.key}: when: {parent.key}={value!r} can never hold: "
            f"{value!r} is not among {parent.key}'s choices {list(parent.choices)}{also}",
            f"test a value {parent.key} can take (check its spelling), or drop the condition",
        )
