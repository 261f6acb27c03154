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
    return optuna.load_study(study_name=name, storage=storage)


def ranked(s: optuna.Study) -> list[FrozenTrial]:
    """The study's complete trials, best first (ties in trial order)."""
    from optuna.trial import TrialState

    maximize = s.direction == s.direction.MAXIMIZE
    complete = s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: -float(t.value or 0) if maximize else float(t.value or 0))
