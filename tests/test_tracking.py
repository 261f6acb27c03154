"""The MLflow writer process: what a killed trainer sent is still written, and its open
runs are closed as FAILED, never left RUNNING."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mlflow import MlflowClient

TRAINER = textwrap.dedent("""
    import os, signal, sys, time
    from hyperlab.tracking import Tracker
    uri, out = sys.argv[1], sys.argv[2]
    done = Tracker(uri, "kill", run_name="finished")
    done.on_epoch_end(0, {"dev_acc": 0.5})
    # The writer is still drawing this curve when the trainer dies below.
    done.finish("FINISHED", curve=os.path.join(out, "curve.png"), title="t")
    open_run = Tracker(uri, "kill", run_name="killed")
    open_run.on_epoch_end(0, {"dev_acc": 0.6})
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_trainers_runs_are_written_and_closed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = subprocess.run([sys.executable, "-c", TRAINER, uri, str(tmp_path)], timeout=120)
    assert r.returncode == -9
    c = MlflowClient(uri)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the orphaned writer finishes on its own
        exp = c.get_experiment_by_name("kill")
        runs = c.search_runs([exp.experiment_id]) if exp else []
        statuses = {run.info.run_name: run.info.status for run in runs}
        if statuses.get("killed") not in (None, "RUNNING"):
            break
        time.sleep(0.5)
    assert statuses == {"finished": "FINISHED", "killed": "FAILED"}
    killed = next(run for run in runs if run.info.run_name == "killed")
    assert "killed?" in killed.data.tags["hyperlab.failure_reason"]
    assert (tmp_path / "curve.png").is_file()
