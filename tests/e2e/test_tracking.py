"""The MLflow writer process: what a killed trainer sent is still written, and its open
runs are closed as FAILED, never left RUNNING; a study's parent run closes the runs its
ended trials left RUNNING."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
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


@pytest.mark.slow  # a fresh SQLite store's tables take seconds to create
def test_a_parent_run_closes_the_runs_its_ended_trials_left_running(tmp_path: Path) -> None:
    """Tracker.close_stale: the RUNNING child runs of trials that ended are closed as
    FAILED with the trial's reason; a trial not named, or another parent's child, is left as is."""
    from hyperlab.tracking import PARENT_TAG, drain, start_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = start_run(uri, "stale", None, run_name="study", tags={})
    other = start_run(uri, "stale", None, run_name="other study", tags={})
    # Once the writer has created the runs, it has created the store's tables: a client
    # opened before could race it doing so.
    parent_id, other_id = parent.run_id, other.run_id
    c = MlflowClient(uri)
    exp = c.get_run(parent_id).info.experiment_id

    def child(of: str, trial: int) -> str:
        tags = {PARENT_TAG: of, "hyperlab.trial": str(trial)}
        return str(c.create_run(exp, tags=tags).info.run_id)

    stale, running, foreign = child(parent_id, 0), child(parent_id, 1), child(other_id, 0)
    parent.close_stale({0: "its worker died", 2: ""})
    parent.finish()
    other.finish()
    drain()  # the writer handles requests in order: close_stale came before the end
    assert c.get_run(stale).info.status == "FAILED"
    reason = c.get_run(stale).data.tags["hyperlab.failure_reason"]
    assert reason.startswith("its worker died; its trial ended"), reason
    assert c.get_run(running).info.status == "RUNNING"
    assert c.get_run(foreign).info.status == "RUNNING"
    assert c.get_run(parent_id).info.status == "FINISHED"
