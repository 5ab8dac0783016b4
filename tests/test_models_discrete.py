"""Discrete models against exact values: Ising (enumeration, Onsager, Kaufman), RBMs, Boltzmann.

Statistical assertions share one Bonferroni family (``NUM_TESTS``) for the module.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ebm_ppl.models import boltzmann, ising, rbm
from scipy import stats

import ebm_ppl as ebm
from ebm_ppl.partition.exact import log_partition_exact
from tests import references as refs
from tests.helpers.stats import assert_within_mcse, mixing

# 6 (4x4 Gibbs) + 1 (4x4 via sample) + 5 (L = 32) + 2 (16-bit uniforms) + 2 (RBM chi-square)
# + 2 (Gaussian RBM block Gibbs) + 8 (Boltzmann GWG)
NUM_TESTS = 26
ALPHA = 1e-3

EXACT_4X4 = refs.EXACT_4X4  # exact 4x4 torus (2^16 states)


def _all_spins(n: int) -> np.ndarray:
    idx = np.arange(2**n)
    return np.where((idx[:, None] >> np.arange(n)) & 1, 1.0, -1.0)


# ----------------------------------------------------------------------------- Ising: exact
@pytest.mark.parametrize("temperature", [2.0, 3.0])
def test_ising_4x4_enumeration_x64(temperature):
    log_z_ref, u_ref, absm_ref, m2_ref = EXACT_4X4[temperature]
    with jax.enable_x64(True):
        beta = 1.0 / temperature
        est = ebm.log_partition(
            ising.model, method="exact", model_args=((4, 4),), model_kwargs={"beta": beta}
        )
        assert est.log_z == pytest.approx(log_z_ref, abs=1e-9)
        em = ebm.EnergyModel(ising.model, (4, 4), beta=beta)
        s = _all_spins(16).reshape(-1, 4, 4)
        energy = np.asarray(jax.jit(em.batch_energy)({}, {"s": jnp.asarray(s)}), dtype=np.float64)
        assert energy.dtype == np.float64
        w = np.exp(-energy - est.log_z)
        assert w.sum() == pytest.approx(1.0, abs=1e-12)
        m = s.reshape(-1, 16).mean(axis=1)
        assert (w * energy / beta).sum() / 16 == pytest.approx(u_ref, abs=1e-9)
        assert (w * np.abs(m)).sum() == pytest.approx(absm_ref, abs=1e-9)
        assert (w * m**2).sum() == pytest.approx(m2_ref, abs=1e-9)
    # float32 enumeration
    est32 = log_partition_exact(
        ising.model, None, model_args=((4, 4),), model_kwargs={"beta": beta}
    )
    assert est32.log_z == pytest.approx(log_z_ref, abs=1e-4)


def test_kaufman_and_onsager_references():
    for temperature, (log_z_ref, *_rest) in EXACT_4X4.items():
        assert ising.kaufman_log_z((4, 4), temperature) == pytest.approx(log_z_ref, abs=1e-9)
    # u of the 32 x 32 torus from Kaufman's ln Z (-d ln Z / d beta / N) equals Onsager's u(T)
    # within 1e-5 away from T_c
    for temperature in (1.5, 2.0, 3.0):
        b, h = 1.0 / temperature, 1e-5
        d = ising.kaufman_log_z((32, 32), 1.0 / (b + h)) - ising.kaufman_log_z(
            (32, 32), 1.0 / (b - h)
        )
        u32 = -d / (2 * h) / 1024
        assert u32 == pytest.approx(ising.onsager_energy(temperature), abs=1e-5)
    assert ising.onsager_magnetization(2.2) == pytest.approx(refs.ONSAGER[2.2][0], abs=1e-9)
    assert ising.onsager_energy(2.5) == pytest.approx(refs.ONSAGER[2.5][1], abs=1e-9)
    assert ising.onsager_magnetization(3.0) == 0.0


# ----------------------------------------------------------------------------- Ising: sampling
def _gibbs_chains(shape, betas, inits, *, num_draws, num_warmup, seed, uniform_bits=32):
    """Checkerboard block Gibbs chains (one per ``betas[i]``, ``inits[i]``), one compilation.

    Returns ``(energy per spin, |m|)`` arrays of shape ``(chains, draws)``, the energy in units
    of ``J`` (``E / beta / N``).
    """
    from ebm_ppl.kernels import gibbs

    n = int(np.prod(shape))
    kernel = gibbs.build_kernel(
        colours={"s": ising.blocks(shape)}, levels={"s": (-1.0, 1.0)}, uniform_bits=uniform_bits
    )

    def chain(key, beta, s0):
        energy_fn = lambda p: ising.energy(p["s"], beta=beta)  # noqa: E731
        state = gibbs.init({"s": s0}, energy_fn)

        def body(st, k):
            st, _ = kernel(k, st, energy_fn)
            return st, (st.energy / beta / n, jnp.abs(jnp.mean(st.position["s"])))

        keys = jax.random.split(key, num_warmup + num_draws)
        state, _ = jax.lax.scan(body, state, keys[:num_warmup])
        return jax.lax.scan(body, state, keys[num_warmup:])[1]

    keys = jax.random.split(jax.random.PRNGKey(seed), len(betas))
    u, absm = jax.jit(jax.vmap(chain))(keys, jnp.asarray(betas), jnp.asarray(inits))
    return np.asarray(u), np.asarray(absm)


def test_ising_4x4_block_gibbs():
    """Both temperatures (4 chains each, ordered start) in one compiled vmap."""
    temps, chains = (2.0, 3.0), 4
    betas = np.repeat([1.0 / t for t in temps], chains)
    inits = ising.ordered_state((4, 4), num_chains=len(betas))
    u, absm = _gibbs_chains((4, 4), betas, inits, num_draws=4000, num_warmup=200, seed=1)
    kw = {"alpha": ALPHA, "num_tests": NUM_TESTS}
    for i, t in enumerate(temps):
        _, u_ref, absm_ref, m2_ref = EXACT_4X4[t]
        rows = slice(i * chains, (i + 1) * chains)
        assert_within_mcse(u[rows], u_ref, name=f"u(T={t})", **kw)
        assert_within_mcse(absm[rows], absm_ref, name=f"|m|(T={t})", **kw)
        assert_within_mcse(absm[rows] ** 2, m2_ref, name=f"m^2(T={t})", **kw)


def test_ising_4x4_through_sample():
    """``ebm.sample(kernel="gibbs")`` on the model: the driver path, energy statistics exact."""
    _, u_ref, _, _ = EXACT_4X4[3.0]
    idata = ebm.sample(
        ising.model,
        kernel="gibbs",
        model_args=((4, 4),),
        model_kwargs={"beta": 1.0 / 3.0},
        num_chains=4,
        num_warmup=0,  # burn-in dropped below (saves a compilation)
        num_samples=2100,
        rng_key=jax.random.PRNGKey(5),
        progress=False,
    )
    assert set(np.unique(idata.posterior["s"].values).tolist()) == {-1.0, 1.0}
    assert {"potential_energy", "acceptance_rate", "diverging"} <= set(idata.sample_stats)
    u = idata.sample_stats["potential_energy"].values[:, 100:] * 3.0 / 16
    assert_within_mcse(u, u_ref, alpha=ALPHA, num_tests=NUM_TESTS, name="u via sample")


@pytest.mark.slow
def test_ising_32_onsager():
    """32 x 32 torus: energy per spin at T = 1.5, 2.0 (ordered start) and 3.0 (random start)
    within bounds of Onsager's u(T); |m| within bounds of M(T) below T_c. One compilation."""
    shape, chains, temps = (32, 32), 4, (1.5, 2.0, 3.0)
    betas = np.repeat([1.0 / t for t in temps], chains)
    bits = jax.random.bernoulli(jax.random.PRNGKey(7), 0.5, (chains, *shape))
    inits = jnp.concatenate(
        [ising.ordered_state(shape, num_chains=2 * chains), jnp.where(bits, 1.0, -1.0)]
    )
    u, absm = _gibbs_chains(shape, betas, inits, num_draws=3000, num_warmup=300, seed=2)
    kw = {"alpha": ALPHA, "num_tests": NUM_TESTS}
    for i, t in enumerate(temps):
        rows = slice(i * chains, (i + 1) * chains)
        assert_within_mcse(u[rows], ising.onsager_energy(t), name=f"u(T={t})", **kw)
        if t < ising.T_CRITICAL:
            assert_within_mcse(absm[rows], ising.onsager_magnetization(t), name=f"|m|(T={t})", **kw)


@pytest.mark.slow
def test_ising_32_sixteen_bit_uniforms_onsager():
    """The 16-bit-uniform sweep (the fast path of benchmarks/ising.py) is unbiased at MCSE level."""
    temperature, shape, chains = 2.0, (32, 32), 4
    u, absm = _gibbs_chains(
        shape,
        np.full(chains, 1.0 / temperature),
        ising.ordered_state(shape, num_chains=chains),
        num_draws=3000,
        num_warmup=300,
        seed=8,
        uniform_bits=16,
    )
    kw = {"alpha": ALPHA, "num_tests": NUM_TESTS}
    assert_within_mcse(u, ising.onsager_energy(temperature), name="u (16-bit)", **kw)
    assert_within_mcse(absm, ising.onsager_magnetization(temperature), name="|m| (16-bit)", **kw)


# ----------------------------------------------------------------------------- RBM
def _random_rbm(key, nv, nh, scale=1.0):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "W": scale * jax.random.normal(k1, (nv, nh)),
        "b": 0.5 * jax.random.normal(k2, (nv,)),
        "c": 0.5 * jax.random.normal(k3, (nh,)),
    }


def _chi_square_p(draws: np.ndarray, probs: np.ndarray) -> float:
    """p-value of a chi-square goodness-of-fit test on category draws ``(chain, draw)``.

    Draws are thinned per chain to about one per effective sample (the ESS of the category
    indicators), after the gate that every indicator mixes (split R-hat, bulk ESS).
    """
    num_chains, num_draws = draws.shape
    ess = []
    for k in np.argsort(-probs)[:8]:  # the most frequent categories carry the information
        rhat, ess_bulk, _ = mixing((draws == k).astype(float))
        assert rhat < 1.01 and ess_bulk >= 400, (
            f"category {k}: R-hat {rhat:.3f}, ESS {ess_bulk:.0f}"
        )
        ess.append(ess_bulk)
    thin = max(1, math.ceil(num_chains * num_draws / min(ess)))
    sample = draws[:, ::thin].ravel()
    counts = np.bincount(sample, minlength=probs.size).astype(float)
    expected = probs * sample.size
    # merge the rare categories (expected < 5) into one cell
    rare = expected < 5
    obs = np.append(counts[~rare], counts[rare].sum())
    exp = np.append(expected[~rare], expected[rare].sum())
    keep = exp > 0
    return float(stats.chisquare(obs[keep], exp[keep]).pvalue)


@pytest.fixture(scope="module")
def rbm_12x8():
    params = _random_rbm(jax.random.PRNGKey(11), 12, 8, scale=0.7)
    vs = ((np.arange(2**12)[:, None] >> np.arange(12)) & 1).astype(np.float32)
    log_p = -np.asarray(jax.jit(rbm.free_energy)(params, jnp.asarray(vs)), dtype=np.float64)
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    sub = (vs[:, :6] * (1 << np.arange(6))).sum(axis=1).astype(int)
    probs = np.bincount(sub, weights=p, minlength=64)
    return params, probs


@pytest.mark.parametrize("kernel,thinning", [("gibbs", 1), ("gwg", 10)])
def test_rbm_marginals_match_enumeration(rbm_12x8, kernel, thinning):
    params, probs = rbm_12x8
    idata = ebm.sample(
        rbm.model,
        params=params,
        kernel=kernel,
        model_args=(12, 8),
        num_chains=4,
        num_warmup=0,  # no adaptation: burn-in is dropped below (saves a compilation)
        num_samples=4300,
        thinning=thinning,
        rng_key=jax.random.PRNGKey(3),
        progress=False,
    )
    v = idata.posterior["v"].values[:, 300:, :6]
    cats = (v * (1 << np.arange(6))).sum(axis=-1).astype(int)
    p = _chi_square_p(cats, probs)
    assert p > ALPHA / NUM_TESTS, f"{kernel}: chi-square p-value {p:.2e}"


def test_rbm_joint_enumeration_equals_free_energy_formula_x64():
    with jax.enable_x64(True):
        params = jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64), _random_rbm(jax.random.PRNGKey(5), 12, 8)
        )
        joint = log_partition_exact(rbm.model, params, model_args=(12, 8), sum_out=None)
        assert joint.info["num_states"] == 2**20
        closed = float(rbm.log_partition(params))
        assert joint.log_z == pytest.approx(closed, abs=1e-9)


def test_gaussian_rbm_log_z_matches_quadrature():
    params = _random_rbm(jax.random.PRNGKey(6), 2, 3, scale=0.8)
    params["sigma"] = jnp.array([0.7, 1.3])
    est = ebm.log_partition(rbm.model, params, method="exact", model_args=(2, 3, "gaussian"))
    assert est.info["closed_form"]
    # 2-D quadrature of exp(-F(v)) in float64 (numpy)
    W, b, c, sigma = (np.asarray(params[k], np.float64) for k in ("W", "b", "c", "sigma"))
    g = np.linspace(-12.0, 12.0, 1201)
    h = g[1] - g[0]
    v = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    free = np.sum((v - b) ** 2 / (2 * sigma**2), -1) - np.sum(
        np.logaddexp(0, c + (v / sigma) @ W), -1
    )
    log_z = np.log(h * h) + np.logaddexp.reduce(-free)
    assert est.log_z == pytest.approx(log_z, abs=1e-4)


def test_gaussian_rbm_block_gibbs_mean_matches_exact():
    """Gaussian visible layer as a declared block: Gaussian conditionals inside BlockGibbs."""
    params = _random_rbm(jax.random.PRNGKey(6), 2, 3, scale=0.8)
    params["sigma"] = jnp.array([0.7, 1.3])
    idata = ebm.sample(
        rbm.model,
        params=params,
        kernel="gibbs",
        model_args=(2, 3, "gaussian"),
        num_chains=4,
        num_warmup=0,  # burn-in dropped below (saves a compilation)
        num_samples=3000,
        rng_key=jax.random.PRNGKey(12),
        progress=False,
    )
    v = idata.posterior["v"].values[:, 100:]
    # E[v] = sum_h p(h) (b + sigma * W h), p(h) ∝ exp(c.h + (b/sigma).Wh + |Wh|^2 / 2)
    W, b, c, sigma = (np.asarray(params[k], np.float64) for k in ("W", "b", "c", "sigma"))
    hs = ((np.arange(8)[:, None] >> np.arange(3)) & 1).astype(np.float64)
    act = hs @ W.T
    logw = hs @ c + act @ (b / sigma) + 0.5 * np.sum(act**2, axis=-1)
    w = np.exp(logw - logw.max())
    mean = (w / w.sum()) @ (b + sigma * act)
    assert_within_mcse(v, mean, alpha=ALPHA, num_tests=NUM_TESTS, name="E[v] (Gaussian RBM)")


# ----------------------------------------------------------------------------- Boltzmann machine
def test_boltzmann_gwg_marginals_match_enumeration():
    n = 8
    key_w, key_b = jax.random.split(jax.random.PRNGKey(9))
    params = {
        "W": boltzmann.symmetrize(0.6 * jax.random.normal(key_w, (n, n))),
        "b": 0.3 * jax.random.normal(key_b, (n,)),
    }
    xs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float32)
    energy = np.asarray(boltzmann.energy(params, jnp.asarray(xs)), np.float64)
    w = np.exp(-(energy - energy.min()))
    w /= w.sum()
    means = w @ xs
    log_z = -energy.min() + np.log(np.exp(-(energy - energy.min())).sum())
    est = ebm.log_partition(boltzmann.model, params, method="exact", model_args=(n,))
    assert est.log_z == pytest.approx(log_z, abs=1e-4)
    idata = ebm.sample(
        boltzmann.model,
        params=params,
        kernel="gwg",
        model_args=(n,),
        num_chains=4,
        num_warmup=0,  # no adaptation: burn-in is dropped below (saves a compilation)
        num_samples=4300,
        thinning=4,
        rng_key=jax.random.PRNGKey(4),
        progress=False,
    )
    x = idata.posterior["x"].values[:, 300:]
    assert_within_mcse(x, means, alpha=ALPHA, num_tests=NUM_TESTS, name="x")
