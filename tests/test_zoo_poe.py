"""models.poe: the product's energy, log Z and samples against closed forms."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from ebm_ppl.models import poe, rbm

import ebm_ppl as ebm
from tests.helpers.stats import assert_within_mcse


def _bump(center):
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum((x - center) ** 2))


def test_product_of_rbms_has_the_enumerated_log_z():
    experts = [poe.Expert(rbm.model, (4, 2)), poe.Expert(rbm.model, (4, 3))]
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    p1 = {"W": jax.random.normal(k1, (4, 2)), "b": jnp.full(4, 0.3), "c": jnp.zeros(2)}
    p2 = {"W": jax.random.normal(k2, (4, 3)), "b": jnp.full(4, -0.2), "c": jnp.ones(3)}
    params = poe.expert_params(p1, p2)
    assert poe.split_params(params, 2) == [p1, p2]
    vs = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=4)))
    want = jax.scipy.special.logsumexp(-rbm.free_energy(p1, vs) - rbm.free_energy(p2, vs))
    got = ebm.log_partition(poe.product, params, model_args=(experts,), model_kwargs={"site": "v"})
    assert got.log_z == pytest.approx(float(want), abs=1e-4)


@pytest.mark.slow
def test_product_of_gaussians_samples_the_product():
    # N(0, I) x N(2, I) ∝ N(1, I/2)
    experts = [poe.Expert(_bump, (0.0,)), poe.Expert(_bump, (2.0,))]
    idata = ebm.sample(
        poe.product,
        params={},
        kernel="nuts",
        num_chains=4,
        num_warmup=300,
        num_samples=500,
        rng_key=jax.random.PRNGKey(1),
        model_args=(experts,),
        progress=False,
    )
    x = np.asarray(idata.posterior["x"])
    assert_within_mcse(x, [1.0, 1.0], num_tests=2, name="mean")
    assert_within_mcse((x - 1.0) ** 2, [0.5, 0.5], num_tests=2, name="variance")


def test_bad_experts_are_named():
    def spins():
        ebm.energy("E", jnp.sum(numpyro.sample("x", ebm.Spins(2))))

    with pytest.raises(ValueError, match=r"experts\[1\] declares 'x' as Spins"):
        ebm.EnergyModel(poe.product, [poe.Expert(_bump, (0.0,)), spins])
    with pytest.raises(ValueError, match=r"experts\[0\] has no state site 'v'"):
        ebm.EnergyModel(poe.product, [poe.Expert(_bump, (0.0,))], site="v")
    with pytest.raises(ValueError, match="experts must be a non-empty sequence"):
        ebm.EnergyModel(poe.product, [])
