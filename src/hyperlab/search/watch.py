"""The live view of a study, drawn by the sweeper's process for all of its workers.

One line per trial as it ends (number, state, objective, the best so far (with several
objectives: each one's value and whether it is on the front so far), its parameters
under the user's override keys, the worker, its seconds), never wrapped, so that a pipe or
a file gets one line per event; and, on a terminal, a progress bar over sweep.n_trials
with the time spent and an estimate of what is left, drawn below the lines.

The view reads the study's storage from a thread every `every` seconds: the workers are
other processes (or, with one worker and Hydra's basic launcher, this one), and a read of
a journal only parses what was appended since the last. A read that fails is skipped: the
view must never stop a study.
"""

from __future__ import annotations

import datetime
import threading
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial
    from rich.console import Console

ENDED = ("COMPLETE", "PRUNED", "FAIL")


class StudyView:
    """`with StudyView(study, n_trials, metric, console):` around a study's run."""

    def __init__(
        self,
        study: optuna.Study,
        n_trials: int,
        metric: str,
        console: Console,
        every: float = 0.5,
    ) -> None:
        self.study, self.n_trials, self.metric = study, n_trials, metric
        self.directions = [d.name.lower() for d in study.directions]
        self.maximize = self.directions[0] == "maximize"
        # A multi-objective study: its metrics, and the front of the trials seen so far.
        self.names = list(study.metric_names or [metric]) if len(self.directions) > 1 else []
        self.front: list[FrozenTrial] = []
        self.every = every
        self.seen: set[int] = set()
        self.best: FrozenTrial | None = None
        self.done = 0
        self.progress = Progress(
            TextColumn("[bold]study"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("trials"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[best]}"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task("study", total=n_trials, best="")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="study view")

    def __enter__(self) -> StudyView:
        self._read(first=True)  # trials a resumed study had: counted, not listed
        self.progress.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._read()
        self.progress.stop()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self._read()

    def _read(self, first: bool = False) -> None:
        try:
            self._show_ended(first)
        except Exception:  # the storage away for a moment: the next read may get through
            return

    def _show_ended(self, first: bool) -> None:
        trials = self.study.get_trials(deepcopy=False)
        # A waiting trial (a retry enqueued) has no times: only ended trials are ordered.
        ended = [t for t in trials if t.state.name in ENDED and t.number not in self.seen]
        never = datetime.datetime.min
        for t in sorted(ended, key=lambda t: (t.datetime_complete or never, t.number)):
            self.seen.add(t.number)
            self.done += t.state.name != "FAIL"
            if self.names:
                self._on_front(t)
            elif t.state.name == "COMPLETE" and t.value is not None and self._better(t):
                self.best = t
            if not first:
                self.progress.console.print(
                    self.line(t), soft_wrap=True, highlight=False, markup=False
                )
        best = f"best {self.best.value:.4g} (trial {self.best.number})" if self.best else ""
        best = f"front {_trials(len(self.front))}" if self.names else best
        self.progress.update(self.task, completed=min(self.done, self.n_trials), best=best)

    def _on_front(self, t: FrozenTrial) -> None:
        """Put a complete trial on the front unless a trial there dominates it; drop the
        ones it dominates."""
        from hyperlab.search.pareto import dominates

        if t.state.name != "COMPLETE" or t.values is None:
            return
        if any(dominates(f.values, t.values, self.directions) for f in self.front):
            return
        self.front = [f for f in self.front if not dominates(t.values, f.values, self.directions)]
        self.front.append(t)

    def _better(self, t: FrozenTrial) -> bool:
        if self.best is None or self.best.value is None:
            return True
        assert t.value is not None
        return t.value > self.best.value if self.maximize else t.value < self.best.value

    def line(self, t: FrozenTrial) -> str:
        """One trial's line: `trial 7 complete  dev_acc 0.9733  best 0.98 (trial 3)  lr=...`."""
        from hyperlab.search.report import values
        from hyperlab.search.study import WORKER_ATTR

        state = t.state.name.lower()
        parts = [f"trial {t.number} {'failed' if state == 'fail' else state}"]
        if self.names:  # each objective's value, and the front as it is now
            if t.state.name == "COMPLETE" and t.values is not None:
                shown = zip(self.names, t.values, strict=True)
                parts.append("  ".join(f"{m} {v:.4g}" for m, v in shown))
            on = any(f.number == t.number for f in self.front)
            parts.append(f"{'on the front' if on else 'front'} ({_trials(len(self.front))})")
        elif t.state.name == "COMPLETE" and t.value is not None:
            parts.append(f"{self.metric} {t.value:.4g}")
        elif t.state.name == "PRUNED" and t.intermediate_values:
            step = max(t.intermediate_values)  # the epoch, counted from 1
            parts.append(f"at epoch {step} ({self.metric} {t.intermediate_values[step]:.4g})")
        if self.best is not None and self.best.value is not None:
            parts.append(f"best {self.best.value:.4g} (trial {self.best.number})")
        parts.append(" ".join(f"{k}={_short(v)}" for k, v in values(t).items()))
        if WORKER_ATTR in t.user_attrs:
            parts.append(f"worker {t.user_attrs[WORKER_ATTR]}")
        if t.datetime_start and t.datetime_complete:
            parts.append(f"{(t.datetime_complete - t.datetime_start).total_seconds():.1f} s")
        if t.state.name == "FAIL":
            parts.append(f"({t.user_attrs.get('fail_reason', 'no reason recorded')})")
        return "  ".join(p for p in parts if p)


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def _short(v: Any) -> str:
    """A parameter's value as a person reads it: 4 significant digits for a float."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)
