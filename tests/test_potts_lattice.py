"""Compact-layout Potts heat bath: the generic categorical kernel, enumeration, the critical point."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ebm_ppl.models import potts

from ebm_ppl.kernels import gibbs, lattice
from tests.helpers.potts_chains import critical_energies
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


def _critical_energies(q, L, num_sweeps, num_chains, key):
    """Compact heat-bath energy per site ``(chain, sweep)`` at T_c."""
    step = lattice.build_potts_kernel(q)
    return critical_energies(step, lattice.potts_init, q, L, num_sweeps, num_chains, key)


# relative width of the finite-size band (corrections to the leading scaling term)
_BAND = {3: 0.25, 4: 0.5}
_NU = {3: 5.0 / 6.0, 4: 2.0 / 3.0}


@pytest.mark.slow
@pytest.mark.usefixtures("xla_optimized")
@pytest.mark.parametrize("q", [3, 4])
def test_critical_energy_finite_size_scaling(q):
    """Energy per site at T_c = 1/ln(1 + √q) against u_c = -(1 + 1/√q) plus its finite-size shift.

    Finite-size scaling at a continuous transition: u_L - u_c = A L^{-(d - 1/ν)} + ...,
    d - 1/ν = 2 - 1/ν = 0.8 for q = 3 (ν = 5/6) and 0.5 for q = 4 (ν = 2/3, with logarithmic
    corrections). A is fixed by a measurement at L = 16 in the same test, which predicts
    u_32 = u_c + (u_16 - u_c) (16/32)^{2 - 1/ν}; u_32 must agree within the combined Monte
    Carlo error bound (both sizes' MCSE, the L = 16 one scaled by the factor) plus a band of
    25% (q = 3) or 50% (q = 4) of the predicted shift (about 0.006 and 0.026 per site), for the
    corrections to scaling: O(L^{-ω}) terms for q = 3 and 1/ln L ones for q = 4, which at
    L = 16-32 are of that relative size (1/ln 16 ≈ 0.36). The shift itself, about 0.025
    (q = 3) and 0.047 (q = 4), must exceed the error bound plus band, so u_c alone is excluded
    and the test sees the scaling term.

    Sizes: the checkerboard heat bath's energy autocorrelation time at T_c grows as L^z,
    z ≈ 2.2; measured ≈ 2000 sweeps at L = 64, where reaching split R-hat < 1.01 from ordered
    and random starts takes ~10^6 chain-sweeps (minutes on 2 cores); at L = 32 (τ ≈ 500) it
    takes 8 chains x 60 000 sweeps. Half the chains start ordered and half random, so an
    unequilibrated run fails the R-hat check.
    """
    u_c = potts.critical_energy(q)
    x = 2.0 - 1.0 / _NU[q]
    z = z_value(1e-3, num_tests=2)
    key = jax.random.PRNGKey(100 + q)
    stats = {}
    for L, sweeps in ((16, 20_000), (32, 60_000)):
        d = _critical_energies(q, L, sweeps, 8, jax.random.fold_in(key, L))[:, 4000:]
        rhat, ess_bulk, ess_mean = mixing(d)
        assert rhat < 1.01 and ess_bulk >= 400, (
            f"L={L}, q={q}: R-hat {rhat:.4f}, ESS {ess_bulk:.0f}"
        )
        stats[L] = (d.mean(), d.std(ddof=1) / np.sqrt(ess_mean))
    (u16, se16), (u32, se32) = stats[16], stats[32]
    factor = (16.0 / 32.0) ** x
    predicted = u_c + (u16 - u_c) * factor
    band = _BAND[q] * abs(predicted - u_c)
    bound = z * math.hypot(se32, factor * se16) + band
    # the finite-size shift is resolved: u_c alone (without the scaling term) is excluded
    assert u_c - u32 > z * se32 + band, f"q={q}: u_32 {u32:.5f} too close to u_c {u_c:.5f}"
    assert abs(u32 - predicted) < bound, (
        f"q={q}: u_32 {u32:.5f} vs u_c + A 32^-{x:.2f} = {predicted:.5f} "
        f"(u_16 {u16:.5f} ± {se16:.5f}, u_32 ± {se32:.5f}, band {band:.5f})"
    )
