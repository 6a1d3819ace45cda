"""ruff is part of the test command: ./test.sh installs it (the dev extra) and runs `ruff check .` before pytest."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from billing_core.database import PROJECT_ROOT


def test_the_test_command_runs_ruff_before_pytest():
    script = (PROJECT_ROOT / "test.sh").read_text()
    assert ".venv/bin/ruff check ." in script
    assert script.index("ruff check .") < script.index("-m pytest")
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert any(dependency.startswith("ruff") for dependency in project["project"]["optional-dependencies"]["dev"])
    assert project["tool"]["ruff"]["lint"]["select"]  # named rules: the same findings whatever ruff's defaults


def test_the_tree_is_clean_for_ruff():
    ruff = Path(sys.executable).parent / "ruff"
    ruff = str(ruff) if ruff.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed here (./test.sh installs it with the dev extra and runs it itself)")
    result = subprocess.run([ruff, "check", "."], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
