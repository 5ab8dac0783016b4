"""Declared lattices through ``ebm.sample``: the compact heat bath and Swendsen–Wang.

On the 4 x 4 Ising torus and the 4 x 4, q = 3 Potts torus (with a field), ``kernel="gibbs"``
(now the compact checkerboard heat bath) and ``kernel="swendsen_wang"`` match the exact
energy per site and the probability that neighbours agree (enumeration of the 2^16 Ising
states; a row-to-row transfer matrix over the 3^4 row states of the Potts torus), within the
gated MCSE bounds. A ``numpyro.param`` beta changed between two calls reuses the compiled
chunks and gives the new distribution; a chain through ``sample`` is the pure kernel's chain
for the same key; bad declarations are refused before anything compiles.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from ebm_ppl.models import ising, potts

import ebm_ppl as ebm
from ebm_ppl.infer import LatticeGibbs, SwendsenWang
from ebm_ppl.infer.lattice import lattice_kernel_factory
from ebm_ppl.kernels import compact, lattice
from ebm_ppl.kernels.resolve import resolve_kernel
from tests.helpers.compiles import count_compilations
from tests.helpers.stats import assert_within_mcse
from tests.references import EXACT_4X4

# Ising: gibbs at T = 3 and T = 2 (param), SW at T = 3; Potts: gibbs, SW, each also on a
# dist.Categorical site; two statistics each
NUM_TESTS = 14
L = 4
POTTS_Q, POTTS_BETA = 3, 0.8
POTTS_FIELD = (0.2, 0.0, -0.1)
NUM_CHAINS, NUM_SAMPLES, BLOCK = 8, 3000, 10
KW = dict(num_chains=NUM_CHAINS, num_warmup=100, num_samples=NUM_SAMPLES, progress=False)


# ----------------------------------------------------------------------------- exact values
def _ising_exact(beta: float) -> tuple[float, float]:
    """(<u> per spin, P(s_i = s_j) for neighbours) on the 4 x 4 torus, J = 1, h = 0."""
    s = 2.0 * np.array(list(itertools.product((0, 1), repeat=L * L)), np.float64) - 1.0
    s = s.reshape(-1, L, L)
    bonds = sum((s * np.roll(s, -1, axis=a)).sum(axis=(1, 2)) for a in (1, 2))
    log_w = beta * bonds
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean_bonds = float((w * bonds).sum())
    return -mean_bonds / (L * L), 0.5 * (1.0 + mean_bonds / (2 * L * L))


def _potts_exact(beta: float, q: int, field) -> tuple[float, float]:
    """(<E> / (β N), P(σ_i = σ_j) for neighbours) on the 4 x 4 torus by a transfer matrix.

    ``T[r, r'] = exp(β (a(r) + h(r) + v(r, r')))`` over the ``q^4`` row states: ``a`` the
    agreements within a row (periodic), ``h`` its field, ``v`` the agreements between rows.
    ``Z = Tr T^4``; an additive term ``f(r, r')`` of the exponent has the mean
    ``4 Tr(T^3 (f ∘ T)) / Z``.
    """
    rows = np.array(list(itertools.product(range(q), repeat=L)))
    h = np.asarray(field, np.float64)
    within = (rows == np.roll(rows, -1, axis=1)).sum(axis=1).astype(np.float64)
    hsum = h[rows].sum(axis=1)
    between = (rows[:, None, :] == rows[None, :, :]).sum(axis=2).astype(np.float64)
    agree = within[:, None] + between
    expo = beta * (agree + hsum[:, None])
    T = np.exp(expo - expo.max())
    T3 = np.linalg.matrix_power(T, 3)
    Z = np.trace(T3 @ T)
    mean_agree = 4.0 * np.trace(T3 @ (agree * T)) / Z
    mean_field = 4.0 * np.trace(T3 @ (hsum[:, None] * T)) / Z
    n = L * L
    return -(mean_agree + mean_field) / n, mean_agree / (2 * n)


def test_exact_values_agree_with_references():
    """The enumeration reproduces Kaufman's 4 x 4 energies; the transfer matrix the enumeration
    of a smaller case (q = 2 with a field: the 2^16 states listed)."""
    for T in (2.0, 3.0):
        np.testing.assert_allclose(_ising_exact(1.0 / T)[0], EXACT_4X4[T][1], rtol=1e-9)
    q, beta, field = 2, 0.7, np.array([0.3, -0.1])
    s = np.array(list(itertools.product(range(q), repeat=L * L))).reshape(-1, L, L)
    agree = sum((s == np.roll(s, -1, axis=a)).sum(axis=(1, 2)) for a in (1, 2))
    hsum = field[s].sum(axis=(1, 2))
    log_w = beta * (agree + hsum)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    u = -(w * (agree + hsum)).sum() / (L * L)
    p_eq = (w * agree).sum() / (2 * L * L)
    np.testing.assert_allclose(_potts_exact(beta, q, field), (u, p_eq), rtol=1e-9)


# ----------------------------------------------------------------------------- statistics
def _blocks(x: np.ndarray) -> np.ndarray:
    # means of BLOCK consecutive sweeps: on 16 units the statistics take a handful of values,
    # and ties make rank-normalized R-hat and bulk ESS meaningless on raw draws
    return x.reshape(x.shape[0], -1, BLOCK).mean(axis=2)


def _ising_stats(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bonds = sum((s * np.roll(s, -1, axis=a)).sum(axis=(2, 3)) for a in (2, 3))
    return _blocks(-bonds / (L * L)), _blocks(0.5 * (1.0 + bonds / (2 * L * L)))


def _potts_stats(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    agree = sum((s == np.roll(s, -1, axis=a)).sum(axis=(2, 3)) for a in (2, 3))
    hsum = np.asarray(POTTS_FIELD)[s].sum(axis=(2, 3))
    return _blocks(-(agree + hsum) / (L * L)), _blocks(agree / (2 * L * L))


def _check(stats, exact, label):
    for draws, truth, name in zip(stats, exact, ("<u>", "P(equal neighbours)"), strict=True):
        assert_within_mcse(draws, truth, num_tests=NUM_TESTS, name=f"{name} ({label})")


def _beta_ising(shape=(L, L)):
    """Nearest-neighbour Ising torus with beta a parameter, declared with ebm.Lattice."""
    beta = numpyro.param("beta", 0.3)
    lat = ebm.Lattice.ising(shape, beta=beta)
    s = numpyro.sample("s", ebm.Spins(shape), infer={"blocks": ising.blocks(shape), "lattice": lat})
    ebm.energy("E", lat.energy(s))


@pytest.fixture(scope="module")
def param_runs():
    """Compact heat bath at beta = 1/3, then beta = 1/2 through the same compiled chunks."""
    kw = dict(kernel="gibbs", rng_key=jax.random.PRNGKey(1), **KW)
    first, state = ebm.sample(_beta_ising, params={"beta": 1.0 / 3.0}, return_state=True, **kw)
    with count_compilations() as counter:
        second = ebm.sample(_beta_ising, params={"beta": 0.5}, **kw)
    return first, state, second, counter


def test_gibbs_runs_the_compact_heat_bath(param_runs):
    first, state, _, _ = param_runs
    assert first.posterior.attrs["kernel"] == "gibbs"
    inner = state.kernel_state.inner
    assert isinstance(inner, lattice.LatticeState)
    assert inner.black.shape == (NUM_CHAINS, L, L // 2) and inner.black.dtype == jnp.int8
    s = first.posterior["s"]
    assert s.shape == (NUM_CHAINS, NUM_SAMPLES, L, L) and s.dtype == np.float32
    assert sorted(first.sample_stats.data_vars) == [
        "acceptance_rate",
        "diverging",
        "potential_energy",
    ]
    # the tracked energy is the model's (summed from float32 changes over 3100 sweeps: a drift
    # of a few 1e-5)
    draws = s.values[:, -1]
    energy = np.asarray(jax.vmap(lambda x: ising.energy(x, beta=1.0 / 3.0))(draws))
    tracked = first.sample_stats["potential_energy"].values[:, -1]
    np.testing.assert_allclose(tracked, energy, rtol=0, atol=2e-4)


def test_gibbs_matches_enumeration(param_runs):
    first, _, _, _ = param_runs
    _check(_ising_stats(first.posterior["s"].values), _ising_exact(1.0 / 3.0), "Ising gibbs, T=3")


def test_new_parameter_reuses_chunks_and_moves_the_distribution(param_runs):
    _, _, second, counter = param_runs
    assert counter.traced == 0 and counter.compiled == 0, counter.events
    _check(_ising_stats(second.posterior["s"].values), _ising_exact(0.5), "Ising gibbs, T=2")


def test_swendsen_wang_ising_matches_enumeration():
    idata = ebm.sample(
        ising.model,
        kernel="swendsen_wang",
        model_args=((L, L),),
        model_kwargs={"beta": 1.0 / 3.0},
        rng_key=jax.random.PRNGKey(2),
        **KW,
    )
    assert idata.posterior["s"].dtype == np.float32
    _check(_ising_stats(idata.posterior["s"].values), _ising_exact(1.0 / 3.0), "Ising SW, T=3")


@pytest.mark.parametrize("kernel", ["gibbs", "swendsen_wang"])
def test_potts_matches_transfer_matrix(kernel):
    idata = ebm.sample(
        potts.model,
        kernel=kernel,
        model_args=((L, L), POTTS_Q),
        model_kwargs={"beta": POTTS_BETA, "field": jnp.asarray(POTTS_FIELD)},
        rng_key=jax.random.PRNGKey(3),
        **KW,
    )
    s = idata.posterior["s"].values
    assert s.dtype == np.int32 and s.min() >= 0 and s.max() < POTTS_Q
    exact = _potts_exact(POTTS_BETA, POTTS_Q, POTTS_FIELD)
    _check(_potts_stats(s), exact, f"Potts {kernel}")


def _potts_on_numpyro_categorical(logits=None):
    """The declared Potts lattice on NumPyro's own ``dist.Categorical`` site: a uniform base
    adds a constant to the energy, which the declaration check allows."""
    shape = (L, L)
    lat = ebm.Lattice.potts(shape, POTTS_Q, beta=POTTS_BETA, field=jnp.asarray(POTTS_FIELD))
    logits = jnp.zeros(shape + (POTTS_Q,)) if logits is None else logits
    s = numpyro.sample("s", dist.Categorical(logits=logits), infer={"lattice": lat})
    ebm.energy("E", lat.energy(s))


@pytest.mark.parametrize("kernel", ["gibbs", "swendsen_wang"])
def test_potts_on_a_numpyro_categorical_site(kernel):
    idata = ebm.sample(
        _potts_on_numpyro_categorical, kernel=kernel, rng_key=jax.random.PRNGKey(4), **KW
    )
    assert idata.posterior.attrs["kernel"] == kernel
    s = idata.posterior["s"].values
    exact = _potts_exact(POTTS_BETA, POTTS_Q, POTTS_FIELD)
    _check(_potts_stats(s), exact, f"Potts {kernel}, dist.Categorical site")
    # a base measure that is not uniform is a field the declaration does not have
    tilted = jnp.zeros((L, L, POTTS_Q)).at[..., 0].set(0.5)
    with pytest.raises(ValueError, match="the energy is not the declared lattice's"):
        ebm.sample(
            _potts_on_numpyro_categorical,
            kernel=kernel,
            model_args=(tilted,),
            num_chains=1,
            num_warmup=0,
            num_samples=2,
            progress=False,
        )


# ----------------------------------------------------------------------------- same chain
def test_sample_runs_the_pure_kernels_chain_for_the_same_key():
    """Per-chain keys split(key, C); each chain's init key split in two (the first kept by the
    state), then one split per step: the pure compact kernel driven by those keys."""
    beta, n, chains = 0.4, 12, 2
    s0 = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(7), 0.5, (chains, L, L)), 1.0, -1.0)
    key = jax.random.PRNGKey(8)
    idata = ebm.sample(
        ising.model,
        kernel="gibbs",
        model_args=((L, L),),
        model_kwargs={"beta": beta},
        init_values={"s": s0},
        num_chains=chains,
        num_warmup=0,
        num_samples=n,
        rng_key=key,
        progress=False,
    )
    step = jax.jit(lattice.build_kernel())
    for c, chain_key in enumerate(jax.random.split(key, chains)):
        k = jax.random.split(chain_key)[0]
        st = lattice.init(s0[c], beta=beta)
        for t in range(n):
            k, k_step = jax.random.split(k)
            st, _ = step(k_step, st, beta)
            np.testing.assert_array_equal(
                idata.posterior["s"].values[c, t],
                np.asarray(lattice.from_compact(st.black, st.white)),
            )


# ----------------------------------------------------------------------------- refusals
def _ising_plus_term(shape=(L, L)):
    lat = ebm.Lattice.ising(shape, beta=0.4)
    s = numpyro.sample("s", ebm.Spins(shape), infer={"lattice": lat})
    ebm.energy("E", lat.energy(s) + 0.05 * jnp.sum(s[0]))


def _chain(n=6):
    s = numpyro.sample("s", ebm.Spins(n))
    ebm.energy("E", -jnp.sum(s[1:] * s[:-1]))


def test_refusals():
    kw = dict(num_chains=1, num_warmup=0, num_samples=2, progress=False)
    for kernel in ("gibbs", "swendsen_wang"):
        with pytest.raises(ValueError, match="site 's': the energy is not the declared lattice's"):
            ebm.sample(_ising_plus_term, kernel=kernel, **kw)
    with pytest.raises(ValueError, match=r"'swendsen_wang' cannot move site 's'.*'gibbs'"):
        ebm.sample(_chain, kernel="swendsen_wang", **kw)
    with pytest.raises(ValueError, match="periodic"):
        ebm.sample(
            ising.model,
            kernel="swendsen_wang",
            model_args=((4, 4),),
            model_kwargs={"periodic": False},
            **kw,
        )
    with pytest.raises(ValueError, match="ferromagnetic"):
        ebm.sample(
            potts.model,
            kernel="swendsen_wang",
            model_args=((4, 4), 3),
            model_kwargs={"coupling": -1.0},
            **kw,
        )
    with pytest.raises(ValueError, match="cannot be tempered"):
        ebm.sample(ising.model, kernel="swendsen_wang", model_args=((4, 4),), tempering=2, **kw)
    with pytest.raises(ValueError, match="declares its"):
        LatticeGibbs(_chain).init(jax.random.PRNGKey(0), 0, None, (), {})
    with pytest.raises(ValueError, match="L even"):
        LatticeGibbs(ising.model).init(jax.random.PRNGKey(0), 0, None, ((3, 3),), {})
    # "auto" picks Gibbs on a lattice model: the compact heat bath through the one resolver
    plan = ebm.EnergyModel(potts.model, (L, L), POTTS_Q).plan
    sampler = resolve_kernel("auto", plan=plan, purpose="sample", compact=True)
    energy_fn = compact.LatticeEnergy("s", "potts", POTTS_Q, 0.5)
    state = sampler.init({"s": jnp.zeros((L, L), jnp.int32)}, energy_fn)
    assert sampler.name == "gibbs" and isinstance(state.inner, lattice.PottsState)
    with pytest.raises(ValueError, match="compact=True"):
        resolve_kernel("swendsen_wang", plan=plan)
    # an odd side: "gibbs" falls back on the registered block Gibbs kernel (same distribution)
    assert lattice_kernel_factory("gibbs", ebm.EnergyModel(ising.model, (3, 3)), {}) is None
    assert lattice_kernel_factory("gibbs", ebm.EnergyModel(ising.model, (4, 4)), {}) is not None
    assert SwendsenWang(potts.model).model is potts.model
