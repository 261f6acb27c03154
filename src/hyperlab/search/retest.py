"""task=retest: re-run the best configurations of an earlier study on today's code and data.

Hyperparameters go stale: the data grows, the code changes, and the ranking a study found
months ago may no longer hold. Retesting trains each of the study's best `top_k` trials
again with `seeds` seeds, and flags where the ranking changed or where a value moved by
more than its seed spread (then the old ranking was luck, or the world moved).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hyperlab import display
from hyperlab.allowlist import check_unwidened, stored
from hyperlab.errors import ConfigError, HyperlabError
from hyperlab.overrides import override_key
from hyperlab.repeats import Spread, train
from hyperlab.run import Job
from hyperlab.schema import RETEST_KEYS, Config
from hyperlab.search import earlier
from hyperlab.search.report import REPLAY_ATTR
from hyperlab.search.setup import Compose
from hyperlab.search.trial import replay_args
from hyperlab.tracking import default_tags, start_run, version_changes, versions
from hyperlab.validate import validate

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

CHANGED = "its records were changed, or not written by hyperlab"


@dataclass
class Row:
    """One retested trial."""

    number: int
    replay: str
    recorded: float
    spread: Spread
    rank_then: int
    rank_now: int = 0

    def warnings(self) -> list[str]:
        out = []
        if self.rank_now != self.rank_then:
            out.append(f"rank {self.rank_then} -> {self.rank_now}")
        moved = abs(self.spread.mean - self.recorded)
        if moved > self.spread.std:
            out.append(f"moved {moved:.4f} > seed spread {self.spread.std:.4f}")
        return out


def rank(rows: Sequence[Row], maximize: bool) -> None:
    """Set each row's rank by its new mean (1 = best), ties kept in their old order."""

    def key(r: Row) -> float:
        if math.isnan(r.spread.mean):  # diverged on some seed: last
            return math.inf
        return -r.spread.mean if maximize else r.spread.mean

    ordered = sorted(rows, key=key)
    for i, row in enumerate(ordered, 1):
        row.rank_now = i


def retest(cfg: Config, own: Sequence[str], compose: Compose) -> list[Row]:
    """Retest the study `cfg.study` names; `own` are this command's overrides (tracking,
    threads, data paths...), applied under each trial's replayed values."""
    import optuna

    from hyperlab import stores
    from hyperlab.search.setup import VERSIONS_ATTR
    from hyperlab.tracking import PARENT_RUN_ID

    name, url = cfg.study, cfg.sweep.storage
    if not name:
        raise ConfigError("task=retest needs the study to retest", "add study=NAME")
    study = earlier.open_study(name, url)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    finished = earlier.ranked(study)
    complete = [t for t in finished if REPLAY_ATTR in t.user_attrs]
    best = complete[: cfg.top_k]
    if not best and finished:
        raise _not_replayable(name, finished, maximize)
    if not best:
        raise ConfigError(
            f"study {name!r} has no complete trials to retest", "finish the study first"
        )

    seeds = cfg.seeds
    keep = [o for o in own if override_key(o) not in RETEST_KEYS]
    # The replay lines are data read from the storage: every one is composed and
    # validated (allowlist included) before the retest records anything.
    where = f"study {name!r} in {stores.where(url)}"
    plans = [_plan(t, keep, seeds, compose, where, cfg.allow_targets) for t in best]
    tracking = cfg.tracking
    parent = None
    if tracking.enabled:
        parent = start_run(
            tracking.uri,
            tracking.experiment,
            tracking.artifacts,
            run_name=f"retest {name}",
            tags={
                **default_tags("hyperlab " + " ".join(own)),
                "hyperlab.retest_of_study": name,
                "hyperlab.retest_of": str(study.user_attrs.get(PARENT_RUN_ID, "")),
            },
            params={"study": name, "top_k": str(cfg.top_k), "seeds": str(seeds)},
        )
    console = display.console
    console.print(
        f"[bold]retest[/] {display.plain(name)}: the best {len(best)} of {len(complete)} "
        f"complete trials, {seeds} seed(s) each"
    )
    moved = version_changes(study.user_attrs.get(VERSIONS_ATTR) or {}, versions())
    if moved:  # results may differ for that alone
        console.print(f"[yellow]versions changed since the study ran:[/] {', '.join(moved)}")
    rows = []
    for then, plan in enumerate(plans, 1):
        console.print(f"trial {plan.number} (rank {then}): {display.plain(plan.replay)}")
        result = train(
            plan.config,
            Job(
                choices=plan.choices,
                overrides=plan.overrides,
                command=plan.replay,
                run_name=f"retest trial {plan.number}",
                parent_run_id=parent.run_id if parent else None,
                tags={"hyperlab.study": name, "hyperlab.retest_of_trial": str(plan.number)},
            ),
        )
        rows.append(Row(plan.number, plan.replay, plan.value, result, then))
    rank(rows, maximize)
    _show(rows, cfg.objective.metric, seeds)
    if parent:
        metrics: dict[str, float] = {}
        for row in rows:
            metrics[f"trial_{row.number}.recorded"] = row.recorded
            metrics[f"trial_{row.number}.mean"] = row.spread.mean
            metrics[f"trial_{row.number}.std"] = row.spread.std
        changed = any(r.rank_now != r.rank_then for r in rows)
        parent.finish(
            "FINISHED",
            metrics=metrics,
            tags={
                "hyperlab.ranking_changed": str(changed).lower(),
                "hyperlab.versions_changed": ", ".join(moved),
                "hyperlab.warnings": "; ".join(
                    f"trial {r.number}: {', '.join(r.warnings())}" for r in rows if r.warnings()
                )[:5000],
            },
        )
    return rows


@dataclass
class _Plan:
    """A trial to retest: its replay line read back, composed and validated."""

    number: int
    value: float
    replay: str
    overrides: list[str]
    config: Config
    choices: dict[str, str]


def _plan(
    trial: Any, keep: Sequence[str], seeds: int, compose: Compose, where: str, allow: Any
) -> _Plan:
    """Compose and validate a stored trial's replay line as a command line would be; a line
    that fails (grammar, allowlist, validation) refuses the study, naming it."""
    replay = str(trial.user_attrs[REPLAY_ATTR])
    try:
        try:
            words = shlex.split(replay)
        except ValueError as e:
            raise ConfigError(f"it does not split into words ({e})", CHANGED) from None
        if not words or words[0] != "hyperlab":
            raise ConfigError("it is not a `hyperlab ...` command line", CHANGED)
        # Without study settings, as older studies recorded them; allow_targets only from
        # this command's own line.
        overrides = stored(replay_args(replay))
        config, choices = compose([*keep, *overrides, f"repeats={seeds}", "progress=false"])
        checked = validate(config)
        check_unwidened(checked.allow_targets, allow)
    except HyperlabError as e:
        raise ConfigError(
            f"{where}: trial {trial.number}'s stored replay line is refused: {e.problem}",
            f"{e.fix or 'fix the key it names'}; or retest a study you trust",
        ) from None
    return _Plan(trial.number, float(trial.value), replay, overrides, checked, choices)


def _not_replayable(name: str, finished: Sequence[FrozenTrial], maximize: bool) -> ConfigError:
    """A study with complete trials of which none has hyperlab's replay line (made with
    Optuna directly, or by another tool): its trials' configs cannot be rebuilt."""

    best = (max if maximize else min)(finished, key=lambda t: float(t.value or 0))
    values = " ".join(f"{k}={v}" for k, v in best.params.items())
    return ConfigError(
        f"study {name!r} has {len(finished)} complete trial(s), but none was recorded by "
        f"hyperlab with a replay line (the {REPLAY_ATTR!r} trial attribute a hyperlab study "
        "writes): without it a trial's config cannot be rebuilt, so none can be retrained",
        "retest a study that hyperlab ran (hyperlab search=NAME ...); to retrain this "
        "study's best trial, give its parameters as overrides with seed repeats, e.g. "
        f"hyperlab {values} repeats=3 (if its parameter names are hyperlab's keys)",
    )


def _show(rows: Sequence[Row], metric: str, seeds: int) -> None:
    from rich.table import Table

    table = Table(title=f"{metric}: recorded then, {seeds} seed(s) now", title_justify="left")
    for col in ("trial", "recorded", "now (mean ± std)", "rank then", "rank now", "warning"):
        table.add_column(col, justify="left" if col == "warning" else "right")
    for r in rows:
        table.add_row(
            str(r.number),
            f"{r.recorded:.4f}",
            f"{r.spread.mean:.4f} ± {r.spread.std:.4f}",
            str(r.rank_then),
            str(r.rank_now),
            "[yellow]" + ", ".join(r.warnings()) if r.warnings() else "",
        )
    display.console.print(table)
    if any(r.rank_now != r.rank_then for r in rows):
        display.console.print(
            "[yellow]the ranking changed:[/] the study's order does not hold on today's code "
            "and data, or it was seed luck; consider a new study (repeats=R makes it robust)"
        )
