"""The store of compiled executables: round trip, misses on damage or another key, opt-out,
eviction, the environment's fingerprint, and ``fit``'s fallback when a stored file cannot run."""

from __future__ import annotations

import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.kernels import compile_cache
from ebm_ppl.kernels.compile_cache import (
    compile_lowered,
    discard_executable,
    environment_fingerprint,
    load_executable,
    save_executable,
)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An executable store in a folder of its own (JAX's cache directory is left as it is)."""
    monkeypatch.delenv("EBM_PPL_NO_CACHE", raising=False)
    monkeypatch.setattr(compile_cache, "executable_dir", lambda: tmp_path)
    return tmp_path


@pytest.fixture
def analyses(monkeypatch):
    """One entry per analysis of a model (an ``EnergyModel`` built) by ``fit``."""
    fit_module = importlib.import_module("ebm_ppl.train.fit")
    made: list[int] = []

    class Counted(fit_module.EnergyModel):
        def __init__(self, *args, **kwargs):
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(fit_module, "EnergyModel", Counted)
    return made


def _affine(x):
    return 2.0 * x + jnp.arange(x.shape[0], dtype=x.dtype)


def _fresh(x):
    # a program of its own per test run: JAX's cache cannot already hold it
    exe, storable = compile_lowered(jax.jit(_affine).lower(x))
    return exe, storable


def test_round_trip_and_misses(store):
    x = jnp.ones(5)
    exe, storable = _fresh(x)
    if not storable:  # JAX's cache held it (an earlier run): compile one it cannot hold
        exe, storable = compile_lowered(jax.jit(lambda v: _affine(v) + 0.0).lower(x))
    assert save_executable("affine f32[5]", exe)
    loaded = load_executable("affine f32[5]")
    np.testing.assert_array_equal(loaded(x), exe(x))
    assert load_executable("affine f32[6]") is None  # another key
    (path,) = store.glob("*.exe")
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))  # one bit flipped: checksum fails
    assert load_executable("affine f32[5]") is None
    path.write_bytes(blob[: len(blob) // 2])  # cut short
    assert load_executable("affine f32[5]") is None
    path.write_bytes(blob)
    assert load_executable("affine f32[5]") is not None
    discard_executable("affine f32[5]")
    assert load_executable("affine f32[5]") is None and not list(store.glob("*.exe"))


def test_opted_out_store_reads_and_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("EBM_PPL_NO_CACHE", "1")
    assert compile_cache.executable_dir() is None
    exe = jax.jit(_affine).lower(jnp.ones(2)).compile()
    assert save_executable("opted out", exe) is False
    assert load_executable("opted out") is None


def test_least_recently_used_files_are_evicted(store, monkeypatch):
    monkeypatch.setattr(compile_cache, "MAX_EXECUTABLES", 2)
    exe = jax.jit(_affine).lower(jnp.ones(3)).compile()
    for i, key in enumerate(("a", "b", "c")):
        assert save_executable(key, exe)
        path = compile_cache._located(key)[0]
        os.utime(path, (1e9 + i, 1e9 + i))  # distinct use times, "a" the oldest
    assert len(list(store.glob("*.exe"))) == 2
    assert load_executable("a") is None
    assert load_executable("b") is not None and load_executable("c") is not None


def test_environment_fingerprint_follows_xla_flags_and_jax_settings(monkeypatch):
    base = environment_fingerprint()
    assert environment_fingerprint() == base
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    assert environment_fingerprint() != base
    monkeypatch.delenv("XLA_FLAGS")
    with jax.numpy_rank_promotion("raise"):
        assert environment_fingerprint() != base
    assert environment_fingerprint() == base


def test_fit_replaces_a_stored_executable_that_cannot_run(store):
    """A file that loads but fails in XLA's runtime is compiled afresh and stored again."""
    fit_module = importlib.import_module("ebm_ppl.train.fit")

    def broken(*args):
        raise jax.errors.JaxRuntimeError("INTERNAL: Function wrapped_iota not found")

    x = jnp.arange(4.0)
    # what the store holds under the key: another program, to be replaced or removed
    save_executable("broken", jax.jit(jnp.zeros_like).lower(x).compile())
    call = fit_module._checked_first_call(broken, "broken", lambda: jax.jit(_affine).lower(x))
    np.testing.assert_array_equal(call(x), _affine(x))
    np.testing.assert_array_equal(call(x), _affine(x))  # the fresh executable from now on
    again = load_executable("broken")  # the fresh one if it could be stored, else nothing
    assert again is None or np.array_equal(again(x), _affine(x))


def _gaussian_mean():
    import numpyro

    import ebm_ppl as ebm

    mu = numpyro.param("mu", jnp.zeros(2))
    scale = numpyro.param(
        "scale", jnp.ones(2), constraint=numpyro.distributions.constraints.positive
    )
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum(((x - mu) / scale) ** 2))


def _nll(p, b, k):
    r = (b["x"] - p["mu"]) / p["scale"]
    return jnp.mean(0.5 * jnp.sum(r**2, -1) + jnp.sum(jnp.log(p["scale"]))), {}


def test_fit_checks_new_inputs_and_trusts_recorded_ones(store, analyses):
    """Inputs a fit checked are bound again without the model's analysis; others are checked."""
    import optax

    import ebm_ppl as ebm
    from ebm_ppl.objectives import stateless

    data = np.random.default_rng(0).normal(1.0, 2.0, (64, 2)).astype(np.float32)
    init = {"mu": np.zeros(2, np.float32), "scale": np.ones(2, np.float32)}

    def run(data=data, init=init, num_steps=20):
        return ebm.fit(
            _gaussian_mean,
            data,
            objective=stateless(_nll),
            optimizer=optax.adam(0.05),
            num_steps=num_steps,
            batch_size=16,
            rng_key=0,
            init_params=init,
            log_every=10,
            progress=False,
        )

    first = run()
    assert len(analyses) == 1 and list(store.glob("*.json"))
    again = run()
    assert len(analyses) == 1, "the recorded inputs were analysed again"
    for name in ("mu", "scale"):
        np.testing.assert_array_equal(again.params[name], first.params[name])
    # recorded inputs, a program not compiled before (a last chunk of 5): the model is analysed
    # eagerly for its tracing, and the first 20 updates are the same
    longer = run(num_steps=25)
    assert len(analyses) == 2 and longer.flags["programs"]["chunk"] == "traced"
    np.testing.assert_array_equal(longer.history["loss"][:20], first.history["loss"])
    # values never seen are checked, with the model's analysis, before anything runs
    with pytest.raises(ValueError, match="outside its constraint"):
        run(init={"mu": np.zeros(2, np.float32), "scale": -np.ones(2, np.float32)})
    with pytest.raises(ValueError, match="NaN or inf"):
        run(data=np.where(np.arange(64)[:, None] == 3, np.nan, data).astype(np.float32))
    other = run(init={"mu": np.ones(2, np.float32), "scale": np.ones(2, np.float32)})
    assert len(analyses) == 5
    assert not np.array_equal(other.params["mu"], first.params["mu"])


def _bits_rbm():
    import numpyro

    import ebm_ppl as ebm

    w = numpyro.param("W", 0.1 * jnp.ones((4, 2)))
    v = numpyro.sample("v", ebm.Bits(4))
    h = numpyro.sample("h", ebm.Bits(2))
    ebm.energy("E", -v @ w @ h)


def _module_gaussian():
    import equinox as eqx
    import numpyro
    from numpyro.contrib.module import eqx_module

    import ebm_ppl as ebm

    net = eqx_module("net", eqx.nn.Linear(2, 2, use_bias=False, key=jax.random.PRNGKey(0)))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum(net(x) ** 2))


_FAMILIES = {
    # model, data, objective: a latent binary model, module parameters
    "latent binary (PCD, Gibbs)": (
        _bits_rbm,
        (np.arange(32)[:, None] >> np.arange(4) & 1).astype(np.float32),
        "pcd",
    ),
    "module parameters (DSM)": (
        _module_gaussian,
        np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32),
        "dsm",
    ),
}


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_recorded_inputs_across_model_families(store, analyses, family):
    """A second fit of the same inputs skips the model's analysis and gives the same bits."""
    import optax

    import ebm_ppl as ebm

    model, data, objective = _FAMILIES[family]

    def run():
        return ebm.fit(
            model,
            data,
            objective=objective,
            optimizer=optax.sgd(0.05),
            num_steps=4,
            batch_size=8,
            rng_key=1,
            log_every=4,
            progress=False,
        )

    first, again = run(), run()
    assert len(analyses) == 1 and again.flags["programs"] == {
        "setup": "process",
        "chunk": "process",
    }
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(a, b)
