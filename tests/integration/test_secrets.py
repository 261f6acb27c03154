"""Passwords never leave the config: a database URL's password (sweep.storage, tracking.uri)
is masked in MLflow params, tags, artifacts, run names, error messages and printed output;
`${oc.env:...}` keeps it out of the config and the command line altogether.

Here: in this process, from composed configs; e2e/test_secrets.py holds the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from omegaconf import OmegaConf

from hyperlab import tracking
from hyperlab.errors import ConfigError, HyperlabError, mask_file, mask_log_records, masked
from hyperlab.run import Job, run
from hyperlab.schema import as_dict
from hyperlab.search import study
from hyperlab.search.setup import setup_of
from hyperlab.tracking import tracker
from hyperlab.validate import validate
from support.paths import Compose
from support.secrets import SECRET, STORAGE


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (STORAGE, "postgresql://alice:***@db.example.org:5432/optuna"),
        (f"mysql+pymysql://bob:{SECRET}@h/db", "mysql+pymysql://bob:***@h/db"),
        (f"http://u:{SECRET}@127.0.0.1:5000", "http://u:***@127.0.0.1:5000"),
        (f"postgresql://u:p@{SECRET}@h/db", "postgresql://u:***@h/db"),  # an @ in the password
        (f"postgresql://h/db?user=u&password={SECRET}", "postgresql://h/db?user=u&password=***"),
        (
            f"hyperlab search=lr sweep.storage={STORAGE} lr=1",
            "hyperlab search=lr "
            "sweep.storage=postgresql://alice:***@db.example.org:5432/optuna lr=1",
        ),
        (
            f"['sweep.storage={STORAGE}']",
            "['sweep.storage=postgresql://alice:***@db.example.org:5432/optuna']",
        ),
        (  # as Hydra writes an override in its job lines and its saved hydra.yaml
            f"sweep.storage=postgresql+psycopg\\://alice\\:{SECRET}@h\\:9/db lr=1",
            "sweep.storage=postgresql+psycopg\\://alice\\:***@h\\:9/db lr=1",
        ),
        ("postgresql://alice@db/optuna", "postgresql://alice@db/optuna"),  # no password
        ("sqlite:///outputs/mlflow.db", "sqlite:///outputs/mlflow.db"),
        ("lr=0.001 model.hidden_units=[64,32]", "lr=0.001 model.hidden_units=[64,32]"),
    ],
)
def test_masked(text: str, shown: str) -> None:
    assert masked(text) == shown


def test_masked_walks_mappings_and_lists() -> None:
    config = {
        "lr": 0.001,
        "sweep": {"storage": STORAGE, "n_trials": 20},
        "tracking": {"uri": f"postgresql://t:{SECRET}@mlflow-db/mlflow", "enabled": True},
        "overrides": [f"sweep.storage={STORAGE}", "lr=0.001"],
        "pair": (STORAGE, 3),
    }
    out = masked(config)
    assert SECRET not in repr(out)
    assert out["lr"] == 0.001 and out["sweep"]["n_trials"] == 20
    assert out["tracking"]["enabled"] is True and out["overrides"][1] == "lr=0.001"
    assert isinstance(out["pair"], tuple) and out["pair"][1] == 3
    assert config["sweep"]["storage"] == STORAGE  # the input is left alone


def test_errors_mask_passwords_in_problem_and_fix() -> None:
    e = HyperlabError(f"cannot open {STORAGE}", f"check {STORAGE}")
    assert SECRET not in str(e) and SECRET not in e.problem and SECRET not in e.fix
    assert SECRET not in repr(e.args)
    assert masked(STORAGE) == "postgresql://alice:***@db.example.org:5432/optuna"


def test_storage_and_tracking_errors_never_show_the_password(tmp_path: Path) -> None:
    for url in (
        f"postgresql://alice:{SECRET}@127.0.0.1:1/optuna",  # refused
        f"postgresql+nosuchdriver://alice:{SECRET}@127.0.0.1/optuna",  # unknown driver
        f"mysql://alice:{SECRET}@127.0.0.1/optuna",  # MySQLdb is not installed here
    ):
        with pytest.raises(ConfigError) as e:
            study.storage(url)
        assert SECRET not in str(e.value), str(e.value)
        assert "alice:***@" in str(e.value)


def test_no_password_in_a_tracked_runs_params_tags_or_artifacts(
    cfg: Compose, mlflow_uri: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A run whose config, overrides and command line hold a database password: it is in
    none of the run's params, tags, name or artifact files (config.yaml, overrides.yaml,
    the learning curve, the checkpoint)."""
    overrides = [f"sweep.storage={STORAGE}", "dataset=moons", "epochs=2", "checkpoint.every=1"]
    config = cfg(
        f"sweep.storage='{STORAGE}'",
        "dataset=moons",
        "dataset.n_samples=200",
        "epochs=2",
        "checkpoint.every=1",
        tracking=True,
    )
    assert config.sweep.storage == STORAGE
    job = Job(
        choices={"dataset": "moons"},
        overrides=overrides,
        command="hyperlab " + " ".join(overrides),
        output_dir=tmp_path / "run",
        tags={"hyperlab.replay": f"hyperlab {' '.join(overrides)}"},
    )
    run(config, job)
    tracking.drain()
    c = MlflowClient(mlflow_uri)
    exp = c.get_experiment_by_name(request.node.name)
    assert exp is not None
    (r,) = c.search_runs([exp.experiment_id])
    assert r.info.status == "FINISHED"
    shown = "postgresql://alice:***@db.example.org:5432/optuna"
    assert r.data.params["sweep.storage"] == shown
    assert shown in r.data.tags["hyperlab.command"]
    for text in (*r.data.params.values(), *r.data.tags.values(), r.info.run_name):
        assert SECRET not in text
    files = download_all(c, r.info.run_id, tmp_path / "downloaded")
    names = {f.relative_to(tmp_path / "downloaded").as_posix() for f in files}
    assert {"config.yaml", "overrides.yaml", "checkpoints/epoch_0002.pt"} <= names
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f
    logged = yaml.safe_load((tmp_path / "downloaded" / "config.yaml").read_text())
    assert logged["sweep"]["storage"] == shown
    assert yaml.safe_load((tmp_path / "downloaded" / "overrides.yaml").read_text())[0] == (
        f"sweep.storage={shown}"
    )
    for f in (tmp_path / "run").rglob("*"):  # the run directory: curve and checkpoints
        assert f.is_dir() or SECRET.encode() not in f.read_bytes(), f


def download_all(c: MlflowClient, run_id: str, target: Path) -> list[Path]:
    target.mkdir(parents=True)
    c.download_artifacts(run_id, "", str(target))
    return [f for f in target.rglob("*") if f.is_file()]


def test_the_tracker_masks_whatever_its_caller_sends(
    mlflow_uri: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Parent runs (a study's, a multirun's, seed repeats', a retest's) go through the same
    Tracker: params, tags, the run name, artifacts and final tags are masked there."""
    t = tracking.Tracker(
        mlflow_uri,
        request.node.name,
        artifact_root=str(tmp_path / "artifacts"),
        run_name=f"study over {STORAGE}",
        params={"storage": STORAGE},
        tags={"hyperlab.command": f"hyperlab sweep.storage={STORAGE}"},
        artifacts={"notes.txt": f"tracking.uri: postgresql://t:{SECRET}@mlflow-db/mlflow\n"},
    )
    run_id = t.finish("FINISHED", tags={"hyperlab.best_replay": f"hyperlab x={STORAGE}"})
    tracking.drain()
    c = MlflowClient(mlflow_uri)
    r = c.get_run(run_id)
    for text in (*r.data.params.values(), *r.data.tags.values(), r.info.run_name):
        assert SECRET not in text
    assert r.data.params["storage"] == masked(STORAGE)
    for f in download_all(c, run_id, tmp_path / "down"):
        assert SECRET.encode() not in f.read_bytes()


def test_the_writer_process_is_not_given_a_password_on_its_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any local user can read a process's arguments (ps): the writer is started without a
    URL that holds a password (it opens the store with the first request instead)."""
    started: list[list[str]] = []

    class Popen:
        stdin = None  # no pipe to widen

        def __init__(self, args: list[str], **kwargs: Any) -> None:
            started.append(args)

    monkeypatch.setattr(tracker.subprocess, "Popen", Popen)
    monkeypatch.setattr(tracker.atexit, "register", lambda f: f)
    tracker._WriterProcess(f"postgresql://alice:{SECRET}@127.0.0.1:1/mlflow")
    tracker._WriterProcess("sqlite:///outputs/mlflow.db")
    assert started[0][-1] == "hyperlab.tracking.writer_process"  # no URL: opened on first use
    assert started[1][-1] == "sqlite:///outputs/mlflow.db"  # no password: opened early


def test_validate_errors_mask_the_tracking_password(cfg: Compose) -> None:
    with pytest.raises(ConfigError) as e:
        validate(cfg(f"tracking.uri='mysql://bob:{SECRET}@127.0.0.1/mlflow'", tracking=True))
    assert "MySQLdb" in e.value.problem and SECRET not in str(e.value)
    with pytest.raises(ConfigError) as e:
        validate(cfg(f"tracking.uri='nosuch://bob:{SECRET}@host/x'", tracking=True))
    assert "nosuch://" in e.value.problem and SECRET not in str(e.value)


def test_storage_from_an_environment_variable(
    cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sweep.storage='${oc.env:HYPERLAB_STORAGE}': the composed config (what --cfg job
    prints and Hydra saves in .hydra/) holds the reference, hyperlab opens the URL."""
    journal = tmp_path / "studies" / "journal.log"
    monkeypatch.setenv("HYPERLAB_STORAGE", str(journal))
    override = "sweep.storage=${oc.env:HYPERLAB_STORAGE}"
    config = cfg("search=lr", override)
    assert "${oc.env:HYPERLAB_STORAGE}" in OmegaConf.to_yaml(config)  # unresolved
    assert validate(config).sweep.storage == str(journal)  # resolved
    setup = setup_of(validate(config), ["search=lr", override])
    assert setup.url == str(journal)
    optuna.create_study(study_name=setup.name, storage=study.storage(setup.url))
    assert journal.is_file()
    assert optuna.get_all_study_names(study.storage(str(journal))) == [setup.name]
    # an unset variable is a ConfigError naming it, not a traceback
    monkeypatch.delenv("HYPERLAB_STORAGE")
    with pytest.raises(ConfigError, match="HYPERLAB_STORAGE"):
        validate(config)


def test_a_password_from_the_environment_is_masked_where_it_is_resolved(
    cfg: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPERLAB_STORAGE", STORAGE)
    config = cfg("${oc.env:HYPERLAB_STORAGE}".join(["sweep.storage=", ""]))
    plain = validate(config)
    assert plain.sweep.storage == STORAGE
    assert SECRET not in yaml.safe_dump(masked(as_dict(plain)))
    assert SECRET not in repr(tracking.params_of(as_dict(plain), {}))


def test_saved_files_are_masked_in_place(tmp_path: Path) -> None:
    f = tmp_path / "overrides.yaml"
    f.write_text(f"- sweep.storage={STORAGE}\n- lr=0.1\n")
    f.chmod(0o640)
    mask_file(f)
    assert (
        f.read_text()
        == "- sweep.storage=postgresql://alice:***@db.example.org:5432/optuna\n- lr=0.1\n"
    )
    assert f.stat().st_mode & 0o777 == 0o640 and [p.name for p in tmp_path.iterdir()] == [f.name]
    mask_file(tmp_path / "missing.yaml")  # nothing to do


def test_log_records_are_masked_whoever_prints_them(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    plain = logging.getLogRecordFactory()
    try:
        mask_log_records()
        mask_log_records()  # once is enough: the factory is not wrapped twice
        with caplog.at_level(logging.INFO):
            logging.getLogger("hydra._internal.core_plugins.basic_launcher").info(
                "\t#%d : %s", 0, f"sweep.storage={STORAGE}"
            )
        assert logging.getLogRecordFactory().__wrapped__ is plain  # type: ignore[attr-defined]
    finally:
        logging.setLogRecordFactory(plain)
    assert SECRET not in caplog.text and "alice:***@" in caplog.text
