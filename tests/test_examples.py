"""Every example runs its ``main`` with tiny flags (in the test process: the examples share
one interpreter and JAX's in-memory caches instead of paying a cold start each)."""

import pytest

from tests.helpers.examples import run_example


@pytest.fixture
def example(capsys, monkeypatch):
    def run(script, *args, cwd):
        stdout, _ = run_example(script, *args, capsys=capsys, monkeypatch=monkeypatch, cwd=cwd)
        return stdout

    return run


def test_ising_denoising(tmp_path, example):
    stdout = example(
        "ising_denoising.py",
        *("--size", "16", "--num-samples", "20", "--num-warmup", "5", "--num-chains", "2"),
        *("--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert "error" in stdout.lower()


def test_toy2d_objectives(tmp_path, example):
    stdout = example(
        "toy2d_objectives.py",
        *("--dataset", "8gaussians", "--objectives", "dsm", "nce", "--steps", "20"),
        *("--hidden", "16", "--grid-points", "41", "--num-train", "2000", "--num-test", "200"),
        *("--batch-size", "64"),
        cwd=tmp_path,
    )
    assert "dsm" in stdout.lower() and "nce" in stdout.lower()


def test_rbm_digits(tmp_path, example):
    stdout = example(
        "rbm_digits.py",
        *("--hidden", "4", "--epochs", "1", "--num-chains", "20"),
        *("--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert "log-likelihood" in stdout.lower()
    assert (tmp_path / "rbm_samples.png").stat().st_size > 1000


def test_toy2d_pcd(tmp_path, example):
    stdout = example(
        "toy2d_pcd.py",
        *("--steps", "30", "--hidden", "16", "--grid-points", "41", "--batch-size", "64"),
        *("--num-train", "1000", "--num-test", "200", "--buffer-size", "512"),
        *("--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert "KL(true || model)" in stdout
    assert (tmp_path / "toy2d_pcd.png").stat().st_size > 1000


def test_rbm_apps(tmp_path, example):
    stdout = example(
        "rbm_apps.py",
        *("--hidden", "8", "--epochs", "1", "--classes", "0", "--num-samples", "10"),
        *("--num-warmup", "2", "--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert "marginal baseline" in stdout and "AUROC" in stdout
    assert (tmp_path / "rbm_inpainting.png").stat().st_size > 1000


def test_deep_digits(tmp_path, example):
    stdout = example(
        "deep_digits.py",
        *("--hidden", "6", "4", "--steps", "20", "--dbm-steps", "10", "--ais-chains", "20"),
        *("--ais-temperatures", "20", "--bound-samples", "5", "--inpaint-samples", "5"),
        *("--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert "DBM mean-field bound" in stdout and "AIS forward" in stdout
    assert (tmp_path / "deep_digits.png").stat().st_size > 1000


def test_potts(tmp_path, example):
    stdout = example(
        "potts.py",
        *("--states", "3", "--sizes", "4", "6", "--num-temps", "3", "--chains", "2"),
        *("--warmup", "5", "--samples", "10", "--figure", str(tmp_path / "potts.png")),
        cwd=tmp_path,
    )
    assert "Binder crossing" in stdout
    assert (tmp_path / "potts.png").stat().st_size > 1000


def test_poe_toy2d(tmp_path, example):
    stdout = example(
        "poe_toy2d.py",
        *("--steps", "20", "--hidden", "16", "--num-train", "1000", "--batch-size", "64"),
        *("--num-chains", "2", "--num-warmup", "10", "--num-samples", "20", "--kernel", "mala"),
        *("--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert "product of experts" in stdout and "R-hat" in stdout
    assert (tmp_path / "poe_toy2d.png").stat().st_size > 1000


def test_conditional_digits(tmp_path, example):
    stdout = example(
        "conditional_digits.py",
        *("--steps", "10", "--sweeps", "3", "--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert "coupled outputs (CRF)" in stdout and "independent outputs" in stdout
    assert (tmp_path / "conditional_digits.png").stat().st_size > 1000
