"""The installed `hyperlab` command, run as a user runs it, from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from support.command import hyperlab
from support.paths import CONF, ROOT


def test_default_job_from_another_directory(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "epochs=2", "optimizer=adam", "lr=1e-3")
    assert r.returncode == 0, r.stderr
    assert "epoch    2" in r.stdout and "final evaluation" in r.stdout
    assert "bias/variance:" in r.stdout and "objective: dev_acc" in r.stdout
    assert (tmp_path / "outputs" / "mlflow.db").is_file()
    runs = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").search_runs(["1"])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.tags["hyperlab.command"] == "hyperlab epochs=2 optimizer=adam lr=1e-3"
    assert runs[0].data.params["optimizer"] == "adam"


def test_python_m_prints_the_composed_config(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "--cfg", "job", "optimizer=momentum", "lr=0.1", module=True)
    assert r.returncode == 0, r.stderr
    assert "beta: 0.9" in r.stdout and "lr: 0.1" in r.stdout
    assert not (tmp_path / "outputs").exists()  # nothing trained, nothing recorded


@pytest.mark.parametrize("module", [False, True])
def test_help_lists_every_group_with_its_default(tmp_path: Path, module: bool) -> None:
    r = hyperlab(tmp_path, "--help", module=module)
    assert r.returncode == 0, r.stderr
    conf = CONF
    for group in (d for d in conf.iterdir() if d.is_dir() and d.name != "hydra"):
        line = next(x for x in r.stdout.splitlines() if x.strip().startswith(f"{group.name}:"))
        assert {o.rstrip("*") for o in line.split(":", 1)[1].strip().split(", ")} == {
            f.stem for f in group.glob("*.yaml")
        }
    assert "optimizer: adam*," in r.stdout and "sampler: " in r.stdout
    assert "--cfg job" in r.stdout and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["lr=-1"], 2, "lr=-1"),
        (["regularization.keep_prob=1.5"], 2, "(0, 1]"),
        (["dataset=csv", "dataset.path=/nonexistent.csv"], 2, "does not exist"),
        (["optimizer=adamm"], 1, "Available options in 'optimizer'"),
        (["epoch=3"], 1, "epoch"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    r = hyperlab(tmp_path, *args, "progress=false")
    assert r.returncode == code
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    store = tmp_path / "outputs" / "mlflow.db"
    if args[0].startswith("dataset"):  # caught when the data loads: the store is open
        c = MlflowClient(f"sqlite:///{store}")
        assert c.search_runs([e.experiment_id for e in c.search_experiments()]) == []
    else:  # caught when the config is checked: nothing was started
        assert not store.exists()


def test_diverged_run_exits_non_zero(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "optimizer=gd", "lr=1e6", "init=random_large", "epochs=5")
    assert r.returncode == 1
    assert "diverged" in r.stderr and "lower the learning rate" in r.stderr
    runs = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").search_runs(["1"])
    assert [r.info.status for r in runs] == ["FAILED"]


@pytest.mark.slow
def test_multirun_groups_jobs_under_a_parent_run_that_compares_them(tmp_path: Path) -> None:
    r = hyperlab(tmp_path, "-m", "optimizer=gd,momentum,rmsprop,adam", "epochs=2")
    assert r.returncode == 0, r.stderr
    c = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    runs = c.search_runs(["1"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    (parent,) = parents
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.params["optimizer"] for c in children) == [
        "adam",
        "gd",
        "momentum",
        "rmsprop",
    ]
    assert {r.info.status for r in runs} == {"FINISHED"}
    # The parent holds what a study's does: the swept keys, the best child and its value.
    assert parent.data.params == {"optimizer": "gd,momentum,rmsprop,adam", "epochs": "2"}
    best = max(children, key=lambda r: r.data.metrics["dev_acc"])
    assert parent.data.metrics["best_value"] == best.data.metrics["dev_acc"]
    assert parent.data.tags["hyperlab.best_run"] == best.info.run_id
    assert parent.data.tags["hyperlab.best_params"] == best.data.tags["hyperlab.params"]
    assert (
        best.data.tags["hyperlab.params"] == f"optimizer={best.data.params['optimizer']} epochs=2"
    )
    assert f"best of 4 runs: {best.data.tags['hyperlab.params']}" in r.stdout
    # ... and a comparison of every child: overrides, status, final and best metrics.
    (artifact,) = c.list_artifacts(parent.info.run_id)
    assert artifact.path == "comparison.md"
    table = Path(
        c.download_artifacts(parent.info.run_id, "comparison.md", str(tmp_path))
    ).read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `optimizer=")]
    assert len(rows) == 4 and rows[0].startswith(f"| `{best.data.tags['hyperlab.params']}`")
    head = next(line for line in table.splitlines() if line.startswith("| overrides"))
    assert "best_dev_acc" in head and "best_epoch" in head and "dev_acc" in head
    for child in children:
        row = next(r for r in rows if child.info.run_id in r)
        assert f"{child.data.metrics['best_dev_acc']:.4g}" in row


@pytest.mark.slow
def test_non_editable_install_finds_its_configs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("hyperlab-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    assert (target / "hyperlab" / "conf" / "optimizer" / "adam.yaml").is_file()
    assert not (target / "hyperlab" / "conf").is_symlink()
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run(
        [sys.executable, "-m", "hyperlab", "--cfg", "job", "optimizer=rmsprop"],
        cwd=run_dir,
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "hyperlab.optim.rmsprop" in r.stdout
    r = subprocess.run(
        [sys.executable, "-c", "import hyperlab.cli; print(hyperlab.cli.__file__)"],
        cwd=run_dir,
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.stdout.startswith(str(target))


def test_gradcheck_task(tmp_path: Path) -> None:
    r = hyperlab(
        tmp_path,
        "task=gradcheck",
        "model.hidden_units=8",
        "regularization=l2_dropout",
        "normalization=batchnorm",
        "gradcheck.max_components=300",
    )
    assert r.returncode == 0, r.stderr
    assert "dropout (keep_prob=0.8) is turned off" in r.stdout
    assert "300 of" in r.stdout and "great" in r.stdout
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # a check records nothing
    r = hyperlab(
        tmp_path,
        "task=gradcheck",
        "gradcheck.fail_at=1e-30",
        "model.hidden_units=4",
        "gradcheck.max_components=50",
    )
    assert r.returncode == 1  # any difference fails so strict a threshold
