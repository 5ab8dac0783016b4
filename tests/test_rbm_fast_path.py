"""Persistent CD on a bipartite model with affine conditionals (an RBM), reached from the site plan:
the update is the algorithm's five matrix products and equals the generic block-Gibbs update."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from ebm_ppl.models import rbm

import ebm_ppl as ebm
from ebm_ppl.objectives import PersistentContrastiveDivergence, contrastive

D, H, B = 7, 5, 11  # distinct sizes, so the matrix products are told apart by their shapes
GENERIC = {"uniform_bits": 32}  # the default of the Gibbs kernel: any kernel option disables it


@pytest.fixture(scope="module")
def em():
    return ebm.EnergyModel(rbm.model, D, H)


def _free_energy(p, v):
    return rbm.free_energy(p, v["v"])


def _run(em, num_steps=6, **kwargs):
    """``(matrix product shapes of the compiled update, params, chains, metrics)`` after
    ``num_steps`` SGD updates of PCD from the same key and data."""
    spec = PersistentContrastiveDivergence("gibbs", num_chains=B, diagnostics_window=0, **kwargs)
    obj = spec.build(em, data_sites=("v",), latent_sites=("h",), batch_size=B)
    data = (np.random.default_rng(0).random((num_steps, B, D)) < 0.4).astype(np.float32)
    params = em.init_params(jax.random.PRNGKey(0))
    state = obj.init(jax.random.PRNGKey(1), params, {"v": data[0]})

    def update(params, state, batch, key):
        (_, (state, metrics)), grads = jax.value_and_grad(obj.loss, has_aux=True)(
            params, state, batch, key
        )
        return jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), state, metrics

    key = jax.random.PRNGKey(2)
    compiled = jax.jit(update).lower(params, state, {"v": data[0]}, key).compile()
    shapes = re.findall(r"= f32\[(\d+),(\d+)\]\S* dot\(", compiled.as_text())
    products = sorted((int(a), int(b)) for a, b in shapes if int(a) > 1 and int(b) > 1)
    rows = []
    for t in range(num_steps):
        params, state, metrics = compiled(params, state, {"v": data[t]}, jax.random.fold_in(key, t))
        rows.append(metrics)
    return products, params, state.chains, jax.tree.map(lambda *m: np.stack(m), *rows)


@pytest.mark.parametrize(
    ("free_energy_fn", "num_mcmc_steps"), [(_free_energy, 1), (None, 1), (None, 2)]
)
def test_same_updates_as_the_generic_block_gibbs_path(em, free_energy_fn, num_mcmc_steps):
    kw = dict(free_energy_fn=free_energy_fn, num_mcmc_steps=num_mcmc_steps)
    products, params, chains, metrics = _run(em, **kw)
    generic, params_g, chains_g, metrics_g = _run(em, kernel_options=GENERIC, **kw)
    for name in ("W", "b", "c"):
        np.testing.assert_allclose(params[name], params_g[name], rtol=1e-5, atol=1e-6)
        # the parameters moved: the comparison is not between two initial values
        assert float(jnp.max(jnp.abs(params[name]))) > 1e-2
    for site in ("v", "h"):
        np.testing.assert_array_equal(chains[site], chains_g[site])
    for key in ("pos_energy", "neg_energy", "acceptance_rate", "divergences"):
        np.testing.assert_allclose(metrics[key], metrics_g[key], rtol=1e-5, atol=1e-5)
    if num_mcmc_steps == 1:
        # positive hidden means (B, H), visibles from hiddens (B, D), hiddens from those
        # (B, H) and the two gradient outer products (D, H), as scikit-learn's BernoulliRBM;
        # the generic sweep also evaluates the energy and the negatives' products again
        assert products == sorted([(B, H), (B, D), (B, H), (D, H), (D, H)])
        assert len(generic) == 7


def _chain_model():
    # three binary layers in a chain: not bipartite
    w = numpyro.param("w", jnp.zeros((2, 2)))
    a = numpyro.sample("a", ebm.Bits(2), infer={"blocks": 0})
    b = numpyro.sample("b", ebm.Bits(2), infer={"blocks": 1})
    c = numpyro.sample("c", ebm.Bits(2), infer={"blocks": 2})
    ebm.energy("E", -(a @ w @ b) - (b @ w @ c))


def _square_model():
    # two blocks, but the energy is not affine in the units of "a"
    w = numpyro.param("w", jnp.ones((2, 2)))
    a = numpyro.sample("a", ebm.Spins(2), infer={"blocks": 0})
    b = numpyro.sample("b", ebm.Bits(2), infer={"blocks": 1})
    ebm.energy("E", -(a @ w @ b) + jnp.sum(a) ** 2)


def test_used_only_where_the_plan_allows(em):
    assert em.plan.bipartite_blocks(("h", "v")) == (("v",), ("h",))
    assert ebm.EnergyModel(_chain_model).plan.bipartite_blocks(("a", "b", "c")) is None
    phases = contrastive._Phases(em, {"data_sites": ("v",)}, "PCD")

    def fast(**kwargs):
        spec = PersistentContrastiveDivergence(**kwargs)
        positive, negative = spec._samplers(phases)
        return spec._bipartite(phases, positive, negative)

    assert fast().blocks == (("v",), ("h",))  # "auto" resolves to block Gibbs
    assert fast(kernel="gibbs").levels == {"v": (0.0, 1.0), "h": (0.0, 1.0)}
    assert fast(kernel_options=GENERIC) is None
    assert fast(kernel="gwg") is None
    assert fast(rao_blackwell=False) is None  # sampled positive latents: the generic path
    square = ebm.EnergyModel(_square_model)
    phases = contrastive._Phases(square, {"data_sites": ("a", "b")}, "PCD")
    assert fast() is None
