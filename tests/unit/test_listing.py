"""`hyperlab task=studies` (search.listing): the studies of a storage, told apart."""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from hyperlab.search import listing
from hyperlab.search import study as st
from hyperlab.search.setup import SPACE_ATTR


def make(path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = st.storage(str(path))
    a = optuna.create_study(study_name="lr_beta-da39a3ee", storage=storage, direction="maximize")
    a.set_user_attr(SPACE_ATTR, {"search": "lr_beta", "params": {}})
    for v in (0.91, 0.97, 0.95):
        a.tell(a.ask(), v)
    a.tell(a.ask(), state=TrialState.PRUNED)
    a.tell(a.ask(), state=TrialState.FAIL)
    b = optuna.create_study(study_name="adam_full epochs:3", storage=storage)
    b.tell(b.ask(), 0.25)
    b.ask()  # running


def test_studies_are_listed_with_counts_best_and_the_latest_first(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    make(path)
    rows = listing.studies(str(path))
    assert [r.name for r in rows] == ["adam_full epochs:3", "lr_beta-da39a3ee"]
    b, a = rows
    assert a.counts == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1} and a.search == "lr_beta"
    assert (a.best, a.best_trial, a.direction) == (0.97, 1, "maximize")
    assert (b.best, b.best_trial, b.direction) == (0.25, 0, "minimize")
    assert listing.counts(a.counts) == "3 complete, 1 pruned, 1 failed"
    assert listing.counts(b.counts) == "1 complete, 1 running"


@pytest.mark.parametrize("width", [60, 80, 200])
def test_the_listing_keeps_every_value_whole_at_any_width(tmp_path: Path, width: int) -> None:
    path = tmp_path / "journal.log"
    make(path)
    out = io.StringIO()
    listing.show(listing.studies(str(path)), str(path), Console(file=out, width=width))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines[1:-1]) <= width  # the table, or blocks, fit
    for whole in ("lr_beta-da39a3ee", "3 complete, 1 pruned, 1 failed", "0.97 (trial 1, maximize)"):
        assert any(whole in line for line in lines), (width, lines)
    assert "…" not in out.getvalue()
    # The newest study's retest, one line to copy, quoted for the shell.
    newest = listing.studies(str(path))[0].name
    assert lines[-1].endswith(f"hyperlab task=retest {shlex.quote('study=' + newest)}")
    # A table where it fits (94 columns here); a study's block of key: value lines where
    # it does not.
    assert any(line.startswith("  best: 0.97") for line in lines) == (width < 94)


def test_a_journal_that_does_not_exist_holds_no_studies_and_is_not_made(tmp_path: Path) -> None:
    path = tmp_path / "optuna" / "journal.log"
    assert listing.studies(str(path)) == []
    assert not path.exists() and not path.parent.exists()
    out = io.StringIO()
    listing.show([], str(path), Console(file=out))
    assert "no studies in" in out.getvalue() and "search=NAME" in out.getvalue()
