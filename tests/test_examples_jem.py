"""The JEM digits example runs as a script in its tiny mode."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.subprocess
def test_jem_digits_tiny(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "jem_digits.py"), "--tiny"]
        + ["--out", str(tmp_path / "jem.png")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for line in ("fully supervised", "held-out class 9", "semi-supervised JEM accuracy"):
        assert line in out.stdout
    assert "JEM   |" in out.stdout and "MLP   |" in out.stdout
    assert (tmp_path / "jem.png").stat().st_size > 1000
