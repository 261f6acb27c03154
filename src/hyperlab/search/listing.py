"""`hyperlab task=studies`: the studies in a storage, with their trials by state, best value
and last activity, to tell them apart before a resume, a retest or optuna-dashboard."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hyperlab.search.setup import SPACE_ATTR

if TYPE_CHECKING:
    from rich.console import Console

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass
class StudyRow:
    name: str
    direction: str
    counts: dict[str, int] = field(default_factory=dict)
    best: float | None = None
    best_trial: int | None = None
    front: int | None = None  # a multi-objective study's: how many trials its front holds
    last: datetime.datetime | None = None  # the latest start or end of a trial
    search: str = ""


def studies(url: str) -> list[StudyRow]:
    """Every study in the storage at `url`, the most recently active first. A journal file
    that does not exist holds none (and is not created)."""
    import optuna

    from hyperlab import stores
    from hyperlab.search import study as st

    path = stores.journal_path(url)
    if path is not None and not path.exists():
        return []
    storage = st.storage(url)
    rows = []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        directions = [d.name.lower() for d in study.directions]
        row = StudyRow(name, ", ".join(directions))
        for t in trials:
            row.counts[t.state.name] = row.counts.get(t.state.name, 0) + 1
            for when in (t.datetime_start, t.datetime_complete):
                if when is not None and (row.last is None or when > row.last):
                    row.last = when
        complete = [t for t in trials if t.state.name == "COMPLETE" and t.values is not None]
        if len(directions) > 1:  # no best value: the size of the front
            from hyperlab.search.pareto import front_of

            row.front = len(front_of(trials, directions))
        elif complete:
            pick = max if row.direction == "maximize" else min
            best = pick(complete, key=lambda t: float(t.value))  # type: ignore[arg-type]
            row.best, row.best_trial = best.value, best.number
        space = study.user_attrs.get(SPACE_ATTR)
        row.search = str(space.get("search", "")) if isinstance(space, dict) else ""
        rows.append(row)
    never = datetime.datetime.min
    return sorted(rows, key=lambda r: r.last or never, reverse=True)


def show(rows: list[StudyRow], where: str, console: Console) -> None:
    """The studies as a table, or as one block of `key: value` lines a study where the
    table would not fit the width: every value whole, at any width."""
    from hyperlab.display import fit

    if not rows:
        console.print(f"no studies in {where}: run one first (hyperlab search=NAME)")
        return
    console.print(f"studies in {where}")
    header = ["study", "trials", "best", "last activity"]
    cells = [
        [
            r.name,
            counts(r.counts),
            _best(r),
            _when(r.last),
        ]
        for r in rows
    ]
    fit(console, "", header, cells, right=("best",))
    import shlex

    console.print(
        "resume one: the command that made it; retest the newest one's best: "
        f"hyperlab task=retest {shlex.quote(f'study={rows[0].name}')}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )


def _best(r: StudyRow) -> str:
    if r.front is not None:
        return f"front of {r.front} trial(s) ({r.direction})"
    return "-" if r.best is None else f"{r.best:.4g} (trial {r.best_trial}, {r.direction})"


def counts(by_state: dict[str, int]) -> str:
    """Trial counts as words: `12 complete, 3 pruned, 1 failed`."""
    words = {"FAIL": "failed"}
    ordered = [s for s in STATES if s in by_state] + sorted(set(by_state) - set(STATES))
    return ", ".join(f"{by_state[s]} {words.get(s, s.lower())}" for s in ordered) or "no trials"


def _when(t: Any) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M")
