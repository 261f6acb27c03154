"""Refused input: the bad files the refusal tests feed hyperlab, how a refusal is checked
(exit code, message, fix, no traceback, no password), and a snapshot of what a directory's
MLflow store and study journal hold, to show that a refused command changed nothing."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from mlflow import MlflowClient
from mlflow.entities import ViewType

from hyperlab.search import study

# A password in the refused URLs: no message may show it.
SECRET = "s3cret-for-tests"


def _rows(n: int, value: Callable[[int], str] = str, label: Callable[[int], str] = str) -> str:
    return "".join(f"{i},{value(i)},{label(i % 2)}\n" for i in range(n))


def write_files(d: Path) -> None:
    """Every bad data file, next to good ones for contrast."""
    d.mkdir(parents=True, exist_ok=True)
    head = "a,b,label\n"
    (d / "good.csv").write_text(head + _rows(40))
    (d / "empty.csv").write_text("")
    (d / "header_only.csv").write_text(head)
    (d / "non_numeric.csv").write_text(head + "1,x,0\n2,3,1\n" + _rows(40))
    (d / "nan.csv").write_text(head + _rows(40, lambda i: "nan" if i == 3 else str(i)))
    (d / "inf.csv").write_text(head + _rows(40, lambda i: "1e400" if i == 3 else str(i)))
    (d / "huge.csv").write_text(head + _rows(40, lambda i: f"{(-1) ** i}e300"))
    (d / "one_class.csv").write_text(head + _rows(40, label=lambda c: "1"))
    (d / "ragged.csv").write_text(head + "1,2,0\n1,2\n")
    (d / "continuous.csv").write_text(head + "".join(f"{i},{i},{i / 7:.4f}\n" for i in range(40)))
    (d / "no_label.csv").write_text(head + _rows(10) + "3,4,\n")
    (d / "semicolons.csv").write_text("a;b;label\n" + _rows(40).replace(",", ";"))
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (d / "a_directory.csv").mkdir(exist_ok=True)
    y = np.arange(40) % 2
    x = np.random.default_rng(0).normal(size=(40, 2))
    np.savez(d / "good.npz", X=x, y=y)
    np.savez(d / "no_y.npz", X=x)
    np.savez(d / "3d.npz", X=np.ones((40, 2, 2)), y=y)
    np.savez(d / "short_labels.npz", X=x, y=y[:39])
    np.savez(d / "one_hot.npz", X=x, y=np.eye(2)[y])
    np.savez(d / "nan.npz", X=np.where(np.arange(80).reshape(40, 2) == 5, np.nan, x), y=y)
    np.savez(d / "inf.npz", X=np.where(np.arange(80).reshape(40, 2) == 5, -np.inf, x), y=y)
    np.savez(d / "huge.npz", X=x * 1e200, y=y)
    np.savez(d / "strings.npz", X=np.array([["a", "b"]] * 40), y=y)
    np.savez(d / "complex.npz", X=x * 1j, y=y)
    np.savez(d / "objects.npz", X=np.array([[1, 2]] * 40, dtype=object), y=y)
    np.savez(d / "empty.npz", X=np.ones((0, 2)), y=np.ones(0))
    np.savez(d / "nan_labels.npz", X=x, y=np.where(np.arange(40) == 3, np.nan, y))
    np.savez(d / "three_rows.npz", X=x[:3], y=np.array([0, 1, 0]))
    np.save(d / "single.npy", x)
    (d / "garbage.npz").write_bytes(b"not a zip archive")
    (d / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save({"state_dict": {"w": torch.ones(2)}}, d / "foreign.pt")
    (d / "no_checkpoints").mkdir(exist_ok=True)
    # a SQLite file with MLflow's tables, and one with Optuna's
    with sqlite3.connect(d / "mlflow_like.db") as db:
        db.executescript("create table experiments(x); create table runs(x);")
    with sqlite3.connect(d / "optuna_like.db") as db:
        db.executescript("create table studies(x); create table trials(x);")


def check_refused(r: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert message in " ".join(r.stderr.split()), r.stderr  # rich wraps long lines
    if code == 2:
        assert "fix:" in r.stderr
    assert SECRET not in r.stdout + r.stderr


@dataclass(frozen=True)
class Snapshot:
    runs: list[tuple[Any, ...]]
    trials: dict[str, list[tuple[Any, ...]]]
    journal: bytes
    tables: set[str]


def snapshot(cwd: Path) -> Snapshot:
    db = cwd / "outputs" / "mlflow.db"
    c = MlflowClient(f"sqlite:///{db}")
    experiments = c.search_experiments(view_type=ViewType.ALL)
    runs = c.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL)
    journal = cwd / "outputs" / "optuna" / "journal.log"
    storage = study.storage(str(journal))
    trials = {
        name: [
            (t.number, t.state.name, t.values)
            for t in optuna.load_study(study_name=name, storage=storage).trials
        ]
        for name in optuna.get_all_study_names(storage)
    }
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master")}
    return Snapshot(
        sorted(
            (
                r.info.run_id,
                r.info.status,
                r.info.end_time,
                tuple(sorted(r.data.metrics.items())),
                tuple(sorted(r.data.params.items())),
                tuple(sorted(r.data.tags.items())),
            )
            for r in runs
        ),
        trials,
        journal.read_bytes(),
        tables,
    )
