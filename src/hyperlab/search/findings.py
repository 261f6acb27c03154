"""What the end of a study is made of, shared by the single-objective report
(hyperlab.search.report) and the Pareto front (hyperlab.search.pareto): the Report, a
trial's values under override keys, the importances, and drawing plots to files."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

REPLAY_ATTR = "replay"


@dataclass
class Report:
    name: str
    direction: str
    counts: dict[str, int]
    best: FrozenTrial | None
    top: list[FrozenTrial]
    importances: dict[str, float] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    # Per searched parameter, how many distinct values the trials tried, and out of how many
    # trials: a 5 x 5 grid tries 5 of each in 25 trials, random search 25.
    distinct: dict[str, int] = field(default_factory=dict)
    sampled: int = 0
    note: str = ""  # why the study ended short of sweep.n_trials (its time budget)
    # A multi-objective study (hyperlab.search.pareto): its metrics, its Pareto front (in
    # place of best and top), the importances per objective, and pareto_front.md.
    objectives: list[str] = field(default_factory=list)
    front: list[FrozenTrial] = field(default_factory=list)
    per_objective: dict[str, dict[str, float]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def key_of(name: str) -> str:
    """The override key of an Optuna parameter name (`1-optimizer.beta` -> optimizer.beta)."""
    return name.removeprefix("1-")


def values(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters as override values: a `1-<key>` parameter becomes 1 - value."""
    return {key_of(k): 1.0 - v if k.startswith("1-") else v for k, v in trial.params.items()}


def importances(study: optuna.Study, target: Any = None) -> dict[str, float]:
    """The parameters' importances (fANOVA) for the objective, or for `target` (a trial's
    value of one objective of several), by override key."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = {k for k in {k for t in complete for k in t.params} if _varied(complete, k)}
    if len(varied) == 1:
        # One parameter explains all there is: fitting fANOVA's forest to say so took seconds.
        return {key_of(varied.pop()): 1.0}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study, target=target)
        # 1 - beta is as important as beta: report it under the key a user overrides.
        return {key_of(k): v for k, v in found.items()}
    except (RuntimeError, ValueError):  # e.g. a parameter that never varied
        return {}


def _varied(trials: list[FrozenTrial], name: str) -> bool:
    return len({repr(t.params.get(name)) for t in trials}) > 1


def save_plots(drawings: list[tuple[str, Any]], out_dir: Path) -> list[Path]:
    """Draw each (name, draw) with matplotlib into out_dir/name.png; a plot that cannot be
    drawn (too few trials for it) is skipped."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in drawings:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
        except Exception:  # too few trials for this plot: skip it
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


TRIALS_PER_PARAMETER = 10


def caveat(rep: Report, found: dict[str, float] | None = None) -> str:
    """A warning when too few trials completed for the importances (`found`, default the
    report's) to mean much."""
    found = rep.importances if found is None else found
    complete = rep.counts.get("COMPLETE", 0)
    enough = TRIALS_PER_PARAMETER * len(found)
    if len(found) < 2 or complete >= enough:
        return ""
    return (
        f"(from {complete} complete trials for {len(found)} parameters: below "
        f"about {enough} trials, importances are mostly noise; read them as a hint)"
    )


def fmt(v: Any) -> str:
    """A parameter's value in a table: 6 significant digits for a float."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
