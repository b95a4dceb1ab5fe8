"""ruff (lint + format) and mypy are part of the test command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def check(*args: str) -> None:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint():
    check(tool("ruff"), "check", "hpo", "tests", "benchmarks")


def test_ruff_format():
    check(tool("ruff"), "format", "--check", "hpo", "tests", "benchmarks")


def test_mypy():
    check(tool("mypy"), "hpo")
