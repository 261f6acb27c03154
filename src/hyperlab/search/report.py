"""The end of a study: best trial, top trials, hyperparameter importances and plots."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from hyperlab.display import fit, plain

# Re-exported: what other modules read from the report, defined in findings.py.
from hyperlab.search.findings import (
    REPLAY_ATTR,
    TRIALS_PER_PARAMETER,
    Report,
    caveat,
    fmt,
    importances,
    key_of,
    save_plots,
    values,
)
from hyperlab.search.listing import counts

__all__ = [
    "REPLAY_ATTR",
    "TRIALS_PER_PARAMETER",
    "Finished",
    "Report",
    "build",
    "caveat",
    "data_changes",
    "distinct_values",
    "fmt",
    "importances",
    "key_of",
    "markdown",
    "save_plots",
    "show",
    "show_space",
    "values",
    "write",
]

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hyperlab.schema import Config
    from hyperlab.search.setup import Setup


def build(study: optuna.Study, out_dir: Path | None, top_k: int = 10) -> Report:
    """Collect the report; with `out_dir`, also draw the plots there as PNG files."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    if len(study.directions) > 1:  # no best trial: a front
        from hyperlab.search import pareto

        rep = Report(study.study_name, "", counts, None, [])
        rep.distinct, rep.sampled = distinct_values(trials)
        pareto.fill(rep, study, out_dir)
        return rep
    maximize = study.direction.name == "MAXIMIZE"
    top = sorted(
        complete, key=lambda t: t.value if t.value is not None else math.nan, reverse=maximize
    )[:top_k]
    rep = Report(
        study.study_name, study.direction.name.lower(), counts, top[0] if top else None, top
    )
    rep.distinct, rep.sampled = distinct_values(trials)
    if len(complete) >= 2:
        rep.importances = importances(study)
    if out_dir is not None and complete:
        rep.plots = _plots(study, rep, out_dir)
    return rep


def distinct_values(trials: list[FrozenTrial]) -> tuple[dict[str, int], int]:
    """Per searched parameter (by override key), how many distinct values the trials
    tried, whatever became of them; and how many trials were sampled at all."""
    tried: dict[str, set[Any]] = {}
    for t in trials:
        for k, v in t.params.items():
            tried.setdefault(key_of(k), set()).add(v)
    return {k: len(tried[k]) for k in sorted(tried)}, sum(1 for t in trials if t.params)


COORDINATES = 6  # parameters a parallel-coordinate plot can show legibly


def _coordinates(vis: Any, study: optuna.Study, ranked: list[str]) -> Any:
    """Optuna's parallel-coordinate plot of the most important parameters, at most
    COORDINATES of them (eleven axes are illegible), saying so in its title."""
    ax = vis.plot_parallel_coordinate(study, params=ranked[:COORDINATES])
    if len(ranked) > COORDINATES:
        ax.set_title(
            f"Parallel coordinates: the {COORDINATES} most important of {len(ranked)} parameters"
        )
    return ax


def _plots(study: optuna.Study, rep: Report, out_dir: Path) -> list[Path]:
    from optuna.visualization import matplotlib as vis

    names = {key_of(k): k for t in rep.top for k in t.params}  # override key -> Optuna name
    ranked = [names[k] for k in rep.importances if k in names] or sorted(names.values())
    drawings: list[tuple[str, Any]] = [
        ("optimization_history", lambda: vis.plot_optimization_history(study)),
    ]
    # With one parameter, the slice plot says all: coordinates and importances would not.
    if len(names) > 1:
        drawings.append(("parallel_coordinate", lambda: _coordinates(vis, study, ranked)))
    if rep.importances and len(names) > 1:
        drawings.append(("param_importances", lambda: vis.plot_param_importances(study)))
    if len(ranked) >= 2:
        drawings.append(("contour", lambda: vis.plot_contour(study, params=ranked[:2])))
    if ranked:
        drawings.append(("slice", lambda: vis.plot_slice(study, params=ranked[:2])))
    return save_plots(drawings, out_dir)


def show(rep: Report, console: Console) -> None:
    """Print the best trial with its replay line, the top trials and the importances."""
    states = counts(rep.counts)
    console.print(f"\n[bold]study {plain(rep.name)}[/] ({rep.direction}): {states}")
    if rep.note:
        console.print(f"[bold yellow]{plain(rep.note)}[/]", highlight=False)
    if rep.objectives:
        from hyperlab.search import pareto

        pareto.show(rep, console)
        _show_distinct(rep, console)
        return
    if rep.best is None:
        console.print("no trial completed")
        return
    console.print(f"[bold]best:[/] trial {rep.best.number}, value {rep.best.value:.4f}")
    console.print(f"  replay: {plain(rep.best.user_attrs.get(REPLAY_ATTR, '?'))}")
    for line in pbt_lines(rep.best):
        console.print(f"  {plain(line)}", highlight=False)
    keys = sorted({k for t in rep.top for k in values(t)})
    rows = [
        [str(t.number), f"{t.value:.4f}", *(fmt(values(t).get(k)) for k in keys)] for t in rep.top
    ]
    header = ["trial", "value", *keys]
    fit(console, f"top {len(rep.top)} trials", header, rows, right=header)
    _show_distinct(rep, console)
    if rep.importances:
        console.print(
            "[bold]importances:[/] "
            + ", ".join(f"{plain(k)} {v:.2f}" for k, v in rep.importances.items())
        )
        if caveat(rep):
            console.print(f"  {caveat(rep)}", highlight=False)


def _show_distinct(rep: Report, console: Console) -> None:
    if rep.distinct:
        console.print(
            "[bold]distinct values tried:[/] "
            + ", ".join(f"{plain(k)} {n}" for k, n in rep.distinct.items())
            + f" (in {rep.sampled} trials)"
        )


def pbt_lines(best: FrozenTrial) -> list[str]:
    """A PBT trial's schedule (hyperlab.pbt): which slot trained its weights when, with
    which values, its own lineage, and what its replay line reproduces."""
    lineage = best.user_attrs.get("pbt_lineage")
    if lineage is None:
        return []
    schedule = best.user_attrs.get("pbt_schedule") or {}
    stages = schedule.get("stages") or []
    last = max((s.get("to_epoch", 0) for s in schedule.get("segments") or []), default=0)
    spans = []
    for stage, nxt in zip(stages, [*stages[1:], {"epoch": last + 1}], strict=False):
        values = ", ".join(f"{k} {v:.4g}" for k, v in stage["values"].items())
        spans.append(
            f"epochs {stage['epoch']}-{nxt['epoch'] - 1} in trial {stage['trained_by']} ({values})"
        )
    return [
        *([f"PBT schedule of its weights: {'; '.join(spans)}"] if spans else []),
        f"its lineage: {lineage}",
        "(population-based training: the replay line trains one model through that "
        "schedule, from the same seed; the table's values are where each trial's slot "
        "started)",
    ]


def markdown(rep: Report) -> str:
    """The report as Markdown, for the sweep directory and the parent run."""
    lines = [
        f"# Study {rep.name}",
        "",
        f"direction: {rep.direction}; trials: {counts(rep.counts)}",
        "",
        *([rep.note, ""] if rep.note else []),
    ]
    if rep.objectives:
        from hyperlab.search import pareto

        lines += pareto.markdown(rep)
    if rep.best is not None:
        lines += [
            f"best: trial {rep.best.number}, value {rep.best.value:.6g}",
            "",
            f"    {rep.best.user_attrs.get(REPLAY_ATTR, '')}",
            "",
            *(x for line in pbt_lines(rep.best) for x in (line, "")),
        ]
        # The keys a user overrides (optimizer.beta), not the sampled 1-optimizer.beta.
        keys = sorted({k for t in rep.top for k in values(t)})
        lines += ["| trial | value | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
        lines += [
            f"| {t.number} | {t.value:.6g} | "
            + " | ".join(fmt(values(t).get(k)) for k in keys)
            + " |"
            for t in rep.top
        ]
    if rep.distinct:
        lines += [
            "",
            f"| parameter | distinct values tried (in {rep.sampled} trials) |",
            "|---|---|",
        ]
        lines += [f"| {k} | {n} |" for k, n in rep.distinct.items()]
    if rep.importances:
        lines += ["", "| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in rep.importances.items()]
        if caveat(rep):
            lines += ["", caveat(rep)]
    return "\n".join(lines) + "\n"


def data_changes(s: optuna.Study) -> str:
    """One line naming the trials that trained on other data than the study's first
    trial, or "" when every trial trained on the same data."""
    from hyperlab.search.setup import DATA_ATTR, FIRST_DATA_ATTR

    first = s.user_attrs.get(FIRST_DATA_ATTR)
    other = [
        t
        for t in s.get_trials(deepcopy=False)
        if first and t.user_attrs.get(DATA_ATTR, first) != first
    ]
    if not other:
        return ""
    hashes = sorted({str(t.user_attrs[DATA_ATTR])[:12] for t in other})
    return (
        f"warning: trial(s) {', '.join(str(t.number) for t in other)} trained on other data "
        f"(data.sha256 {', '.join(hashes)}) than the study's first trial ({str(first)[:12]}): the "
        "data changed during the study, so their values are not comparable with the others'"
    )


def show_space(setup: Setup, console: Any) -> None:
    from hyperlab.search.space import quantiles

    how = "every range linear: sampler=random" if setup.naive else "appropriate scales"
    header = ["parameter", "type", "range", "scale", "when", "5%", "25%", "50%", "75%", "95%"]
    rows = []
    for p in setup.params:
        qs = quantiles(p, naive=setup.naive)
        cells = [f"{q:.4g}" if isinstance(q, float) else str(q) for q in qs]
        if p.kind == "categorical":
            cells = [", ".join(map(str, p.choices)), "", "", "", ""]
        scale = "linear" if setup.naive and p.kind != "categorical" else p.scale
        rng = "" if p.kind == "categorical" else f"[{p.low:g}, {p.high:g}]"
        when = ", ".join(f"{k} in {list(v)}" for k, v in p.when.items())
        rows.append([p.key, p.kind, rng, scale if p.kind != "categorical" else "", when, *cells])
    fit(console, f"search space ({how})", header, rows)
    console.print(f"study {plain(setup.name)}: {setup.n_trials} trials (dry run: nothing trained)")


@dataclass
class Finished:
    """What the sweeper knows at the end: the report, and the study it was built from."""

    report: Report
    study: optuna.Study
    summary: Path  # summary.md in the sweep directory


def write(
    cfg: Config,
    setup: Setup,
    sweep_dir: Path,
    failure: BaseException | None,
    deadline: float = 0.0,
) -> Finished | None:
    """Show and save the study's report (saying so when the time budget that ends at
    `deadline` stopped it); None when the storage cannot be read (a worker stopped for it
    already waited `sweep.retry_seconds`: one more try only)."""
    from hyperlab.display import console, error_console
    from hyperlab.search.budget import note
    from hyperlab.search.setup import load_study
    from hyperlab.search.study import Retry, WorkerStopped

    seconds = 0.0 if isinstance(failure, WorkerStopped) else cfg.sweep.retry_seconds
    summary = sweep_dir / "summary.md"
    try:
        s = load_study(cfg, setup, 0, Retry(setup.url, seconds))
        rep = build(s, sweep_dir)
        if failure is None:
            rep.note = note(cfg.sweep.timeout, deadline, setup.n_trials, rep.counts)
        show(rep, console)
        changed = data_changes(s)
        if changed:
            error_console.print(f"[yellow]{changed}[/]", highlight=False)
        summary.write_text(markdown(rep) + (f"\n{changed}\n" if changed else ""))
    except WorkerStopped as e:
        error_console.print(f"[yellow]no report:[/] {plain(e.problem)}")
        return None
    except OSError as e:  # outputs/ full, read-only or deleted: the study itself is kept
        error_console.print(
            f"[yellow]no report:[/] {e.filename or sweep_dir} could not be written "
            f"({e.strerror or e})"
        )
        return None
    return Finished(rep, s, summary)
