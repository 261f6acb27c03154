"""The study report (hyperlab.search.report) on a small in-memory study: its counts, best
trial, top trials, distinct values, importances and Markdown text."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hyperlab.search import report
from hyperlab.search.report import REPLAY_ATTR

LR = {"lr": FloatDistribution(1e-4, 1.0, log=True)}


def study(direction: str, trials: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    s = optuna.create_study(study_name="small", direction=direction)
    for t in trials:
        s.add_trial(t)
    return s


def complete(value: float, lr: float) -> optuna.trial.FrozenTrial:
    return create_trial(
        params={"lr": lr},
        distributions=LR,
        value=value,
        user_attrs={REPLAY_ATTR: f"hyperlab lr={lr}"},
    )


def mixed(direction: str) -> optuna.Study:
    """Trials 0-2 complete, 3 pruned, 4 failed before it was sampled."""
    return study(
        direction,
        [
            complete(0.5, 0.1),
            complete(0.9, 0.01),
            complete(0.7, 0.001),
            create_trial(state=TrialState.PRUNED, params={"lr": 0.5}, distributions=LR),
            create_trial(state=TrialState.FAIL),
        ],
    )


def test_counts_best_and_top_of_a_maximized_study() -> None:
    rep = report.build(mixed("maximize"), None, top_k=2)
    assert rep.name == "small" and rep.direction == "maximize"
    assert rep.counts == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1}
    assert rep.best is not None and rep.best.number == 1
    assert [t.number for t in rep.top] == [1, 2]
    # Distinct values count every sampled trial, the pruned one too; the failed one had none.
    assert rep.distinct == {"lr": 4} and rep.sampled == 4
    assert rep.importances == {"lr": pytest.approx(1.0)}
    assert rep.plots == []  # no directory given: nothing drawn


def test_a_minimized_study_ranks_the_lowest_first() -> None:
    rep = report.build(mixed("minimize"), None)
    assert rep.best is not None and rep.best.number == 0
    assert [t.number for t in rep.top] == [0, 2, 1]  # complete trials only


def test_markdown_names_the_best_its_replay_line_and_the_top_trials() -> None:
    text = report.markdown(report.build(mixed("maximize"), None, top_k=2))
    lines = text.splitlines()
    assert lines[0] == "# Study small"
    assert "direction: maximize; trials: 3 complete, 1 pruned, 1 failed" in lines
    assert "best: trial 1, value 0.9" in lines
    assert "    hyperlab lr=0.01" in lines
    table = lines.index("| trial | value | lr |")
    assert lines[table + 1 : table + 4] == [
        "|---|---|---|",
        "| 1 | 0.9 | 0.01 |",
        "| 2 | 0.7 | 0.001 |",
    ]
    assert "| lr | 4 |" in lines and "| parameter | distinct values tried (in 4 trials) |" in lines
    assert "| lr | 1.0000 |" in lines
    assert text.endswith("\n")


def test_a_study_without_a_complete_trial_has_no_best() -> None:
    s = study("maximize", [create_trial(state=TrialState.FAIL)])
    rep = report.build(s, None)
    assert rep.counts == {"FAIL": 1} and rep.best is None and rep.top == []
    assert rep.importances == {} and rep.distinct == {}
    text = report.markdown(rep)
    assert "best:" not in text and "| trial |" not in text


def test_one_searched_parameter_is_all_the_importance_and_gets_its_own_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one parameter varied, its importance is 1 without fitting fANOVA's forest, and
    the plots are the history and the slice (coordinates and importances would say no
    more); with two, every plot is drawn."""

    def no_fanova(*args: object, **kwargs: object) -> dict[str, float]:
        raise AssertionError("fANOVA fitted for one parameter")

    with monkeypatch.context() as m:
        m.setattr(optuna.importance, "get_param_importances", no_fanova)
        rep = report.build(mixed("maximize"), tmp_path / "one")
    assert rep.importances == {"lr": 1.0}
    assert sorted(p.name for p in rep.plots) == ["optimization_history.png", "slice.png"]

    both = {**LR, "wd": FloatDistribution(0.0, 1.0)}
    two = study(
        "maximize",
        [
            create_trial(value=v, params={"lr": lr, "wd": wd}, distributions=both)
            for v, lr, wd in [(0.5, 0.1, 0.2), (0.7, 0.01, 0.5), (0.6, 0.001, 0.9), (0.4, 0.3, 0.1)]
        ],
    )
    rep = report.build(two, tmp_path / "two")
    assert set(rep.importances) == {"lr", "wd"}
    assert {p.name for p in rep.plots} >= {"parallel_coordinate.png", "param_importances.png"}


@pytest.mark.parametrize("width", [60, 80, 200])
def test_the_report_keeps_every_value_whole_at_any_width(width: int) -> None:
    """The top trials as a table where it fits, else a block a trial: never `0.…`."""
    import io

    from rich.console import Console

    both = {**LR, "1-optimizer.beta2": FloatDistribution(1e-4, 1e-2, log=True)}
    params = [(0.000123456789, 0.00123456789), (0.0987654321, 0.000987654321)]
    s = study(
        "maximize",
        [
            create_trial(
                value=0.9 - i / 10, params={"lr": lr, "1-optimizer.beta2": b}, distributions=both
            )
            for i, (lr, b) in enumerate(params)
        ],
    )
    out = io.StringIO()
    report.show(report.build(s, None), Console(file=out, width=width))
    text = out.getvalue()
    assert "…" not in text
    for whole in ("0.000123457", "0.998765", "0.0987654", "0.999012"):
        assert whole in text, (width, text)
    assert all(len(line) <= width for line in text.splitlines() if "│" in line)


def test_parallel_coordinates_show_the_six_most_important_of_many_parameters(
    tmp_path: Path,
) -> None:
    """Eleven axes are illegible: the plot keeps the six most important and says so."""
    import matplotlib.image

    names = [f"p{i}" for i in range(8)]
    space = {n: FloatDistribution(0.0, 1.0) for n in names}
    rng = __import__("random").Random(0)
    trials = []
    for _ in range(12):
        params = {n: rng.random() for n in names}
        trials.append(
            create_trial(
                value=params["p0"] + 0.1 * params["p1"], params=params, distributions=space
            )
        )
    s = study("maximize", trials)
    captured: dict[str, object] = {}
    real = optuna.visualization.matplotlib.plot_parallel_coordinate

    def spy(st: optuna.Study, params: list[str]) -> object:
        ax = real(st, params=params)
        captured["params"], captured["ax"] = params, ax
        return ax

    with pytest.MonkeyPatch.context() as m:
        m.setattr(optuna.visualization.matplotlib, "plot_parallel_coordinate", spy)
        rep = report.build(s, tmp_path)
    assert len(captured["params"]) == 6  # type: ignore[arg-type]
    assert captured["params"][:1] == [next(iter(rep.importances))]  # type: ignore[index]
    title = captured["ax"].get_title()  # type: ignore[attr-defined]
    assert title == "Parallel coordinates: the 6 most important of 8 parameters"
    assert matplotlib.image.imread(tmp_path / "parallel_coordinate.png").size > 0


def test_summary_md_names_parameters_as_the_terminal_does_and_warns_of_few_trials() -> None:
    import io

    from rich.console import Console

    both = {**LR, "1-optimizer.beta2": FloatDistribution(1e-4, 1e-2, log=True)}
    values = [(0.0001, 0.001), (0.01, 0.002), (0.003, 0.0005), (0.03, 0.004)]
    s = study(
        "maximize",
        [
            create_trial(
                value=0.5 + i / 10, params={"lr": lr, "1-optimizer.beta2": b}, distributions=both
            )
            for i, (lr, b) in enumerate(values)
        ],
    )
    rep = report.build(s, None)
    rep.importances = {"lr": 0.7, "optimizer.beta2": 0.3}  # as fANOVA would give them
    text = report.markdown(rep)
    assert "| trial | value | lr | optimizer.beta2 |" in text and "1-optimizer" not in text
    assert "| 3 | 0.8 | 0.03 | 0.996 |" in text
    warning = "(from 4 complete trials for 2 parameters: below about 20 trials, importances"
    assert warning in text
    out = io.StringIO()
    report.show(rep, Console(file=out, width=200))
    assert warning in out.getvalue()
    rep.counts["COMPLETE"] = 20  # enough: no caveat
    assert "mostly noise" not in report.markdown(rep)
