"""bench/run.py --quick end to end: the report and its JSON hold every section."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import ROOT

pytestmark = pytest.mark.slow
SECTIONS = (
    "## Findings",
    "## 1. Sampler efficiency",
    "## 2. Grid versus random",
    "## 3. Pruning",
    "## 4. Study overhead",
    "## 5. Parallel scaling",
    "## 6. Start-up",
)
SAMPLERS = ("grid", "random", "log_uniform", "tpe", "gp", "cmaes", "qmc", "coarse_to_fine")
NUMBER = re.compile(r"\d+\.\d+")


def test_bench_run_writes_every_section(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]

    md = (tmp_path / "RESULTS.md").read_text()
    assert "python bench/run.py --quick" in md
    assert f"Machine: {os.cpu_count()} cores" in md
    for heading in SECTIONS:
        assert heading in md, heading
        body = md.split(heading, 1)[1].split("\n## ", 1)[0]
        assert NUMBER.search(body), f"no figures under {heading}"
    for goal in ("Pruning", "Study overhead", "Start-up"):
        assert re.search(rf"\*\*{goal}\*\*.*Goal .*: (met|missed)\.", md), goal

    data = json.loads((tmp_path / "results.json").read_text())
    assert data["machine"]["cores"] == os.cpu_count()
    assert {"torch", "optuna", "mlflow", "hydra-core"} <= set(data["machine"]["versions"])
    for task in ("digits", "moons"):
        samplers = data["efficiency"][task]["samplers"]
        assert set(samplers) == set(SAMPLERS)
        for s in SAMPLERS:
            bests = samplers[s]["best_after"][str(data["efficiency"]["checkpoints"][-1])]
            assert bests and all(0 <= b <= 1 for b in bests), (task, s)
    lesson = data["lesson"]["samplers"]
    assert max(lesson["grid"]["distinct_lr"]) <= 5
    assert all(0 <= b <= 1 for b in lesson["log_uniform"]["best"])
    for runs in data["pruning"]["runs"].values():
        assert all(r["epochs"] > 0 and 0 <= r["best"] <= 1 for r in runs)
    for rep in data["overhead"]["reps"]:
        assert all(isinstance(v, float) for v in rep["marginal"].values())
    for workers in ("1", "2"):
        assert data["scaling"][workers]["workers"] == int(workers)
        assert 0 <= data["scaling"][workers]["idle_fraction"] <= 1
    walls = data["startup"]["walls"]
    assert all(w > 0 for ws in walls.values() for w in ws)
    assert data["startup"]["imports"]["hyperlab epochs=1"]["total"] > 0

    # The JSON alone renders the same report (NaN figures are null there).
    again = tmp_path / "again"
    again.mkdir()
    saved = str(tmp_path / "results.json")
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--from-json", saved, "--out", str(again)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (again / "RESULTS.md").read_text() == md


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        (
            "loop_speed.py",
            ["--rounds", "1", "--command-rounds", "1"],
            ["on/off", "ratio", "augment=shift+rotate", "augmented/none", "layers/none"],
        ),
        (
            "sweep_speed.py",
            ["--trials", "4", "--epochs", "2"],
            ["ratio 2/1 workers", "ask-to-tell"],
        ),
        ("population_speed.py", ["--quick"], ["| moons | 32 | 1 |", "dev loss rel diff"]),
        (
            "population_study.py",
            ["--quick", "--rounds", "1"],
            ["trials/min, population=4 over 1, MLflow on", "equivalence", "over the floor"],
        ),
        ("pbt_vs_tpe.py", ["--quick", "--rounds", "1"], ["TPE+HB best dev_acc", "| median |"]),
        (
            "first_run.py",
            ["--rounds", "1"],
            ["A hyperlab epochs=1", "F hand-written script", "goal run <= 1.3x floor"],
        ),
    ],
)
def test_the_focused_bench_scripts_run_on_a_toy_budget(
    tmp_path: Path, script: str, args: list[str], expected: list[str]
) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for text in expected:
        assert text in r.stdout, r.stdout[-3000:]
    assert NUMBER.search(r.stdout)
