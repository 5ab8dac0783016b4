"""Static checks run with the suite: ruff (lint and format) and mypy."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_DIRS = ["ebm_ppl", "models", "tests", "examples", "benchmarks"]


def _run(*cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.subprocess
def test_ruff_lint_and_format():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    lint = _run(ruff, "check", *PYTHON_DIRS)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = _run(ruff, "format", "--check", *PYTHON_DIRS)
    assert fmt.returncode == 0, fmt.stdout[-3000:]


@pytest.mark.subprocess
def test_mypy():
    out = _run(sys.executable, "-m", "mypy", "ebm_ppl")
    assert out.returncode == 0, out.stdout[-3000:]
