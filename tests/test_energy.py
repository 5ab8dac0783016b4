"""Declaration layer: energy(), base measures and EnergyModel against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro import handlers

import ebm_ppl as ebm
from tests import references as refs


def gaussian(dim=3):
    mu = numpyro.param("mu", jnp.arange(dim, dtype=jnp.float32))
    prec = numpyro.param("prec", jnp.eye(dim) * 2.0)
    x = numpyro.sample("x", ebm.Flat((dim,)))
    ebm.energy("E", 0.5 * (x - mu) @ prec @ (x - mu))


def double_well(a=1.0):
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", a * (x**2 - 1.0) ** 2)


def ising_chain(n=5, beta=0.7):
    s = numpyro.sample("s", ebm.Spins((n,)))
    ebm.energy("E", -beta * jnp.sum(s * jnp.roll(s, 1)))


def test_energy_is_numpyro_factor_with_negated_sign():
    def m():
        ebm.energy("E", jnp.array(2.5))
        numpyro.sample("x", ebm.Flat(()))

    tr = handlers.trace(handlers.substitute(m, data={"x": 0.0})).get_trace()
    assert float(tr["E"]["fn"].log_prob(tr["E"]["value"])) == -2.5


def test_gaussian_energy_score_and_grad(key):
    em = ebm.EnergyModel(gaussian, 3)
    params = em.init_params(key)
    np.testing.assert_allclose(params["mu"], [0.0, 1.0, 2.0])
    x = jnp.array([0.3, -1.0, 4.0])
    d = x - params["mu"]
    np.testing.assert_allclose(
        em.energy(params, {"x": x}), 0.5 * d @ (2.0 * jnp.eye(3)) @ d, rtol=1e-6
    )
    np.testing.assert_allclose(em.score(params, {"x": x})["x"], -2.0 * d, rtol=1e-6)
    g = jax.grad(lambda x: em.energy(params, {"x": x}))(x)
    np.testing.assert_allclose(em.score(params, {"x": x})["x"], -g, rtol=1e-6)
    # differentiable in the parameters too (learning needs dE/dtheta)
    gp = jax.grad(lambda p: em.energy(p, {"x": x}))(params)
    np.testing.assert_allclose(gp["mu"], -2.0 * d, rtol=1e-6)


def test_params_flow_from_numpyro_param(key):
    em = ebm.EnergyModel(gaussian, 2)
    assert em.param_sites == ("mu", "prec")
    x = {"x": jnp.zeros(2)}
    e1 = em.energy({"mu": jnp.zeros(2), "prec": jnp.eye(2)}, x)
    e2 = em.energy({"mu": jnp.ones(2), "prec": 4 * jnp.eye(2)}, x)
    assert float(e1) == 0.0 and float(e2) == pytest.approx(4.0)


def test_sign_exp_minus_energy_is_the_density():
    # Normalizing exp(-E) of the double well on a grid must reproduce the closed-form Z(a=1).
    em = ebm.EnergyModel(double_well)
    grid = jnp.linspace(-4.0, 4.0, 8001)
    e = jax.vmap(lambda x: em.energy({}, {"x": x}))(grid)
    z = float(np.sum(np.exp(-np.asarray(e, np.float64))) * 8.0 / 8000)  # sum in float64
    assert z == pytest.approx(refs.DOUBLE_WELL_Z_A1, rel=1e-5)


def test_ising_energy_on_spins_counts_each_bond_once():
    em = ebm.EnergyModel(ising_chain, 5, 0.7)
    assert em.discrete_sites == ("s",) and em.continuous_sites == ()
    s = jnp.array([1.0, 1.0, -1.0, 1.0, 1.0])
    bonds = s * jnp.roll(s, 1)  # 5 bonds on a ring of 5
    np.testing.assert_allclose(em.energy({}, {"s": s}), -0.7 * jnp.sum(bonds), rtol=1e-6)
    # exact 1-d periodic chain: Z = (2 cosh K)^N + (2 sinh K)^N
    states = jnp.array(np.array(np.meshgrid(*[[-1.0, 1.0]] * 5)).reshape(5, -1).T)
    log_z = jax.nn.logsumexp(-em.batch_energy({}, {"s": states}))
    k = 0.7
    np.testing.assert_allclose(
        log_z, np.log((2 * np.cosh(k)) ** 5 + (2 * np.sinh(k)) ** 5), rtol=1e-5
    )


def test_invalid_spin_value_refused_or_infinite_energy():
    em = ebm.EnergyModel(ising_chain, 3, 1.0)
    bad = {"s": jnp.array([1.0, 0.0, 1.0])}
    # concrete values are checked against the support, naming the site
    with pytest.raises(ValueError, match=r"values\['s'\].*\{-1, 1\}"):
        em.energy({}, bad)
    # traced values cannot be checked: the counting measure gives them infinite energy
    assert float(jax.jit(lambda v: em.energy({}, v))(bad)) == np.inf


def test_base_measures():
    flat = ebm.Flat((2, 3))
    assert flat.event_shape == (2, 3) and flat.batch_shape == ()
    assert float(flat.log_prob(jnp.ones((2, 3)))) == 0.0
    for cls, vals in ((ebm.Spins, {-1.0, 1.0}), (ebm.Bits, {0.0, 1.0})):
        d = cls((3, 2))
        assert d.batch_shape == (3, 2) and d.event_shape == ()
        assert d.is_discrete and d.has_enumerate_support
        assert d.enumerate_support().shape == (2, 3, 2)
        assert d.enumerate_support(expand=False).shape == (2, 1, 1)
        draws = d.sample(jax.random.PRNGKey(1), (2000,))
        assert set(np.unique(draws).tolist()) == vals
        assert abs(float(draws.mean()) - float(d.mean[0, 0])) < 0.05  # uniform draws


def test_energy_inside_plates_has_batch_shape():
    def m():
        x = numpyro.sample("x", ebm.Flat(3))
        with numpyro.plate("n", 4):
            ebm.energy("E", jnp.arange(4.0) * jnp.sum(x))

    em = ebm.EnergyModel(m)
    assert float(em.energy({}, {"x": jnp.ones(3)})) == pytest.approx(18.0)
    assert em.sites["E"].kind == "energy"


def test_observed_sites_are_data_not_state():
    def m(y=None):
        x = numpyro.sample("x", ebm.Flat(()))
        y = numpyro.sample("y", ebm.Flat(()), obs=y)
        ebm.energy("E", 0.5 * (x - y) ** 2)

    em = ebm.EnergyModel(m, jnp.array(2.0))
    assert em.state_sites == ("x",) and em.data_sites == ("y",)
    assert float(em.energy({}, {"x": jnp.array(0.0)})) == pytest.approx(2.0)


def test_potential_fn_constrained_site():
    def m():
        sigma = numpyro.sample(
            "sigma", ebm.Flat((), support=numpyro.distributions.constraints.positive)
        )
        ebm.energy("E", sigma)  # exponential density on (0, inf)

    em = ebm.EnergyModel(m)
    pe = em.potential_fn({})
    z = jnp.array(0.3)
    # U(z) = E(exp z) - log|d exp(z)/dz| = exp(z) - z
    np.testing.assert_allclose(pe({"sigma": z}), jnp.exp(z) - z, rtol=1e-6)
    np.testing.assert_allclose(
        em.constrain(em.unconstrain({"sigma": 2.0}))["sigma"], 2.0, rtol=1e-6
    )


def test_init_values_shapes(key):
    def m():
        numpyro.sample("x", ebm.Flat((2,)))
        numpyro.sample("s", ebm.Spins((3,)))
        ebm.energy("E", jnp.zeros(()))

    v = ebm.EnergyModel(m).init_values(key, 5)
    assert v["x"].shape == (5, 2) and v["s"].shape == (5, 3)
    assert bool(jnp.all(jnp.abs(v["x"]) < 2)) and set(np.unique(v["s"]).tolist()) <= {-1.0, 1.0}


def test_equinox_module_parameters(key):
    import equinox as eqx  # the dev extra installs it
    from numpyro.contrib.module import eqx_module

    def m():
        net = eqx_module("net", eqx.nn.Linear(2, 1, key=jax.random.PRNGKey(3)))
        x = numpyro.sample("x", ebm.Flat((2,)))
        ebm.energy("E", jnp.sum(net(x) ** 2))

    em = ebm.EnergyModel(m)
    params = em.init_params(key)
    assert em.param_sites == ("net$params",)
    x = jnp.array([0.5, -1.0])
    g = jax.grad(lambda p: em.energy(p, {"x": x}))(params)
    assert jax.tree.structure(g) == jax.tree.structure(params)
    assert float(jnp.abs(jax.tree.leaves(g)[0]).sum()) > 0
