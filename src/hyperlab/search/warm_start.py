"""`sweep.warm_start=NAME`: a study's first trials are the best complete trials of an earlier
one, enqueued (study.enqueue_trial) before anything is sampled, and re-evaluated on
today's code and data as ordinary trials: yesterday's study seeds today's, and its
hyperparameters are re-tested on the way.

Only the values this study's space can take are enqueued: a parameter it does not search,
or a value outside its range or choices, is left to the sampler (and said so). The study
records that it was warm-started (a study attribute, under the budget lock), so a resumed
study never enqueues them again; each such trial carries where it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hyperlab.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hyperlab.schema import Config
    from hyperlab.search.setup import Setup
    from hyperlab.search.space import Param

DONE_ATTR = "hyperlab:warm_start"  # the study's: {"study", "storage", "trials"} once enqueued
FROM_ATTR = "warm_start_from"  # a trial's: {"study": name, "trial": number}
TAG = "hyperlab.warm_start_from"  # its MLflow run's: "trial N of study NAME"


@dataclass
class Plan:
    """The trials to enqueue: the earlier study's numbers, each with the params (Optuna
    names) this study takes from it; what was left out, and why."""

    study: str
    storage: str  # where it is, as printed
    trials: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def choose(
    ranked: Sequence[FrozenTrial], params: Sequence[Param], top: int, naive: bool = False
) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """Of the best `top` trials (`ranked` best first), the params this space can take,
    by the Optuna names it samples them under; and a line per trial or value left out."""
    from hyperlab.search.report import values

    space = {p.key: p for p in params}
    chosen: list[tuple[int, dict[str, Any]]] = []
    skipped: list[str] = []
    for t in ranked[:top]:
        taken: dict[str, Any] = {}
        left: list[str] = []
        for key, value in values(t).items():
            p = space.get(key)
            if p is None:
                left.append(f"{key} not searched here")
                continue
            why = _outside(p, value)
            if why:
                shown = f"{value:.4g}" if isinstance(value, float) else value
                left.append(f"{key}={shown} {why}")
                continue
            name, fixed = _optuna_value(p, value, t.params, naive)
            taken[name] = fixed
        if not taken:
            skipped.append(f"trial {t.number} left out: {', '.join(left)}")
            continue
        chosen.append((t.number, taken))
        if left:
            skipped.append(f"trial {t.number}: {', '.join(left)}; sampled instead")
    return chosen, skipped


def _outside(p: Param, v: Any) -> str:
    """Why `v` is not a value of `p`, or ""."""
    if p.kind == "categorical":
        return "" if v in p.choices else f"not one of {list(p.choices)}"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"not a number in [{p.low:g}, {p.high:g}]"
    if p.kind == "int" and v != int(v):
        return "not an integer"
    return "" if p.low <= v <= p.high else f"outside [{p.low:g}, {p.high:g}]"


def _optuna_value(p: Param, v: Any, raw: dict[str, Any], naive: bool) -> tuple[str, Any]:
    """The name and value Optuna takes for `p` = `v` (space.Param.sample's names)."""
    if p.kind == "categorical":
        return p.optuna_name, v
    if p.kind == "int":
        return p.key, int(v)
    if naive or p.scale != "one_minus_log":
        return p.key, float(v)
    name = p.optuna_name
    # The earlier study's own 1 - value where it stored one: 1 - (1 - u) may not be u.
    u = raw.get(name, 1.0 - float(v))
    return name, min(max(float(u), 1.0 - p.high), 1.0 - p.low)


def plan(cfg: Config, setup: Setup) -> Plan | None:
    """What sweep.warm_start enqueues, checked before anything is written; None without
    it, or when this study was warm-started already (a resume)."""
    import optuna

    from hyperlab import stores
    from hyperlab.search import earlier
    from hyperlab.search import study as st

    name = cfg.sweep.warm_start
    if not name or _done(st.storage(setup.url), setup.name):
        return None
    url = cfg.sweep.warm_start_storage or setup.url
    where = stores.where(url)
    source = earlier.open_study(name, url, "sweep.warm_start")
    direction = source.direction.name.lower()
    if direction != cfg.objective.direction:
        raise ConfigError(
            f"sweep.warm_start: study {name!r} in {where} was made to {direction} its "
            f"objective, this study will {cfg.objective.direction} {cfg.objective.metric}: its "
            "best trials would be this study's worst",
            f"warm-start from a study that {cfg.objective.direction}s, or use its objective "
            f"(objective.direction={direction} with a metric to {direction})",
        )
    ranked = earlier.ranked(source)
    if not ranked:
        counts = st.counts(source)
        raise ConfigError(
            f"sweep.warm_start: study {name!r} in {where} has no complete trials "
            f"({', '.join(f'{n} {k.lower()}' for k, n in counts.items()) or 'none at all'})",
            "finish that study first (run its command again), or drop sweep.warm_start",
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    chosen, skipped = choose(ranked, setup.params, cfg.sweep.warm_start_top, setup.naive)
    return Plan(name, where, chosen, skipped)


def _done(storage: optuna.storages.BaseStorage, name: str) -> bool:
    """Whether the study `name` exists and was warm-started already. Reads only."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return DONE_ATTR in storage.get_study_user_attrs(study_id)


def enqueue(s: optuna.Study, setup: Setup, p: Plan) -> int:
    """Enqueue the planned trials, once: under the budget lock, unless the study records
    it was warm-started already; no more than the trials the study still needs (an
    enqueued trial holds its place in the budget, study.claim_many). Returns how many."""
    from hyperlab.search import study as st

    with st.budget_lock(setup.url):
        if DONE_ATTR in s.user_attrs:
            return 0
        taken = sum(t.state.name in st.TAKEN for t in s.get_trials(deepcopy=False))
        room = max(setup.n_trials - taken, 0)
        for number, params in p.trials[:room]:
            s.enqueue_trial(params, user_attrs={FROM_ATTR: {"study": p.study, "trial": number}})
        if len(p.trials) > room:
            p.skipped.append(
                f"trial(s) {', '.join(str(n) for n, _ in p.trials[room:])}: past sweep.n_trials"
            )
        enqueued = [n for n, _ in p.trials[:room]]
        s.set_user_attr(DONE_ATTR, {"study": p.study, "storage": p.storage, "trials": enqueued})
    return len(enqueued)


def header(p: Plan | None, enqueued: int) -> str:
    """The sweeper's words for it on its header line."""
    return f"; warm start: {enqueued} trials from study {p.study}" if p else ""


def trial_tags(trial: optuna.Trial) -> dict[str, str]:
    """The MLflow tag of a warm-started trial's run."""
    came = trial.user_attrs.get(FROM_ATTR)
    if not isinstance(came, dict):
        return {}
    return {TAG: f"trial {came.get('trial')} of study {came.get('study')}"}


def parent_tags(s: optuna.Study) -> dict[str, str]:
    """The parent run's record of where the study's first trials came from."""
    done = s.user_attrs.get(DONE_ATTR)
    if not isinstance(done, dict):
        return {}
    trials = done.get("trials") or []
    return {
        "hyperlab.warm_start": f"{len(trials)} trials from study {done.get('study')} "
        f"in {done.get('storage')}: trial(s) {', '.join(map(str, trials)) or 'none'}"
    }
