"""The Pareto front of a multi-objective study (hyperlab.search.pareto), on a synthetic
study whose values are known: what is reported is exactly the non-dominated complete
trials, in the terminal, summary.md, pareto_front.md, the parent run's tag and the live view."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from hyperlab.search import pareto, report
from hyperlab.search.multi import RUN_ATTR
from hyperlab.search.watch import StudyView

SPACE = {
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "model.hidden_units": IntDistribution(2, 64),
}
# (dev_acc maximized, n_params minimized) of trials 0..7; trial 5 pruned, 6 failed.
VALUES = {
    0: (0.90, 500.0),  # front: the most accurate of the small ones
    1: (0.80, 100.0),  # front: the smallest
    2: (0.85, 600.0),  # dominated by 0 (less accurate, larger)
    3: (0.90, 700.0),  # dominated by 0 (as accurate, larger)
    4: (0.95, 2000.0),  # front: the most accurate
    7: (0.85, 300.0),  # front: between 1 and 0
}
FRONT = [4, 0, 7, 1]  # best first by dev_acc


def multi_study() -> optuna.Study:
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.set_metric_names(["dev_acc", "n_params"])
    for n in range(8):
        params = {"lr": 0.01 * (n + 1), "model.hidden_units": 2 + n}
        attrs = {"replay": f"hyperlab lr={params['lr']} model.hidden_units={2 + n}"}
        if n in VALUES:
            attrs[RUN_ATTR] = f"run{n}"
            t = create_trial(
                values=list(VALUES[n]), params=params, distributions=SPACE, user_attrs=attrs
            )
        else:
            state = TrialState.PRUNED if n == 5 else TrialState.FAIL
            t = create_trial(state=state, params=params, distributions=SPACE, user_attrs=attrs)
        s.add_trial(t)
    return s


def test_dominance_is_at_least_as_good_everywhere_and_better_somewhere() -> None:
    dirs = ["maximize", "minimize"]
    assert pareto.dominates([0.9, 500], [0.85, 600], dirs)
    assert pareto.dominates([0.9, 500], [0.9, 700], dirs)
    assert not pareto.dominates([0.9, 500], [0.9, 500], dirs)  # equal: neither
    assert not pareto.dominates([0.95, 2000], [0.8, 100], dirs)  # a trade
    assert pareto.dominates([0.1, 5], [0.2, 6], ["minimize", "minimize"])


def test_the_reported_front_is_exactly_the_non_dominated_complete_trials(tmp_path: Path) -> None:
    s = multi_study()
    rep = report.build(s, tmp_path)
    assert [t.number for t in rep.front] == FRONT
    assert rep.best is None and rep.top == [] and rep.objectives == ["dev_acc", "n_params"]
    assert rep.direction == "dev_acc (maximize), n_params (minimize)"
    assert rep.counts == {"COMPLETE": 6, "PRUNED": 1, "FAIL": 1}
    dirs = ["maximize", "minimize"]
    complete = [t for t in s.trials if t.state == TrialState.COMPLETE]
    reported = {t.number for t in rep.front}
    # No reported trial is dominated by any complete trial ...
    for f, t in itertools.product(rep.front, complete):
        assert not pareto.dominates(t.values, f.values, dirs)
    # ... and every complete trial no other dominates is reported.
    for t in complete:
        if not any(pareto.dominates(o.values, t.values, dirs) for o in complete):
            assert t.number in reported
    assert sorted(reported) == sorted(t.number for t in s.best_trials)
    assert [t.number for t in pareto.front_of(s.trials, dirs)] == sorted(FRONT)
    assert set(rep.per_objective) == {"dev_acc", "n_params"}
    drawn = {p.name for p in rep.plots}
    assert "pareto_front.png" in drawn and (tmp_path / "pareto_front.png").stat().st_size > 0
    assert [p.name for p in rep.files] == ["pareto_front.md"]


def test_the_terminal_and_summary_md_list_the_front_with_replay_lines(tmp_path: Path) -> None:
    rep = report.build(multi_study(), tmp_path)
    out = io.StringIO()
    report.show(rep, Console(file=out, width=200))
    text = out.getvalue()
    assert (
        "Pareto front: 4 of 6 complete trials: no other complete trial is as good on every "
        "objective and better on one" in text
    )
    rows = re.findall(r"^│\s+(\d+) │\s+([0-9.]+) │\s+(\d+) │", text, re.M)
    assert rows == [
        ("4", "0.95", "2000"),
        ("0", "0.9", "500"),
        ("7", "0.85", "300"),
        ("1", "0.8", "100"),
    ]
    for n in FRONT:
        assert f"  trial {n}: hyperlab lr={0.01 * (n + 1)} model.hidden_units={2 + n}" in text
    assert "best:" not in text and "importances for dev_acc:" in text
    md = report.markdown(rep)
    front_md = (tmp_path / "pareto_front.md").read_text()
    assert front_md in md
    assert "| trial | dev_acc | n_params | lr | model.hidden_units |" in front_md
    assert "| 4 | 0.95 | 2000 | 0.05 | 6 |" in front_md
    assert "- trial 1: `hyperlab lr=0.02 model.hidden_units=3`" in front_md
    for n in (2, 3):  # dominated: in neither table
        assert f"\n| {n} |" not in front_md
    assert pareto.front_tag(rep).splitlines() == [
        "trial 4: run run4 dev_acc=0.95 n_params=2000",
        "trial 0: run run0 dev_acc=0.9 n_params=500",
        "trial 7: run run7 dev_acc=0.85 n_params=300",
        "trial 1: run run1 dev_acc=0.8 n_params=100",
    ]


def test_the_live_view_shows_each_value_and_whether_a_trial_is_on_the_front() -> None:
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.set_metric_names(["dev_acc", "n_params"])
    out = io.StringIO()
    with StudyView(s, 4, "dev_acc", Console(file=out, width=60), every=10):
        for n in (0, 2, 1, 4):
            params = {"lr": 0.01 * (n + 1), "model.hidden_units": 2 + n}
            s.add_trial(create_trial(values=list(VALUES[n]), params=params, distributions=SPACE))
    lines = [re.sub(r"  lr=.*", "", line) for line in out.getvalue().splitlines()]
    assert lines == [
        "trial 0 complete  dev_acc 0.9  n_params 500  on the front (1 trial)",
        "trial 1 complete  dev_acc 0.85  n_params 600  front (1 trial)",
        "trial 2 complete  dev_acc 0.8  n_params 100  on the front (2 trials)",
        "trial 3 complete  dev_acc 0.95  n_params 2000  on the front (3 trials)",
    ]


def test_importances_rank_each_objective_as_better_lower() -> None:
    # PED-ANOVA, Optuna's default evaluator, takes a target's low values as the good ones.
    (t,) = [t for t in multi_study().trials if t.number == 0]
    assert pareto._target(0, "maximize")(t) == -0.9
    assert pareto._target(1, "minimize")(t) == 500.0
