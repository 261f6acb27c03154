"""The end of a multi-objective study: instead of one best trial, its Pareto front (Optuna's
study.best_trials: the complete trials that no other complete trial matches on every
objective and beats on one), with a replay line each; the importances of the parameters
for each objective; and the Pareto plot. hyperlab.search.report calls it for a study with
several directions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperlab.display import fit, plain

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial
    from rich.console import Console

    from hyperlab.search.findings import Report

FRONT_FILE = "pareto_front.md"


def is_multi(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def directions_of(study: optuna.Study) -> list[str]:
    return [d.name.lower() for d in study.directions]


def names_of(study: optuna.Study) -> list[str]:
    """The objectives' metric names (recorded when the study was made; numbered if not)."""
    return list(study.metric_names or [f"objective {i}" for i in range(len(study.directions))])


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether values `a` are at least as good as `b` on every objective and better on one."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    better = [s * x - s * y for s, x, y in zip(signs, a, b, strict=True)]
    return all(d >= 0 for d in better) and any(d > 0 for d in better)


def front_of(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> list[FrozenTrial]:
    """The complete trials no other complete trial dominates (as study.best_trials, for a
    view that holds the trials already), in trial order."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.values is not None]
    return [t for t in done if not any(dominates(o.values, t.values, directions) for o in done)]


def ordered(front: Sequence[FrozenTrial], directions: Sequence[str]) -> list[FrozenTrial]:
    """The front best first by the first objective (ties in trial order): down the table,
    what the first objective gives up for the others."""
    sign = -1.0 if directions[0] == "maximize" else 1.0
    return sorted(front, key=lambda t: (sign * t.values[0], t.number))


def fill(rep: Report, study: optuna.Study, out_dir: Path | None) -> None:
    """Fill the report of a multi-objective study: its objectives, front, importances per
    objective and, with `out_dir`, the plots and pareto_front.md there."""
    from hyperlab.objectives import describe
    from hyperlab.search.findings import importances

    rep.objectives, dirs = names_of(study), directions_of(study)
    rep.direction = describe(rep.objectives, dirs)
    rep.front = ordered(study.best_trials, dirs)
    if rep.counts.get("COMPLETE", 0) >= 2:
        for i, name in enumerate(rep.objectives):
            found = importances(study, target=_target(i, dirs[i]))
            if found:
                rep.per_objective[name] = found
    if out_dir is not None and rep.front:
        rep.plots = _plots(study, rep, out_dir)
        path = out_dir / FRONT_FILE
        path.write_text(front_markdown(rep))
        rep.files.append(path)


def _target(i: int, direction: str) -> Any:
    """Objective i as a value to minimize: Optuna's default importance evaluator (PED-ANOVA)
    takes a target's lower values as the better ones, whatever the study's directions."""
    sign = -1.0 if direction == "maximize" else 1.0
    return lambda t: sign * t.values[i]


def _plots(study: optuna.Study, rep: Report, out_dir: Path) -> list[Path]:
    """pareto_front.png, and per objective the parameters' importances where two or more
    parameters varied (one explains everything)."""
    from optuna.visualization import matplotlib as vis

    from hyperlab.search.findings import save_plots

    drawings: list[tuple[str, Any]] = [
        ("pareto_front", lambda: vis.plot_pareto_front(study, target_names=rep.objectives))
    ]
    dirs = directions_of(study)
    for i, name in enumerate(rep.objectives):
        if len(rep.per_objective.get(name, {})) > 1:
            drawings.append(
                (
                    f"param_importances_{name}",
                    lambda i=i, name=name: vis.plot_param_importances(
                        study, target=_target(i, dirs[i]), target_name=name
                    ),
                )
            )
    return save_plots(drawings, out_dir)


def _value(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.4g}"


def _why(rep: Report) -> str:
    complete = rep.counts.get("COMPLETE", 0)
    return (
        f"{len(rep.front)} of {complete} complete trials: no other complete trial is as good "
        "on every objective and better on one"
    )


def show(rep: Report, console: Console) -> None:
    """The front as a table (each objective's value, then the parameters) and a replay line
    per trial, then each objective's importances."""
    from hyperlab.search.findings import REPLAY_ATTR, caveat, fmt, values

    if not rep.front:
        console.print("no trial completed")
        return
    console.print(f"[bold]Pareto front:[/] {_why(rep)}", highlight=False)
    keys = sorted({k for t in rep.front for k in values(t)})
    header = ["trial", *rep.objectives, *keys]
    rows = [
        [str(t.number), *(_value(v) for v in t.values), *(fmt(values(t).get(k)) for k in keys)]
        for t in rep.front
    ]
    fit(console, "", header, rows, right=header)
    console.print("[bold]replay:[/]")
    for t in rep.front:
        console.print(
            f"  trial {t.number}: {plain(t.user_attrs.get(REPLAY_ATTR, '?'))}",
            soft_wrap=True,
            highlight=False,
        )
    for name, found in rep.per_objective.items():
        console.print(
            f"[bold]importances for {plain(name)}:[/] "
            + ", ".join(f"{plain(k)} {v:.2f}" for k, v in found.items())
        )
    if rep.per_objective and caveat(rep, next(iter(rep.per_objective.values()))):
        console.print(f"  {caveat(rep, next(iter(rep.per_objective.values())))}", highlight=False)


def front_markdown(rep: Report) -> str:
    """The front as Markdown: a table of its trials and their replay lines (summary.md's
    front, and the parent run's pareto_front.md)."""
    from hyperlab.search.findings import REPLAY_ATTR, fmt, values

    keys = sorted({k for t in rep.front for k in values(t)})
    lines = [
        f"Pareto front ({rep.direction}): {_why(rep)}",
        "",
        "| trial | " + " | ".join([*rep.objectives, *keys]) + " |",
        "|---" * (1 + len(rep.objectives) + len(keys)) + "|",
    ]
    lines += [
        f"| {t.number} | "
        + " | ".join([*(f"{v:.6g}" for v in t.values), *(fmt(values(t).get(k)) for k in keys)])
        + " |"
        for t in rep.front
    ]
    lines += ["", "Replay:", ""]
    lines += [f"- trial {t.number}: `{t.user_attrs.get(REPLAY_ATTR, '')}`" for t in rep.front]
    return "\n".join(lines) + "\n"


def markdown(rep: Report) -> list[str]:
    """summary.md's lines on the front and the importances per objective."""
    from hyperlab.search.findings import caveat

    lines = [front_markdown(rep)] if rep.front else ["no trial completed", ""]
    for name, found in rep.per_objective.items():
        lines += [f"| parameter | importance for {name} |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in found.items()]
        lines += [""]
    if rep.per_objective and caveat(rep, next(iter(rep.per_objective.values()))):
        lines += [caveat(rep, next(iter(rep.per_objective.values()))), ""]
    return lines


def front_tag(rep: Report) -> str:
    """The parent run's hyperlab.front: a line per front trial with its MLflow run and
    values, cut short (with a pointer to pareto_front.md) past MLflow's tag length."""
    from hyperlab.search.multi import RUN_ATTR

    lines = [
        f"trial {t.number}: run {t.user_attrs.get(RUN_ATTR, '-')} "
        + " ".join(f"{m}={v:.6g}" for m, v in zip(rep.objectives, t.values, strict=True))
        for t in rep.front
    ]
    text = "\n".join(lines)
    if len(text) <= 7000:
        return text
    return text[:7000].rsplit("\n", 1)[0] + f"\n... ({len(lines)} trials: see {FRONT_FILE})"
