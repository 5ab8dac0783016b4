"""DBM pre-training with Salakhutdinov & Hinton's doubled-layer RBMs (ebm_ppl.models.dbm)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ebm_ppl.models import dbm, rbm

import ebm_ppl as ebm


def _random_params(key, nv, nh):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "W": jax.random.normal(k1, (nv, nh)),
        "b": jax.random.normal(k2, (nv,)),
        "c": jax.random.normal(k3, (nh,)),
    }


def _bits(key, n):
    return jax.random.bernoulli(key, 0.5, (n,)).astype(jnp.float32)


def test_doubled_visible_module_conditionals():
    """Bottom module: p(h | v) = σ(c + 2Wᵀv) with both copies at v; p(v | h) = σ(b + Wh)."""
    p = _random_params(jax.random.PRNGKey(0), 5, 3)
    v, h = _bits(jax.random.PRNGKey(1), 5), _bits(jax.random.PRNGKey(2), 3)
    em = ebm.EnergyModel(dbm.doubled_rbm, 5, 3, "visible")
    state = {"v": v, "v2": v, "h": h}
    np.testing.assert_allclose(
        em.conditional_logits(p, state, "h"), p["c"] + 2.0 * v @ p["W"], rtol=1e-5, atol=1e-5
    )
    for site in ("v", "v2"):
        np.testing.assert_allclose(
            em.conditional_logits(p, state, site), p["b"] + p["W"] @ h, rtol=1e-5, atol=1e-5
        )


def test_doubled_hidden_module_conditionals():
    """Top module: p(v | h) = σ(b + 2Wh) with both copies at h; p(h | v) = σ(c + Wᵀv)."""
    p = _random_params(jax.random.PRNGKey(3), 4, 3)
    v, h = _bits(jax.random.PRNGKey(4), 4), _bits(jax.random.PRNGKey(5), 3)
    em = ebm.EnergyModel(dbm.doubled_rbm, 4, 3, "hidden")
    state = {"v": v, "h": h, "h2": h}
    np.testing.assert_allclose(
        em.conditional_logits(p, state, "v"), p["b"] + 2.0 * p["W"] @ h, rtol=1e-5, atol=1e-5
    )
    for site in ("h", "h2"):
        np.testing.assert_allclose(
            em.conditional_logits(p, state, site), p["c"] + v @ p["W"], rtol=1e-5, atol=1e-5
        )


def test_composed_dbm_halves_the_input_to_h1():
    """In the DBM, h1 hears W1ᵀv + W2 h2: half of each module's doubled input."""
    l0 = _random_params(jax.random.PRNGKey(6), 5, 3)
    l1 = _random_params(jax.random.PRNGKey(7), 3, 2)
    p = dbm.from_stack([l0, l1])
    v, h2 = _bits(jax.random.PRNGKey(8), 5), _bits(jax.random.PRNGKey(9), 2)
    em = ebm.EnergyModel(dbm.model, 5, 3, 2)
    logits = em.conditional_logits(p, {"v": v, "h1": jnp.zeros(3), "h2": h2}, "h1")
    bottom = 2.0 * v @ l0["W"]  # the input to h1 in the bottom module
    top = 2.0 * l1["W"] @ h2  # and in the top module
    np.testing.assert_allclose(logits, p["c1"] + 0.5 * bottom + 0.5 * top, rtol=1e-5, atol=1e-5)


def test_pretrain_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        dbm.pretrain(jax.random.PRNGKey(0), np.zeros((4, 3)), 2, 2, method="doubling")
    with pytest.raises(ValueError, match="doubled must be"):
        ebm.EnergyModel(dbm.doubled_rbm, 3, 2, "both")
    with pytest.raises(ValueError, match="num_steps"):
        dbm.fit_doubled(jax.random.PRNGKey(0), np.zeros((4, 3)), 2, 2, num_steps=(5, 5, 5))
    with pytest.raises(ValueError, match="data must have shape"):
        dbm.fit_doubled(jax.random.PRNGKey(0), np.zeros(4), 2, 2)


@pytest.mark.slow
def test_doubled_pretraining_beats_random_init_on_digits():
    """Exact test log-likelihood (h1 enumerated) of the pre-trained DBM against the random
    start, the latter even with the visible biases at the data log-odds (paired over test
    digits, three standard errors)."""
    train, test = ebm.data.binarized_digits()
    h1, h2 = 6, 3
    p = dbm.pretrain(
        jax.random.PRNGKey(1), train, h1, h2, num_steps=150, num_chains=20, batch_size=20
    )
    start = ebm.EnergyModel(dbm.model, 64, h1, h2).init_params(jax.random.PRNGKey(2))
    start["b"] = rbm.init_params(jax.random.PRNGKey(2), train, h1)["b"]

    def ll(params):
        return np.asarray(-dbm.free_energy(params, test) - dbm.log_partition(params))

    diff = ll(p) - ll(start)
    se = diff.std() / np.sqrt(len(diff))
    assert diff.mean() > 3 * se, (diff.mean(), se)
    # the mean-field lower bound orders them the same way
    lz = dbm.log_partition(p), dbm.log_partition(start)
    lb = np.asarray(dbm.lower_bound(p, test, lz[0])) - np.asarray(
        dbm.lower_bound(start, test, lz[1])
    )
    assert lb.mean() > 3 * lb.std() / np.sqrt(len(lb))
