"""Packaging: ebm_ppl.models ships in the wheel; the CLI entry point and demo run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ebm_ppl.cli import main

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


def test_cli_demo_runs(tmp_path, capsys):
    # in the test process (the console script and ``python -m ebm_ppl.cli`` start in
    # tests/test_cli_errors.py): a subprocess would pay JAX's start-up and a cold compile
    status = main(
        [
            "demo",
            "--out",
            str(tmp_path),
            *("--fit-steps", "50", "--hidden", "16", "--batch-size", "64"),
            *("--num-chains", "8", "--grid-points", "41"),
            *("--temperatures", "4", "--pcd-chains", "32"),
            *("--num-warmup", "50", "--num-samples", "100"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr()
    assert status == 0, out.err[-3000:]
    assert "r_hat" in out.out and "E[x0^2]" in out.out and "KL(true || model)" in out.out
    assert (tmp_path / "demo.png").stat().st_size > 1000
