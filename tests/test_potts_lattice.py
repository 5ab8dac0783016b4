"""Compact-layout Potts heat bath: the generic categorical kernel, enumeration, the critical point."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ebm_ppl.models import potts

from ebm_ppl.kernels import gibbs, lattice
from tests.helpers.stats import assert_within_mcse, mixing, z_value

# one family for the statistical assertions of the enumeration tests (energy + q - 1 marginals)
NUM_TESTS = (1 + 1) + (1 + 3)


def _run(num_states, L, num_sweeps, beta, starts, key, field=None, thin=1):
    """Energies per site ``(chain, draw)`` and states ``(chain, draw, L, L)`` every ``thin``."""
    step = lattice.build_potts_kernel(num_states)

    @jax.jit
    def run(key, s0):
        def chain(k, s):
            st = lattice.potts_init(s, num_states, beta=beta, field=field)

            def inner(st, kk):
                st, _ = step(kk, st, beta, 1.0, field)
                return st, None

            def outer(st, kk):
                st, _ = jax.lax.scan(inner, st, jax.random.split(kk, thin))
                return st, (st.energy, lattice.from_compact(st.black, st.white))

            return jax.lax.scan(outer, st, jax.random.split(k, num_sweeps // thin))[1]

        return jax.vmap(chain)(jax.random.split(key, s0.shape[0]), s0)

    e, s = run(key, starts)
    return np.asarray(e, np.float64) / (-beta * L * L), np.asarray(s)


def test_equals_generic_categorical_kernel_with_same_key():
    """Same key, same uniforms, same logits: the same chain as gibbs.build_kernel."""
    L, q, beta = 8, 5, 0.9
    field = jnp.array([0.3, -0.2, 0.0, 0.5, -1.0], jnp.float32)
    energy_fn = lambda p: potts.energy(p["s"], q, beta=beta, field=field)  # noqa: E731
    generic = gibbs.build_kernel(
        colours={"s": potts.blocks((L, L))},
        num_states={"s": q},
        logits_fn=potts.lattice_logits_fn(q, beta=beta, field=field),
    )
    compact = lattice.build_potts_kernel(q)
    s0 = jax.random.randint(jax.random.PRNGKey(3), (L, L), 0, q)
    keys = jax.random.split(jax.random.PRNGKey(4), 6)

    @jax.jit
    def both(s0):
        def body(carry, k):
            g, c = carry
            g, _ = generic(k, g, energy_fn)
            c, _ = compact(k, c, beta, 1.0, field)
            out = (g.position["s"], g.energy, lattice.from_compact(c.black, c.white), c.energy)
            return (g, c), out

        init = (gibbs.init({"s": s0}, energy_fn), lattice.potts_init(s0, q, beta=beta, field=field))
        return jax.lax.scan(body, init, keys)[1]

    moved = 0
    for gs, ge, cs, ce in zip(*both(s0), strict=True):
        np.testing.assert_array_equal(np.asarray(cs), np.asarray(gs))
        np.testing.assert_allclose(float(ce), float(ge), rtol=1e-5)
        np.testing.assert_allclose(float(ce), float(energy_fn({"s": cs})), rtol=1e-5)
        moved += int((np.asarray(cs) != np.asarray(s0)).sum())
    assert moved > 0


def _enumerate(L, q, beta, field):
    """<u> (energy per site over -β... i.e. -E/(β L^2)) and P(σ_i = k) by listing q^(L^2) states."""
    n = L * L
    s = np.array(list(itertools.product(range(q), repeat=n)), np.int64).reshape(-1, L, L)
    agree = sum((s == np.roll(s, -1, axis=a)).sum(axis=(1, 2)) for a in (1, 2))
    hsum = np.asarray(field, np.float64)[s].sum(axis=(1, 2))
    log_w = beta * (agree + hsum)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    u = (w * (agree + hsum)).sum() / n
    marg = np.array([(w[:, None, None] * (s == k)).sum(axis=0).mean() for k in range(q)])
    return u, marg


@pytest.mark.parametrize(("L", "q"), [(4, 2), (2, 4)])
def test_against_enumeration(L, q):
    """Energy and state frequencies on a small torus with a field vs the exact sums."""
    beta = 0.6
    field = np.linspace(-0.4, 0.3, q).astype(np.float32)
    u, marg = _enumerate(L, q, beta, field)
    starts = jax.random.randint(jax.random.PRNGKey(L), (32, L, L), 0, q)
    e, s = _run(q, L, 2000, beta, starts, jax.random.PRNGKey(q), field=jnp.asarray(field))
    # Means of 10 consecutive sweeps: on a 16-unit lattice the energy takes a handful of values,
    # and the ties make rank-normalized R-hat and bulk ESS meaningless on raw draws.
    e = e[:, 200:].reshape(e.shape[0], -1, 10).mean(axis=2)
    freq = np.stack([(s[:, 200:] == k).mean(axis=(2, 3)) for k in range(q - 1)], axis=-1)
    freq = freq.reshape(freq.shape[0], -1, 10, q - 1).mean(axis=2)
    assert_within_mcse(e, u, num_tests=NUM_TESTS, name=f"u (L={L}, q={q})")
    assert_within_mcse(freq, marg[: q - 1], num_tests=NUM_TESTS, name=f"P(k) (L={L}, q={q})")


def test_bad_input():
    with pytest.raises(ValueError, match="num_states"):
        lattice.build_potts_kernel(1)
    with pytest.raises(ValueError, match="uniform_bits"):
        lattice.build_potts_kernel(3, uniform_bits=8)
    with pytest.raises(ValueError, match="field"):
        lattice.potts_init(jnp.zeros((4, 4), jnp.int32), 3, beta=1.0, field=jnp.zeros(4))
    with pytest.raises(ValueError, match="L even"):
        lattice.potts_init(jnp.zeros((3, 3), jnp.int32), 3, beta=1.0)
