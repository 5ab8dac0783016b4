"""Packaging: ebm_ppl.models ships in the wheel; the CLI entry point and demo run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.subprocess
def test_models_import_from_built_wheel(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheel_dir.glob("ebm_ppl-*.whl")
    inst = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert inst.returncode == 0, inst.stderr[-2000:]
    code = (
        "import ebm_ppl, ebm_ppl.models, pathlib;"
        f"assert pathlib.Path(ebm_ppl.__file__).is_relative_to({str(target)!r}), ebm_ppl.__file__;"
        "assert (pathlib.Path(ebm_ppl.__file__).parent / 'py.typed').exists();"
        "print(ebm_ppl.models.__name__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ebm_ppl.models"


@pytest.mark.subprocess
def test_cli_demo_runs(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ebm_ppl.cli",
            "demo",
            "--out",
            str(tmp_path),
            *("--fit-steps", "50", "--hidden", "16", "--batch-size", "64"),
            *("--num-chains", "8", "--grid-points", "41"),
            *("--temperatures", "4", "--pcd-chains", "32"),
            "--num-warmup",
            "50",
            "--num-samples",
            "100",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "r_hat" in out.stdout and "E[x0^2]" in out.stdout and "KL(true || model)" in out.stdout
    assert (tmp_path / "demo.png").stat().st_size > 1000
