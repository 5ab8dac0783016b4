"""Time to first result: the persistent compilation cache, parameters as dynamic arguments of
``sample``'s compiled chunks, and the compact lattice layout against the generic Gibbs kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from ebm_ppl.models import ising

import ebm_ppl as ebm
from ebm_ppl.infer import driver
from ebm_ppl.kernels import gibbs, lattice
from tests import references as refs
from tests.helpers.compiles import count_compilations
from tests.helpers.stats import assert_within_mcse

# ----------------------------------------------------------------------------- compilation cache

_CACHE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import jax, jax.numpy as jnp
    from ebm_ppl.kernels import compile_cache as cc

    tmp = sys.argv[1]
    out = {}
    os.environ["EBM_PPL_NO_CACHE"] = "1"
    out["env_opt_out"] = [cc.enable_compilation_cache(), jax.config.jax_compilation_cache_dir]
    del os.environ["EBM_PPL_NO_CACHE"]
    out["default"] = str(cc.default_cache_dir())
    out["arg_opt_out"] = [cc.enable_compilation_cache(False), cc.enable_compilation_cache()]
    path = cc.enable_compilation_cache(cache_dir=os.path.join(tmp, "own"))
    out["own"] = [path, jax.config.jax_compilation_cache_dir, cc.cache_enabled()]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    hits = []
    jax.monitoring.register_event_listener(
        lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None
    )
    f = lambda x: jnp.sin(x) @ jnp.cos(x).T
    jax.block_until_ready(jax.jit(f)(jnp.ones((8, 8))))
    out["written"] = any(n.endswith("-cache") for n in os.listdir(path))
    jax.clear_caches()
    jax.block_until_ready(jax.jit(f)(jnp.ones((8, 8))))
    out["hits"] = len(hits)
    user = os.path.join(tmp, "user")
    jax.config.update("jax_compilation_cache_dir", user)
    out["user"] = [cc.enable_compilation_cache(), cc.enable_compilation_cache(cache_dir=tmp)]
    print(json.dumps(out))
    """
)


def test_compilation_cache_dirs_opt_out_and_reuse(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "EBM_PPL_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    done = subprocess.run(
        [sys.executable, "-c", _CACHE_SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["env_opt_out"] == [None, None]  # EBM_PPL_NO_CACHE=1: nothing configured
    assert out["default"] == str(tmp_path / "xdg" / "ebm_ppl" / "jax")
    assert out["arg_opt_out"] == [None, None]  # enable_compilation_cache(False) sticks
    own = str(tmp_path / "own")
    assert out["own"] == [own, own, True]  # an explicit directory overrides the opt-out
    assert out["written"] and out["hits"] >= 1  # a fresh compile is read back from disk
    user = str(tmp_path / "user")
    assert out["user"] == [user, user]  # a user's own JAX directory is kept


# ----------------------------------------------------------------------------- dynamic parameters


def _scaled_gaussian():
    a = numpyro.param("a", 1.0)
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", 0.5 * a * jnp.sum(x**2))


def _field_bits():
    h = numpyro.param("h", jnp.zeros(3))
    x = numpyro.sample("x", ebm.Bits((3,)))
    ebm.energy("E", -jnp.sum(h * x))


def test_new_parameters_reuse_compiled_chunks():
    kw = dict(kernel="mala", num_chains=2, num_warmup=20, num_samples=30, progress=False)
    first = ebm.sample(_scaled_gaussian, params={"a": 1.0}, **kw)
    with count_compilations() as counter:
        reused = ebm.sample(_scaled_gaussian, params={"a": 4.0}, **kw)
    assert counter.traced == 0 and counter.compiled == 0, counter.events
    assert not np.array_equal(reused.posterior["x"].values, first.posterior["x"].values)
    driver._CACHE.clear()  # the same call compiled from scratch gives the same draws
    fresh = ebm.sample(_scaled_gaussian, params={"a": 4.0}, **kw)
    np.testing.assert_array_equal(reused.posterior["x"].values, fresh.posterior["x"].values)


def test_new_parameters_reuse_compiled_gibbs_sweeps():
    kw = dict(kernel="gibbs", num_chains=2, num_warmup=0, num_samples=30, progress=False)
    first = ebm.sample(_field_bits, params={"h": jnp.zeros(3)}, **kw)
    pinned = {"h": jnp.array([30.0, -30.0, 30.0])}
    with count_compilations() as counter:
        reused = ebm.sample(_field_bits, params=pinned, **kw)
    assert counter.traced == 0 and counter.compiled == 0, counter.events
    # the new fields pin the bits (P = sigmoid(30)): the draws follow the new values
    assert (reused.posterior["x"].values[:, 1:] == np.array([1, 0, 1])).all()
    assert not (first.posterior["x"].values == np.array([1, 0, 1])).all()


# ----------------------------------------------------------------------------- compact lattice


@pytest.mark.parametrize("uniform_bits", [32, 16])
def test_compact_lattice_equals_generic_gibbs_bit_for_bit(uniform_bits):
    L, beta = 8, 0.44
    energy_fn = lambda p: ising.energy(p["s"], beta=beta)  # noqa: E731
    generic = gibbs.build_kernel(
        colours={"s": ising.blocks((L, L))}, levels={"s": (-1.0, 1.0)}, uniform_bits=uniform_bits
    )
    compact = lattice.build_kernel(uniform_bits=uniform_bits)
    s0 = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(3), 0.5, (L, L)), 1.0, -1.0)

    @jax.jit
    def run(key):
        def body(carry, k):
            g, c = carry
            g, _ = generic(k, g, energy_fn)
            c, _ = compact(k, c, beta)
            return (g, c), (
                g.position["s"],
                lattice.from_compact(c.black, c.white),
                g.energy,
                c.energy,
            )

        init = (gibbs.init({"s": s0}, energy_fn), lattice.init(s0, beta=beta))
        return jax.lax.scan(body, init, jax.random.split(key, 30))[1]

    s_generic, s_compact, e_generic, e_compact = run(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(s_compact, s_generic)
    assert np.unique(np.asarray(s_compact[-1])).size == 2  # the chain moved
    # the tracked energy is the energy of the state (sums in another order: float tolerance)
    np.testing.assert_allclose(e_compact, e_generic, rtol=1e-6, atol=1e-4)
    exact = jax.vmap(lambda s: ising.energy(s, beta=beta))(s_compact)
    np.testing.assert_allclose(e_compact, exact, rtol=1e-6, atol=1e-4)


def test_compact_layout_roundtrip_and_errors():
    s = jnp.arange(36.0).reshape(6, 6)
    black, white = lattice.to_compact(s)
    assert black.shape == white.shape == (6, 3)
    assert bool((lattice.from_compact(black, white) == s).all())
    colours = np.asarray(ising.blocks((6, 6)))
    assert set(np.asarray(black).ravel()) == set(np.asarray(s)[colours == 0].ravel())
    with pytest.raises(ValueError, match="L even"):
        lattice.init(jnp.ones((5, 5)), beta=1.0)
    with pytest.raises(ValueError, match="uniform_bits"):
        lattice.build_kernel(uniform_bits=8)


def test_compact_lattice_16_bit_uniforms_exact_4x4():
    """16-bit uniforms on the compact layout against the exact 4 x 4 torus (enumeration)."""
    temperature = 3.0
    _, u_exact, absm_exact, _ = refs.EXACT_4X4[temperature]
    beta, chains, draws = 1.0 / temperature, 16, 2000
    step = lattice.build_kernel(uniform_bits=16)

    def chain(key):
        state = lattice.init(jnp.ones((4, 4)), beta=beta)

        def body(st, k):
            st, _ = step(k, st, beta)
            m = jnp.abs(jnp.sum(st.black) + jnp.sum(st.white)) / 16
            # the energy of the state itself: the tracked one drifts by float rounding per chain,
            # which breaks the ties of this discrete statistic's ranks chain by chain (R-hat)
            return st, (lattice.energy(st.black, st.white, 1.0) / 16, m)

        return jax.lax.scan(body, state, jax.random.split(key, draws + 100))[1]

    u, absm = jax.jit(jax.vmap(chain))(jax.random.split(jax.random.PRNGKey(11), chains))
    kw = {"alpha": 1e-3, "num_tests": 2}
    assert_within_mcse(np.asarray(u)[:, 100:], u_exact, name="u (compact, 16-bit)", **kw)
    assert_within_mcse(np.asarray(absm)[:, 100:], absm_exact, name="|m| (compact, 16-bit)", **kw)
