"""Discrete machinery: conditionals, colourings, pure kernels, adapters, exact enumeration, errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from ebm_ppl.models import boltzmann, ising, rbm
from numpyro.infer import MCMC

import ebm_ppl as ebm
from ebm_ppl.energy.conditionals import check_affine, exact_logits, gradient_logits
from ebm_ppl.infer.discrete import BlockGibbs, GibbsWithGradients
from ebm_ppl.kernels import gibbs, gwg
from ebm_ppl.partition.exact import log_likelihood, log_partition_exact


# ----------------------------------------------------------------------------- conditionals
def _rbm_params(key, nv=5, nh=3, scale=1.0):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "W": scale * jax.random.normal(k1, (nv, nh)),
        "b": jax.random.normal(k2, (nv,)),
        "c": jax.random.normal(k3, (nh,)),
    }


def self_term_model():
    x = numpyro.sample("x", ebm.Bits(4))
    # x_0**2 equals x_0 on bits, but its second derivative is not zero: not affine.
    ebm.energy("E", -x[0] * x[1] + 0.7 * x[0] ** 2 - x[2] * x[3])


def test_gradient_and_exact_logits_agree_on_affine_models():
    key = jax.random.PRNGKey(0)
    params = _rbm_params(key)
    em = ebm.EnergyModel(rbm.model, 5, 3)
    assert em.affine_sites == {"v": True, "h": True}
    pos = {"v": jnp.array([1.0, 0.0, 1.0, 1.0, 0.0]), "h": jnp.array([0.0, 1.0, 1.0])}

    @jax.jit
    def logits(params, pos):
        f = lambda p: em.energy(params, p)  # noqa: E731
        return {
            site: (em.conditional_logits(params, pos, site), exact_logits(f, pos, site, (0.0, 1.0)))
            for site in ("v", "h")
        }

    out = logits(params, pos)
    for got, want in out.values():
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # closed form: logit P(h_j = 1 | v) = c_j + (vW)_j
    np.testing.assert_allclose(out["h"][0], params["c"] + pos["v"] @ params["W"], rtol=1e-5)
    # Ising: -2 dE/ds equals the closed form 2 beta (sum of neighbours)
    s = jnp.where(jax.random.bernoulli(key, 0.5, (4, 4)), 1.0, -1.0)
    em_i = ebm.EnergyModel(ising.model, (4, 4), beta=0.4)
    got = jax.jit(lambda s: em_i.conditional_logits({}, {"s": s}, "s"))(s)
    np.testing.assert_allclose(got, ising.conditional_logits(s, beta=0.4), rtol=1e-6)


def test_self_term_triggers_exact_fallback():
    em = ebm.EnergyModel(self_term_model)
    assert em.affine_sites == {"x": False}
    pos = {"x": jnp.array([1.0, 1.0, 0.0, 1.0])}
    f = lambda p: em.energy({}, p)  # noqa: E731
    got = jax.jit(lambda p: em.conditional_logits({}, p, "x"))(pos)
    # exact: logit P(x_0 = 1 | rest) = E(x_0=0) - E(x_0=1) = x_1 - 0.7
    assert float(got[0]) == pytest.approx(1.0 - 0.7, abs=1e-6)
    exact, grad = jax.jit(
        lambda p: (exact_logits(f, p, "x", (0.0, 1.0)), gradient_logits(f, p, {"x": (0.0, 1.0)}))
    )(pos)
    np.testing.assert_allclose(got, exact, atol=1e-6)
    # the gradient formula would be wrong here (it gives x_1 - 1.4)
    assert float(grad["x"][0]) == pytest.approx(1.0 - 1.4)
    assert check_affine(f, pos, {"x": (0.0, 1.0)}) == {"x": False}


# ----------------------------------------------------------------------------- colourings
def _proper_on_lattice(colours, periodic):
    for axis in range(colours.ndim):
        if periodic:
            assert np.all(colours != np.roll(colours, -1, axis=axis))
        else:
            n = colours.shape[axis]
            a = np.take(colours, np.arange(n - 1), axis=axis)
            b = np.take(colours, np.arange(1, n), axis=axis)
            assert np.all(a != b)


@pytest.mark.parametrize(
    "shape,periodic,num",
    [((4, 4), True, 2), ((3, 3), True, 3), ((5, 4), True, 3), ((3, 5), False, 2), ((7,), True, 3)],
)
def test_lattice_colouring_is_proper(shape, periodic, num):
    c = gibbs.lattice_colouring(shape, periodic)
    _proper_on_lattice(c, periodic)
    assert len(np.unique(c)) == num


def test_greedy_and_interaction_colouring():
    rng = np.random.default_rng(0)
    a = rng.random((30, 30)) < 0.1
    c = gibbs.greedy_colouring(a)
    a = (a | a.T) & ~np.eye(30, dtype=bool)
    assert not np.any(a & (c[:, None] == c[None, :]))
    # an RBM's interaction graph is bipartite: two colours, one per layer
    params = _rbm_params(jax.random.PRNGKey(1))
    f = lambda p: rbm.energy(params, p["v"], p["h"])  # noqa: E731
    cols = gibbs.interaction_colouring(
        f, {"v": jnp.ones(5), "h": jnp.ones(3)}, {"v": (0.0, 1.0), "h": (0.0, 1.0)}
    )
    assert len(set(cols["v"].tolist())) == 1 and len(set(cols["h"].tolist())) == 1
    assert cols["v"][0] != cols["h"][0]
    with pytest.raises(ValueError, match="blocks="):
        gibbs.interaction_colouring(
            lambda p: jnp.sum(p["s"]), {"s": jnp.ones(4097)}, {"s": (-1.0, 1.0)}
        )


# ----------------------------------------------------------------------------- pure kernels
def _ising_energy(pos):
    return ising.energy(pos["s"], beta=0.4)


_S0 = {"s": jnp.where(jax.random.bernoulli(jax.random.PRNGKey(3), 0.5, (6, 6)), 1.0, -1.0)}
_GIBBS = gibbs.build_kernel(colours={"s": gibbs.lattice_colouring((6, 6))}, levels={"s": (-1, 1)})
_GWG = gwg.build_kernel(levels={"s": (-1.0, 1.0)})


def test_pure_kernels_cache_the_energy():
    """After steps, the cached energy (updated incrementally by the sweep) equals a fresh one.

    (jit vs eager and vmap vs loop are checked for these kernels by tests/test_contract.py.)
    """

    @jax.jit
    def run(key):
        def body(states, k):
            g, w = states
            g, _ = _GIBBS(k, g, _ising_energy)
            w, _ = _GWG(k, w, _ising_energy)
            return (g, w), None

        init = (gibbs.init(_S0, _ising_energy), gwg.init(_S0, _ising_energy))
        return jax.lax.scan(body, init, jax.random.split(key, 20))[0]

    for final in run(jax.random.PRNGKey(0)):
        assert float(final.energy) == pytest.approx(float(_ising_energy(final.position)), abs=1e-4)
        assert set(np.unique(final.position["s"]).tolist()) <= {-1.0, 1.0}


def test_gibbs_exact_path_matches_gradient_path():
    """The exact-difference sweep draws the same states as the gradient sweep (same key)."""
    state = gibbs.init(_S0, _ising_energy)
    exact = gibbs.build_kernel(
        colours={"s": gibbs.lattice_colouring((6, 6))}, levels={"s": (-1.0, 1.0)}, affine=False
    )
    a, _ = jax.jit(_GIBBS, static_argnums=2)(jax.random.PRNGKey(5), state, _ising_energy)
    b, _ = jax.jit(exact, static_argnums=2)(jax.random.PRNGKey(5), state, _ising_energy)
    np.testing.assert_array_equal(a.position["s"], b.position["s"])
    assert float(a.energy) == pytest.approx(float(b.energy), abs=1e-4)


# ----------------------------------------------------------------------------- adapters
def test_block_gibbs_in_numpyro_gibbs_with_mala():
    """Gaussian-Bernoulli RBM: BlockGibbs on h, MALA on the continuous v."""
    from numpyro.infer import Gibbs

    from ebm_ppl.infer.langevin import MALA

    params = {**_rbm_params(jax.random.PRNGKey(2), 2, 3, 0.5), "sigma": jnp.ones(2)}
    kernel = Gibbs(
        [
            (MALA(rbm.model, params=params, step_size=0.3), ["v"]),
            (BlockGibbs(rbm.model, params=params), ["h"]),
        ]
    )
    mcmc = MCMC(kernel, num_warmup=10, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1), 2, 3, visible="gaussian")
    samples = mcmc.get_samples()
    assert samples["v"].shape == (20, 2) and samples["h"].shape == (20, 3)


def test_declared_blocks_and_user_blocks():
    k = BlockGibbs(rbm.model)
    k.init(jax.random.PRNGKey(0), 0, None, (4, 2), {})
    assert {n: int(np.unique(c)[0]) for n, c in k._colours.items()} == {"v": 0, "h": 1}
    k = BlockGibbs(rbm.model, blocks=["h", "v"], conditionals="gradient")
    k.init(jax.random.PRNGKey(0), 0, None, (4, 2), {})
    assert {n: int(c) for n, c in k._colours.items()} == {"h": 0, "v": 1}
    # undeclared blocks: found from the interaction graph (a chain: two colours)
    k = BlockGibbs(ising.couplings_model, conditionals="gradient")
    J = jnp.diag(jnp.ones(4), 1) + jnp.diag(jnp.ones(4), -1)
    k.init(jax.random.PRNGKey(0), 0, None, (J,), {})
    assert len(np.unique(k._colours["s"])) == 2


# ----------------------------------------------------------------------------- exact enumeration
def test_exact_ring_and_rbm_paths():
    n, beta = 10, 0.6
    est = log_partition_exact(ising.model, None, model_args=((n,),), model_kwargs={"beta": beta})
    want = math.log((2 * math.cosh(beta)) ** n + (2 * math.sinh(beta)) ** n)
    assert est.log_z == pytest.approx(want, abs=1e-4)
    params = _rbm_params(jax.random.PRNGKey(4), 6, 4, 0.5)
    closed = float(rbm.log_partition(params))
    em = ebm.EnergyModel(rbm.model, 6, 4)  # shared: its affinity check runs once
    summed = log_partition_exact(em, params)
    assert summed.info["summed_out"] == "v" and summed.info["num_states"] == 16
    assert summed.log_z == pytest.approx(closed, abs=1e-4)
    # log-likelihoods of every visible state sum to one
    vs = ((jnp.arange(64)[:, None] >> jnp.arange(6)) & 1).astype(jnp.float32)
    ll = log_likelihood(em, params, {"v": vs}, log_z=closed)
    assert ll.log_z.method == "given" and ll.stderr == 0.0
    assert float(jax.scipy.special.logsumexp(ll.per_example)) == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(ll.per_example, -rbm.free_energy(params, vs) - closed, atol=1e-4)
    # without log_z: computed exactly, and the same result type as ebm.log_likelihood
    full = log_likelihood(em, params, {"v": vs})
    assert type(full) is type(ebm.log_likelihood(em, params, {"v": vs}))
    assert full.log_z.method == "exact" and full.mean == pytest.approx(ll.mean, abs=1e-4)


# ----------------------------------------------------------------------------- bad input
def quartic_block_model():
    x = numpyro.sample("x", ebm.Flat((2,)), infer={"blocks": 0})
    s = numpyro.sample("s", ebm.Spins(2), infer={"blocks": 1})
    ebm.energy("E", jnp.sum(x**4) - jnp.sum(x * s))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="W must be symmetric"):
        ebm.EnergyModel(boltzmann.model, 2, W=jnp.array([[0.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="W must be symmetric"):
        ebm.EnergyModel(boltzmann.model, 2, W=jnp.eye(2))
    with pytest.raises(ValueError, match="J must be symmetric"):
        ebm.EnergyModel(ising.couplings_model, jnp.array([[0.0, 1.0], [0.5, 0.0]]))
    with pytest.raises(ValueError, match=r"init_params\['s'\] must hold only the values -1 and 1"):
        BlockGibbs(ising.model).init(
            jax.random.PRNGKey(0), 0, {"s": jnp.zeros((4, 4))}, ((4, 4),), {}
        )
    with pytest.raises(ValueError, match=r"init_params\['x'\] must hold only the values 0 and 1"):
        GibbsWithGradients(boltzmann.model).init(
            jax.random.PRNGKey(0), 0, {"x": jnp.full(3, 0.5)}, (3,), {}
        )
    with pytest.raises(ValueError, match="site 'v' is continuous"):
        GibbsWithGradients(rbm.model).init(jax.random.PRNGKey(0), 0, None, (2, 2, "gaussian"), {})
    with pytest.raises(ValueError, match="not quadratic"):
        BlockGibbs(quartic_block_model).init(jax.random.PRNGKey(0), 0, None, (), {})
    with pytest.raises(ValueError, match="blocks names site"):
        BlockGibbs(rbm.model, blocks={"v": 0, "x": 1}).init(
            jax.random.PRNGKey(0), 0, None, (2, 2), {}
        )
    with pytest.raises(ValueError, match="conditionals must be one of"):
        BlockGibbs(rbm.model, conditionals="fast")
    with pytest.raises(ValueError, match="max_states"):
        log_partition_exact(ising.model, None, model_args=((5, 5),))
    with pytest.raises(ValueError, match="visible must be one of"):
        ebm.EnergyModel(rbm.model, 2, 2, visible="poisson")
