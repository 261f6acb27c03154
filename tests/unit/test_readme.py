from __future__ import annotations

import re

from support.paths import ROOT


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 -m venv .*)$", readme, flags=re.M)
    assert len(commands) == 2, "the README has two set-up commands"
    run_default, run_tests = commands
    assert run_default.endswith("&& .venv/bin/hyperlab")
    assert run_tests.endswith("&& .venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert run_tests in ci
