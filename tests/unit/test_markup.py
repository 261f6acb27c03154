"""User text is printed as written: rich reads `[...]` as markup, so a path, a study name or
a categorical value holding brackets lost them (`[final]`), crashed the command with a
MarkupError (`[/red]`, `x[/bold]y`), or printed as nothing (a region `[rmsprop]`).

Here: the pieces on their own; e2e/test_markup.py holds the rest."""

from __future__ import annotations

import re

import optuna
import pytest
from rich.console import Console

from hyperlab import display
from hyperlab.display import exit_with
from hyperlab.errors import DataError
from hyperlab.search import report

optuna.logging.set_verbosity(optuna.logging.WARNING)


def recorder() -> Console:
    return Console(record=True, width=250, highlight=False)


def test_plain_keeps_brackets() -> None:
    c = recorder()
    for text in ("x[final]", "a[/red].csv", "x[/bold]y", "[rmsprop]", "[bold]x[/]", "\\[a]"):
        c.print(f"[bold]shown:[/] {display.plain(text)}")
        assert c.export_text().strip() == f"shown: {text}"


def test_an_error_shows_its_problem_and_fix_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    c = recorder()
    monkeypatch.setattr(display, "error_console", c)
    with pytest.raises(SystemExit) as e:
        exit_with(DataError("no file /d/x[final]/a[/red].csv", "write [bold] or x[/bold]y"))
    assert e.value.code == 2
    assert c.export_text().splitlines() == [
        "error: no file /d/x[final]/a[/red].csv",
        "  fix: write [bold] or x[/bold]y",
    ]


def test_a_report_shows_names_and_values_as_written() -> None:
    s = optuna.create_study(study_name="x[/bold]y", direction="maximize")
    dist = optuna.distributions.CategoricalDistribution(["[rmsprop]", "[/red]"])
    for value, choice in ((0.5, "[rmsprop]"), (0.7, "[/red]")):
        s.add_trial(
            optuna.trial.create_trial(
                params={"optimizer": choice},
                distributions={"optimizer": dist},
                value=value,
                user_attrs={report.REPLAY_ATTR: f"hyperlab optimizer={choice}"},
            )
        )
    c = recorder()
    report.show(report.build(s, None), c)
    out = c.export_text()
    assert "study x[/bold]y (maximize)" in out
    assert "replay: hyperlab optimizer=[/red]" in out
    assert re.search(r"1 .*0\.7000 .*\[/red\]", out) and re.search(
        r"0 .*0\.5000 .*\[rmsprop\]", out
    )


def test_where_to_look_is_a_server_s_address_or_a_command_to_copy_and_an_address() -> None:
    page = display.ui_page("3", "ab12")
    assert page == "#/experiments/3/runs/ab12" and display.ui_page("3") == "#/experiments/3/runs"
    assert display.where_to_look("http://mlflow.lab:5000/", page) == [
        "open http://mlflow.lab:5000/#/experiments/3/runs/ab12?workflowType=machine_learning"
    ]
    assert display.where_to_look("https://bob:s3cret@mlflow.lab") == [
        "open https://bob:***@mlflow.lab"
    ]
    assert display.where_to_look("sqlite:///outputs/mlflow.db", page) == [
        "mlflow ui --host 127.0.0.1 --backend-store-uri sqlite:///outputs/mlflow.db",
        "then open http://127.0.0.1:5000/#/experiments/3/runs/ab12?workflowType=machine_learning",
    ]
    assert display.where_to_look("sqlite:////tmp/my runs/m.db")[0].endswith(
        "--backend-store-uri 'sqlite:////tmp/my runs/m.db'"
    )
    assert "Databricks" in display.where_to_look("databricks://profile")[0]
