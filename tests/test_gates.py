"""Mechanical gates, run by the same command as the tests: lint, format, types, CI parity."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


def _run(*argv: str) -> None:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"


def test_ruff_lint() -> None:
    _run(_tool("ruff"), "check", "asgisup", "tests", "benchmarks", "examples")


def test_ruff_format() -> None:
    _run(_tool("ruff"), "format", "--check", "asgisup", "tests", "benchmarks", "examples")


def test_mypy_strict() -> None:
    _run(sys.executable, "-m", "mypy", "--strict", "asgisup")


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 -m venv .*pytest.*)$", readme, re.MULTILINE)
    assert len(commands) == 1, "the README must name exactly one test command"
    assert commands[0] in (ROOT / ".ci" / "run").read_text()


COVERAGE_FLOOR = 85  # only ever raised


def test_coverage_floor_is_kept() -> None:
    readme = (ROOT / "README.md").read_text()
    floor = re.search(r"coverage report --fail-under=(\d+)", readme)
    assert floor is not None and int(floor.group(1)) >= COVERAGE_FLOOR
