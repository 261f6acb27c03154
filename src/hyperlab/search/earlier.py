"""An earlier study, read back: opened by name, its complete trials ranked best first.
task=retest retrains them; sweep.warm_start enqueues them in a new study."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hyperlab.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def open_study(name: str, url: str, setting: str = "study") -> optuna.Study:
    """The study `name` in the storage `url` (`setting` is the key that named it, for the
    fix); an unknown name raises ConfigError listing the studies there."""
    import optuna

    from hyperlab import stores
    from hyperlab.search import study as st

    storage = st.storage(url)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        raise ConfigError(
            f"no study named {name!r} in {stores.where(url)}",
            f"use one of {sorted(names)} ({setting}=NAME)"
            if names
            else "run a study first (search=NAME)",
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.load_study(study_name=name, storage=storage)
    if len(s.directions) > 1:
        raise _multi_objective(s, stores.where(url), setting)
    return s


def _multi_objective(s: optuna.Study, where: str, setting: str) -> ConfigError:
    """A multi-objective study has a front, not a ranking: task=retest and sweep.warm_start
    (which take its best trials by one value) refuse it."""
    from hyperlab.objectives import describe
    from hyperlab.search.pareto import directions_of, names_of

    what = "task=retest" if setting == "study" else setting
    return ConfigError(
        f"{what}: study {s.study_name!r} in {where} has {len(s.directions)} objectives "
        f"({describe(names_of(s), directions_of(s))}): its trials form a Pareto front, not "
        "a ranking to take the best of",
        "retrain a front trial with its replay line (summary.md and the parent run's "
        "pareto_front.md list them) and repeats=3"
        if setting == "study"
        else "warm-start from a single-objective study, or drop sweep.warm_start",
    )


def ranked(s: optuna.Study) -> list[FrozenTrial]:
    """The study's complete trials, best first (ties in trial order)."""
    from optuna.trial import TrialState

    maximize = s.direction == s.direction.MAXIMIZE
    complete = s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: -float(t.value or 0) if maximize else float(t.value or 0))
