"""Swendsen–Wang kernel: component labels (exact) and moments against enumeration on small tori."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ebm_ppl.kernels import cluster
from tests.helpers.stats import assert_within_mcse

# statistical assertions in this module (one family): Ising 5, Potts q = 3 with a field 4,
# Potts q = 4 4
NUM_TESTS = 5 + 4 + 4
NUM_CHAINS, NUM_SWEEPS, BURN, BLOCK = 16, 2400, 200, 10


def _reference_labels(right, down):
    """Min-index component labels from scipy's connected components of the bond graph."""
    n, m = right.shape
    idx = np.arange(n * m).reshape(n, m)
    rows = np.concatenate([idx[right], idx[down]])
    cols = np.concatenate([np.roll(idx, -1, axis=1)[right], np.roll(idx, -1, axis=0)[down]])
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n * m, n * m))
    _, comp = connected_components(graph, directed=False)
    first = np.full(comp.max() + 1, n * m)
    np.minimum.at(first, comp, np.arange(n * m))
    return first[comp].reshape(n, m)


@pytest.mark.parametrize("shape", [(1, 6), (2, 2), (5, 7), (16, 16), (64, 64)])
def test_components_equal_scipy(shape):
    """Labels of random bond sets (below, at and above the percolation threshold), vmapped."""
    rng = np.random.default_rng(sum(shape))
    p = np.repeat([0.3, 0.5, 0.7], 4)[:, None, None]
    right = rng.random((p.shape[0], *shape)) < p
    down = rng.random((p.shape[0], *shape)) < p
    labels, iterations = jax.jit(jax.vmap(cluster.components))(right, down)
    for r, d, lab in zip(right, down, np.asarray(labels), strict=True):
        np.testing.assert_array_equal(lab, _reference_labels(r, d))
    assert int(np.max(iterations)) < shape[0] * shape[1] + 2


def _enumerate(shape, q):
    n = shape[0] * shape[1]
    return np.array(list(itertools.product(range(q), repeat=n)), np.int8).reshape(-1, *shape)


def _expect(log_w, values):
    w = np.exp(log_w - log_w.max())
    return np.tensordot(w / w.sum(), values, axes=(0, 0))


def _potts_stats(s, q, field):
    """Per configuration: E/β per site, P(σ_0 = σ_right), P(σ_0 = k) (k < q - 1) or |m|², |m|⁴."""
    n = s.shape[-1] * s.shape[-2]
    agree = (s == np.roll(s, -1, -1)).sum((-1, -2)) + (s == np.roll(s, -1, -2)).sum((-1, -2))
    if field is not None:
        h = np.take_along_axis(np.broadcast_to(field, (*s.shape, q)), s[..., None], -1)
        u = -(agree + h[..., 0].sum((-1, -2))) / n
        site0 = [(s[..., 0, 0] == k).astype(float) for k in range(q - 1)]
        return np.stack([u, (s[..., 0, 0] == s[..., 0, 1]).astype(float), *site0], -1)
    frac = np.stack([(s == k).mean((-1, -2)) for k in range(q)], -1)
    m2 = (q * (frac**2).sum(-1) - 1.0) / (q - 1.0)
    horizontal = (s == np.roll(s, -1, -1)).mean((-1, -2))
    return np.stack([-agree / n, horizontal, m2, m2**2], -1)


def _ising_stats(s):
    n = s.shape[-1] * s.shape[-2]
    ss = (s * np.roll(s, -1, -1)).sum((-1, -2)) + (s * np.roll(s, -1, -2)).sum((-1, -2))
    m = s.mean((-1, -2))
    horizontal = (s == np.roll(s, -1, -1)).mean((-1, -2))
    return np.stack([-ss / n, horizontal, m, m**2, m**4], -1)


def _chains(step, init_fn, starts, num_sweeps, key, *args):
    @jax.jit
    def run(key, starts):
        def chain(k, s0):
            def body(st, kk):
                st, info = step(kk, st, *args)
                return st, (st.s, info.is_accepted, st.energy)

            return jax.lax.scan(body, init_fn(s0), jax.random.split(k, num_sweeps))[1]

        return jax.vmap(chain)(jax.random.split(key, starts.shape[0]), starts)

    s, ok, e = run(key, starts)
    assert bool(jnp.all(ok))
    return np.asarray(s), np.asarray(e, np.float64)


def _blocked(stats):
    """Means of BLOCK consecutive sweeps after BURN: tiny lattices' statistics take few values,
    and ties make rank-normalized R-hat and bulk ESS meaningless on raw draws."""
    x = stats[:, BURN:]
    return x.reshape(x.shape[0], -1, BLOCK, *x.shape[2:]).mean(axis=2)


def test_ising_with_field_against_enumeration():
    """4×4 Ising torus in a field: ⟨u⟩, P(s_i = s_j), ⟨m⟩, ⟨m²⟩, ⟨m⁴⟩ against the 2^16 sums."""
    beta, coupling, field = 0.35, 1.0, 0.15
    s = 2.0 * _enumerate((4, 4), 2) - 1.0
    stats = _ising_stats(s)
    log_w = beta * (-stats[:, 0] * 16 * coupling + field * s.sum((1, 2)))
    exact = _expect(log_w, stats)
    starts = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(0), 0.5, (NUM_CHAINS, 4, 4)), 1, -1)
    draws, e = _chains(
        cluster.build_ising_kernel(),
        lambda s0: cluster.ising_init(s0, beta=beta, coupling=coupling, field=field),
        starts.astype(jnp.float32),
        NUM_SWEEPS,
        jax.random.PRNGKey(1),
        beta,
        coupling,
        field,
    )
    # the tracked energy is that of the configuration
    bonds = -_ising_stats(draws)[..., 0] * 16
    expected = -beta * (coupling * bonds + field * draws.sum((-1, -2)))
    np.testing.assert_allclose(e, expected, rtol=1e-5, atol=1e-4)
    assert_within_mcse(
        _blocked(_ising_stats(draws)), exact, num_tests=NUM_TESTS, name="Ising 4x4 in a field"
    )


@pytest.mark.parametrize("q", [3, 4])
def test_potts_against_enumeration(q):
    """3×3 torus: q = 3 with a per-site field (⟨E⟩/β, a bond's P(σ_i = σ_j), P(σ_0 = k)) and
    q = 4 without (⟨u⟩, P(σ_i = σ_j), ⟨|m|²⟩, ⟨|m|⁴⟩) against the q^9 sums."""
    beta = 0.9
    field = None
    if q == 3:
        field = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (3, 3, q)) * 0.4, np.float32)
    s = _enumerate((3, 3), q)
    stats = _potts_stats(s, q, field)
    exact = _expect(-beta * stats[:, 0] * 9, stats)
    starts = jax.random.randint(jax.random.PRNGKey(q), (NUM_CHAINS, 3, 3), 0, q)
    fld = None if field is None else jnp.asarray(field)
    draws, e = _chains(
        cluster.build_kernel(q),
        lambda s0: cluster.init(s0, q, beta=beta, field=fld),
        starts,
        NUM_SWEEPS,
        jax.random.PRNGKey(10 + q),
        beta,
        1.0,
        fld,
    )
    stats_draws = _potts_stats(draws, q, field)
    # the tracked energy is that of the configuration
    np.testing.assert_allclose(e, beta * 9 * stats_draws[..., 0], rtol=1e-5, atol=1e-4)
    assert_within_mcse(_blocked(stats_draws), exact, num_tests=NUM_TESTS, name=f"Potts q={q}")


def test_antiferromagnetic_traced_coupling_is_refused():
    """A traced β J < 0 cannot raise: the sweep is refused and the state kept."""
    st = cluster.init(jnp.zeros((4, 4), jnp.int32), 3, beta=1.0)
    step = jax.jit(cluster.build_kernel(3))
    new, info = step(jax.random.PRNGKey(0), st, 1.0, jnp.float32(-1.0))
    assert bool(info.is_divergent) and not bool(info.is_accepted)
    np.testing.assert_array_equal(np.asarray(new.s), np.asarray(st.s))


def test_bad_input():
    st = cluster.init(jnp.zeros((4, 4), jnp.int32), 3, beta=1.0)
    step = cluster.build_kernel(3)
    with pytest.raises(ValueError, match="ferromagnetic"):
        step(jax.random.PRNGKey(0), st, 1.0, -1.0)
    with pytest.raises(ValueError, match="ferromagnetic"):
        cluster.init(jnp.zeros((4, 4), jnp.int32), 3, beta=-0.5)
    with pytest.raises(ValueError, match="ferromagnetic"):
        cluster.build_ising_kernel()(
            jax.random.PRNGKey(0), cluster.ising_init(jnp.ones((4, 4)), beta=1.0), 1.0, -0.1
        )
    with pytest.raises(ValueError, match="field"):
        step(jax.random.PRNGKey(0), st, 1.0, 1.0, jnp.zeros(4))
    with pytest.raises(ValueError, match="field"):
        cluster.build_ising_kernel()(
            jax.random.PRNGKey(0),
            cluster.ising_init(jnp.ones((4, 4)), beta=1.0),
            1.0,
            1.0,
            jnp.zeros(3),
        )
    with pytest.raises(ValueError, match="num_states"):
        cluster.build_kernel(1)
    with pytest.raises(TypeError, match="num_states"):
        cluster.build_kernel(2.5)
    with pytest.raises(ValueError, match="two-dimensional"):
        cluster.init(jnp.zeros((4, 4, 4), jnp.int32), 3, beta=1.0)
    with pytest.raises(ValueError, match="shape"):
        cluster.components(jnp.zeros((4, 4), bool), jnp.zeros((4, 5), bool))
