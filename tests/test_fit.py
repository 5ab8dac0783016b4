"""ebm_ppl.fit: convergence, history, chunks, resume bit for bit, refusal, NaN guard, bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest

import ebm_ppl as ebm
from ebm_ppl.objectives import stateless
from ebm_ppl.train import History, fingerprint, latest_checkpoint, load_checkpoint, save_checkpoint
from tests import _fit_resume

ROOT = Path(__file__).resolve().parents[1]


def gaussian_mean():
    mu = numpyro.param("mu", jnp.zeros(2))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))


def _mean_nll(params, batch, rng_key):
    # Unit-variance Gaussian: the NLL up to a constant, a stateless objective.
    del rng_key
    value = jnp.mean(0.5 * jnp.sum((batch["x"] - params["mu"]) ** 2, axis=-1))
    return value, {"mu0": params["mu"][0]}


MEAN_NLL = stateless(_mean_nll)
DATA = (np.random.default_rng(1).normal(size=(40, 2)) + np.array([2.0, -1.0])).astype(np.float32)


def test_stateless_objective_converges_to_mle_and_records_history():
    res = ebm.fit(
        gaussian_mean,
        DATA,
        objective=MEAN_NLL,
        optimizer=optax.sgd(0.2),
        num_steps=130,
        batch_size=40,
        rng_key=0,
        log_every=50,
        progress=False,
    )
    # Full-batch gradient descent on a quadratic: converges to the sample mean.
    np.testing.assert_allclose(res.params["mu"], DATA.mean(0), atol=1e-5)
    # where the setup and the chunk came from: this process, the executable store, or traced
    programs = res.flags.pop("programs")
    assert set(programs) == {"setup", "chunk"}, programs
    assert set(programs.values()) <= {"traced", "process", "stored"}, programs
    assert res.flags == {
        "nonfinite": False,
        "nonfinite_step": None,
        "stopped_by_callback": False,
        "resumed_from": None,
        "step": 130,
        "model_fingerprint": ebm.train.fingerprint((gaussian_mean, (), {})),
    }
    h = res.history
    assert isinstance(h, History) and len(h) == 130
    np.testing.assert_array_equal(h["step"], np.arange(130))
    assert set(h) == {"step", "loss", "mu0"}
    assert h["loss"][0] > h["loss"][-1]
    df = h.to_dataframe()
    assert list(df.columns) == ["loss", "mu0"] and df.index[-1] == 129


def _batch_history():
    """Per update: the sum of the batch's example ids and an order-sensitive code of them."""

    def batch_ids(params, batch, rng_key):
        del rng_key
        ids = batch["x"][:, 0]
        code = jnp.sum(ids * 12.0 ** jnp.arange(ids.shape[0]))  # exact in float32
        return jnp.sum(params["mu"]) * 0.0, {"sum": jnp.sum(ids), "code": code}

    ids = np.arange(12, dtype=np.float32)
    res = ebm.fit(
        gaussian_mean,
        np.stack([ids, np.zeros(12, np.float32)], axis=1),
        objective=stateless(batch_ids),
        optimizer=optax.sgd(0.1),
        num_steps=12,
        batch_size=4,
        rng_key=1,
        log_every=5,  # chunks that straddle epochs
        progress=False,
    )
    return res.history


def test_batches_are_epoch_shuffles():
    # Each epoch covers every example exactly once, and is reshuffled.
    history = _batch_history()
    sums = history["sum"].reshape(4, 3).sum(axis=1)  # 4 epochs of 3 batches
    np.testing.assert_array_equal(sums, np.full(4, np.arange(12).sum()))
    assert len(set(history["sum"].tolist())) > 3  # not the same split each epoch


def test_shuffles_drawn_up_front_or_per_epoch_give_the_same_batches(monkeypatch):
    # Large data sets draw each epoch's shuffle inside the scan instead of up front.
    up_front = _batch_history()["code"]
    monkeypatch.setattr(sys.modules["ebm_ppl.train.fit"], "_MAX_PRESHUFFLED", 0)
    np.testing.assert_array_equal(_batch_history()["code"], up_front)


@pytest.fixture(scope="module")
def half_run(tmp_path_factory):
    """A checkpoint after 100 of 200 updates (written by this process)."""
    ckpt = tmp_path_factory.mktemp("resume") / "ckpt"
    first = _fit_resume.run(100, ckpt)
    assert first.flags["step"] == 100
    return ckpt


def test_resume_in_new_process_is_bit_identical(half_run, tmp_path):
    ckpt = half_run
    meta = latest_checkpoint(ckpt).metadata
    assert meta["step"] == 100
    assert set(meta["fingerprints"]) >= {"model", "objective", "optimizer", "data"}
    out = tmp_path / "resumed.npz"
    resume_dir = tmp_path / "ckpt"
    shutil.copytree(ckpt, resume_dir)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The second half runs in a fresh Python process while this one runs 200 updates straight.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests._fit_resume import main; main()",
            str(resume_dir),
            "200",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        straight = _fit_resume.flatten(_fit_resume.run(200))
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    with np.load(out) as resumed:
        assert int(resumed["resumed_from"]) == 100
        for name, value in straight.items():
            np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    # The persistent chains' diagnostics were recorded between chunks.
    events = latest_checkpoint(resume_dir).metadata["events"]
    assert events and {"chain_energy_rhat", "chain_energy_ess"} <= set(events[-1])


def test_mismatched_checkpoint_is_refused(half_run):
    with pytest.raises(ValueError, match=r"checkpoint_dir .* different optimizer"):
        _fit_resume.run(200, half_run, lr=0.01)
    shifted = _fit_resume.data() + 1.0
    with pytest.raises(ValueError, match=r"checkpoint_dir .* different data"):
        _fit_resume.run(200, half_run, data_array=shifted)
    # The right configuration is accepted; a run already at num_steps returns at once.
    res = _fit_resume.run(100, half_run)
    assert res.flags["resumed_from"] == 100 and len(res.history) == 100


def test_nan_guard_keeps_last_finite_parameters():
    def overflowing(params, batch, rng_key):
        # exp(a) overflows float32 within a few ascent steps of a -> the loss becomes -inf.
        del batch, rng_key
        value = -jnp.exp(params["mu"][0])
        return value, {"a": params["mu"][0]}

    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = ebm.fit(
            gaussian_mean,
            DATA,
            objective=stateless(overflowing),
            optimizer=optax.sgd(1.0),
            num_steps=100,
            batch_size=10,
            rng_key=0,
            log_every=40,
            progress=False,
        )
    assert res.flags["nonfinite"] is True
    bad = res.flags["nonfinite_step"]
    assert 0 < bad < 40 and res.flags["step"] == bad
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in res.params.values())
    assert len(res.history) == bad and np.all(np.isfinite(res.history["loss"]))
    # The kept parameters are the ones the last finite update produced.
    a = np.float32(0.0)
    for _ in range(bad):
        a = np.float32(a + np.exp(a))
    np.testing.assert_allclose(res.params["mu"][0], a, rtol=1e-4)


def test_callback_stops_and_checkpoints(tmp_path):
    seen = []

    def cb(step, params, obj_state, metrics):
        seen.append(step)
        return step >= 20

    res = ebm.fit(
        gaussian_mean,
        DATA,
        objective=MEAN_NLL,
        optimizer=optax.sgd(0.1),
        num_steps=100,
        batch_size=10,
        rng_key=0,
        log_every=10,
        progress=False,
        callbacks=[cb],
        checkpoint_dir=tmp_path,
    )
    assert seen == [10, 20] and res.flags["stopped_by_callback"] and res.flags["step"] == 20
    trees, meta = load_checkpoint(tmp_path, {"params": res.params})
    assert meta["step"] == 20
    np.testing.assert_array_equal(trees["params"]["mu"], res.params["mu"])


def two_sites():
    a = numpyro.param("a", 1.0)
    x = numpyro.sample("x", ebm.Flat(3))
    y = numpyro.sample("y", ebm.Flat(3))
    ebm.energy("E", a * jnp.sum((x - y) ** 2))


BAD_INPUTS = [
    ("nan", dict(data=np.full((10, 2), np.nan, np.float32)), ValueError, "NaN or inf"),
    ("shape", dict(data=np.zeros((10, 3), np.float32)), ValueError, "trailing shape"),
    ("batch", dict(batch_size=11), ValueError, "larger than the data"),
    ("objective", dict(objective="mle"), ValueError, "objective must be one of"),
    ("site", dict(data_site="z"), ValueError, "data_site must be one of"),
    ("steps", dict(num_steps=0), ValueError, "num_steps must be >= 1"),
    ("optimizer", dict(optimizer="adam"), TypeError, "optax.GradientTransformation"),
    ("key", dict(rng_key="seed"), TypeError, "rng_key"),
]


@pytest.mark.parametrize("case, change, exc, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_fails_before_compilation(monkeypatch, case, change, exc, message):
    def no_jit(*args, **kwargs):
        raise AssertionError("compiled before validating the input")

    monkeypatch.setattr(jax, "jit", no_jit)
    kwargs = dict(
        data=DATA[:10],
        objective=MEAN_NLL,
        optimizer=optax.sgd(0.1),
        num_steps=10,
        batch_size=5,
        rng_key=0,
        progress=False,
    )
    kwargs.update(change)
    with pytest.raises(exc, match=message):
        ebm.fit(gaussian_mean, kwargs.pop("data"), **kwargs)


def test_ambiguous_data_site_needs_data_site():
    with pytest.raises(ValueError, match=r"could bind to sites \['x', 'y'\].*data_site="):
        ebm.fit(
            two_sites,
            np.zeros((8, 3), np.float32),
            objective="pcd",
            optimizer=optax.sgd(0.1),
            num_steps=1,
            batch_size=4,
            rng_key=0,
        )


def test_fingerprints_and_checkpoint_roundtrip(tmp_path):
    assert fingerprint(optax.adam(1e-3)) == fingerprint(optax.adam(1e-3))
    assert fingerprint(optax.adam(1e-3)) != fingerprint(optax.sgd(1e-3))
    assert fingerprint(gaussian_mean) != fingerprint(two_sites)
    key = jax.random.key(4)
    tree = {"w": jnp.arange(3.0), "k": key, "n": (jnp.int32(2),)}
    save_checkpoint(tmp_path, {"t": tree}, {"step": 7})
    assert not list(tmp_path.glob("*.tmp*"))
    loaded, meta = load_checkpoint(tmp_path, {"t": tree})
    assert meta["step"] == 7
    np.testing.assert_array_equal(jax.random.key_data(loaded["t"]["k"]), jax.random.key_data(key))
    np.testing.assert_array_equal(loaded["t"]["w"], tree["w"])
    # One file, named by its step, whose header is plain JSON (nothing pickled).
    (path,) = tmp_path.iterdir()
    assert path.name == "ckpt-00000007.ebmckpt" and b'"kind":"checkpoint"' in path.read_bytes()
    with pytest.raises(ValueError, match="checkpoint .*ckpt-00000007.ebmckpt.* structure"):
        load_checkpoint(tmp_path, {"t": {"w": jnp.arange(3.0)}})


def test_cli_fit_and_resume(tmp_path, capsys):
    from ebm_ppl.cli import main

    data = tmp_path / "data.npy"
    np.save(data, _fit_resume.data())
    out = tmp_path / "run"
    common = ["--no-progress"]
    argv = ["fit", "tests._fit_resume:gauss", "--data", str(data), "--objective", "pcd"]
    argv += ["--kernel", "mala", "--step-size", "0.2", "--num-chains", "16", "--steps", "20"]
    argv += ["--batch-size", "16", "--log-every", "10", "--out", str(out), *common]
    assert main(argv) == 0
    assert {"history.json", "params.ebmparams", "command.json"} <= {p.name for p in out.iterdir()}
    assert main(["fit", "--resume", str(out), "--steps", "30", *common]) == 0
    text = capsys.readouterr().out
    assert "importing the model 'tests._fit_resume:gauss'" in text
    assert "30 updates (resumed from 20)" in text
    history = json.loads((out / "history.json").read_text())
    assert history["metrics"]["step"] == list(range(30))
    # the honoured flag is saved: a second resume without --steps keeps 30
    assert json.loads((out / "command.json").read_text())["steps"] == 30
    # the trained parameters read back through the model's template
    from ebm_ppl.train.checkpoint import load_params

    params = load_params(out / "params.ebmparams")
    assert sorted(params) == ["log_prec", "mu"]
    bad = ["fit", "tests._fit_resume:gauss", "--data", str(data), "--objective", "mle"]
    assert main([*bad, "--steps", "5"]) == 2
    assert "--objective must be one of" in capsys.readouterr().err
