"""Speed options that must not change results: the compact lattice kernel's spin storage and
``sample``'s chunk lengths."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import ebm_ppl as ebm
from ebm_ppl.infer import driver
from ebm_ppl.kernels import lattice


def test_int8_and_float32_spins_give_the_same_chain_and_exact_energies():
    L, beta, field = 8, 0.44, 0.3
    step = lattice.build_kernel()
    s0 = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(4), 0.5, (L, L)), 1.0, -1.0)

    @jax.jit
    def run(key):
        def body(carry, k):
            a, b = carry
            a, _ = step(k, a, beta, 1.0, field)
            b, _ = step(k, b, beta, 1.0, field)
            return (a, b), (a.black, a.white, a.energy, b.black, b.white, b.energy)

        init = tuple(
            lattice.init(s0, beta=beta, field=field, dtype=d) for d in (jnp.int8, jnp.float32)
        )
        return jax.lax.scan(body, init, jax.random.split(key, 40))[1]

    b8, w8, e8, b32, w32, e32 = run(jax.random.PRNGKey(0))
    assert b8.dtype == jnp.int8 and b32.dtype == jnp.float32
    np.testing.assert_array_equal(b8, b32)
    np.testing.assert_array_equal(w8, w32)
    assert np.unique(np.asarray(b8[-1])).size == 2  # the chain moved
    # the tracked energy is the energy of the state; the int8 energy sums spins in int32
    exact = jax.vmap(lambda b, w: lattice.energy(b, w, beta, 1.0, field))(b8, w8)
    np.testing.assert_allclose(e8, exact, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(e32, exact, rtol=1e-5, atol=1e-4)
    # no int8 overflow: the all-up 64 x 64 torus has 8192 satisfied bonds
    assert float(lattice.init(jnp.ones((64, 64)), beta=1.0).energy) == -8192.0


def _gaussian():
    x = numpyro.sample("x", ebm.Flat((3,)))
    ebm.energy("E", 0.5 * jnp.sum(x**2))


@pytest.fixture(scope="module")
def chunked_runs():
    kw = dict(
        kernel="mala", num_chains=2, num_warmup=0, num_samples=1100, rng_key=5, return_state=True
    )
    quiet, quiet_state = ebm.sample(_gaussian, progress=False, **kw)  # chunks of 1000 + 100
    bar, bar_state = ebm.sample(_gaussian, progress=True, **kw)  # chunks of 100
    return quiet, quiet_state, bar, bar_state


def test_long_chunks_without_progress_bar_give_the_same_draws(chunked_runs):
    quiet, quiet_state, bar, bar_state = chunked_runs
    assert quiet.posterior["x"].shape == (2, 1100, 3)
    runner = next(reversed(driver._CACHE.values()))  # the runner of these two calls
    assert (1000, 1) in runner.draw and (100, 1) in runner.draw
    np.testing.assert_array_equal(quiet.posterior["x"].values, bar.posterior["x"].values)
    np.testing.assert_array_equal(
        quiet.sample_stats["potential_energy"].values, bar.sample_stats["potential_energy"].values
    )
    np.testing.assert_array_equal(quiet_state.z["x"], bar_state.z["x"])


def test_chunk_length_bounded_by_draw_memory(chunked_runs, monkeypatch):
    quiet = chunked_runs[0]
    # one draw of 2 chains x 3 float32 plus the stats is 40 bytes: 200 bytes allow 5 draws
    # per chunk, so the 1100 draws go in 100-draw chunks (the minimum), as with a bar
    monkeypatch.setattr(driver, "_CHUNK_BYTES", 200)
    runner = next(reversed(driver._CACHE.values()))
    saved = dict(runner.draw)
    runner.draw.clear()
    small = ebm.sample(
        _gaussian,
        kernel="mala",
        num_chains=2,
        num_warmup=0,
        num_samples=1100,
        rng_key=5,
        progress=False,
    )
    compiled = set(runner.draw)
    runner.draw.update(saved)
    assert compiled == {(100, 1)}
    np.testing.assert_array_equal(small.posterior["x"].values, quiet.posterior["x"].values)
