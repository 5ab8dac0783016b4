"""Potts models: exact values against independent brute force, mappings, categorical RBMs, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from ebm_ppl.models import ising, potts, rbm

import ebm_ppl as ebm
from ebm_ppl.energy.conditionals import exact_categorical_logits
from ebm_ppl.partition import exact
from tests.references import POTTS_T_C, POTTS_U_C


def _brute_torus(shape, q, beta):
    """ln Z, <u> (energy per site, J = 1) and P(s_00 = s_01) by NumPy enumeration of q^N states."""
    n = math.prod(shape)
    index = np.arange(q**n)
    s = ((index[:, None] // q ** np.arange(n)) % q).reshape(-1, *shape)
    agree = sum((s == np.roll(s, -1, axis=a)).sum(axis=(1, 2)) for a in (1, 2))
    log_w = beta * agree.astype(np.float64)
    top = log_w.max()
    w = np.exp(log_w - top)
    z = w.sum()
    return (
        top + np.log(z),
        -(w * agree).sum() / z / n,
        (w * (s[:, 0, 0] == s[:, 0, 1])).sum() / z,
    )


@pytest.mark.parametrize("q", [3, 4])
def test_exact_torus_3x3_x64(q):
    beta = 0.9
    with jax.enable_x64(True):
        em = ebm.EnergyModel(potts.model, (3, 3), q, beta=beta)
        assert em.plan["s"].kind == "categorical" and em.plan["s"].num_states == q
        log_z, (u, same) = exact.expectations(
            em,
            {},
            lambda v: (potts.energy(v["s"], q) / 9.0, (v["s"][0, 0] == v["s"][0, 1]) * 1.0),
        )
        est = ebm.log_partition(em, method="exact")
    ref = _brute_torus((3, 3), q, beta)
    assert est.info["num_states"] == q**9
    np.testing.assert_allclose([log_z, est.log_z], ref[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(float(u), ref[1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(float(same), ref[2], rtol=0, atol=1e-9)


def test_q2_potts_is_ising_at_half_beta_x64():
    beta, shape = 1.3, (4, 4)
    with jax.enable_x64(True):
        lz_potts = ebm.log_partition(
            potts.model, method="exact", model_args=(shape, 2), model_kwargs={"beta": beta}
        ).log_z
        lz_ising = ebm.log_partition(
            ising.model, method="exact", model_args=(shape,), model_kwargs={"beta": beta / 2}
        ).log_z
    shift = potts.ising_log_z_shift(shape, beta)
    assert shift == beta * 32 / 2  # 2N bonds on the torus
    np.testing.assert_allclose(lz_potts, lz_ising + shift, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        lz_potts, ising.kaufman_log_z(shape, 2.0 / beta) + shift, rtol=0, atol=1e-9
    )
    # the critical points map onto each other too
    assert abs(potts.critical_temperature(2) / 2 - ising.T_CRITICAL / 4) < 1e-12


def _bits_potts(shape, beta):
    x = numpyro.sample("s", ebm.Bits(shape))
    agree = sum(
        jnp.sum(x * jnp.roll(x, -1, a) + (1 - x) * (1 - jnp.roll(x, -1, a))) for a in (0, 1)
    )
    ebm.energy("E", -beta * agree)


def _numpyro_potts(shape, q, beta):
    s = numpyro.sample("s", dist.Categorical(logits=jnp.zeros(q)).expand(shape))
    ebm.energy("E", potts.energy(s, q, beta=beta))


def test_categorical_q2_equals_bits_and_numpyro_categorical_x64():
    shape, beta = (3, 3), 0.7
    with jax.enable_x64(True):
        em_cat = ebm.EnergyModel(potts.model, shape, 2, beta=beta)
        em_bits = ebm.EnergyModel(_bits_potts, shape, beta)
        states = jax.random.randint(jax.random.PRNGKey(0), (16, *shape), 0, 2)
        e_cat = jax.vmap(lambda s: em_cat.energy({}, {"s": s}))(states)
        e_bits = jax.vmap(lambda s: em_bits.energy({}, {"s": s * 1.0}))(states)
        np.testing.assert_allclose(e_cat, e_bits, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            ebm.log_partition(em_cat, method="exact").log_z,
            ebm.log_partition(em_bits, method="exact").log_z,
            rtol=0,
            atol=1e-9,
        )
        # NumPyro's Categorical is a probability (1/q per unit), ebm.Categorical counts states:
        # ln Z differs by N ln q, every expectation is the same.
        q = 3
        em_ebm = ebm.EnergyModel(potts.model, shape, q, beta=beta)
        em_np = ebm.EnergyModel(_numpyro_potts, shape, q, beta)
        assert em_np.plan["s"].kind == "categorical"
        fn = lambda v: potts.energy(v["s"], q) / 9.0  # noqa: E731
        lz_ebm, u_ebm = exact.expectations(em_ebm, {}, fn)
        lz_np, u_np = exact.expectations(em_np, {}, fn)
    np.testing.assert_allclose(lz_np, lz_ebm - 9 * math.log(q), rtol=0, atol=1e-9)
    np.testing.assert_allclose(float(u_np), float(u_ebm), rtol=0, atol=1e-9)


def _brute_couplings_log_z(J, h):
    J, h = np.asarray(J, np.float64), np.asarray(h, np.float64)
    n, q = h.shape
    index = np.arange(q**n)
    s = (index[:, None] // q ** np.arange(n)) % q
    neg_e = h[np.arange(n), s].sum(axis=1)
    for i in range(n):
        for j in range(i + 1, n):
            neg_e = neg_e + J[i, j, s[:, i], s[:, j]]
    top = neg_e.max()
    return top + np.log(np.exp(neg_e - top).sum()), neg_e


def test_couplings_model_and_zero_sum_gauge_x64():
    with jax.enable_x64(True):
        J, h = potts.random_couplings(jax.random.PRNGKey(3), 5, 3)
        est = ebm.log_partition(potts.couplings_model, method="exact", model_args=(J, h))
        ref, neg_e = _brute_couplings_log_z(J, h)
        np.testing.assert_allclose(est.log_z, ref, rtol=0, atol=1e-9)
        # a gauge shift J_ij(a, b) += u(a) + v(b), compensated in h, is the same model
        u = jax.random.normal(jax.random.PRNGKey(4), (5, 5, 3))
        Jg = potts.symmetrize(J + u[:, :, :, None] + jnp.swapaxes(u, 0, 1)[:, :, None, :])
        shift = jnp.sum(jnp.triu(jnp.ones((5, 5)), 1)[:, :, None] * u, axis=1) + jnp.sum(
            jnp.tril(jnp.ones((5, 5)), -1)[:, :, None] * u, axis=1
        )
        hg = h - shift
        states = jax.random.randint(jax.random.PRNGKey(5), (32, 5), 0, 3)
        gauge = jax.vmap(
            lambda s: potts.couplings_energy(Jg, hg, s) - potts.couplings_energy(J, h, s)
        )(states)
        np.testing.assert_allclose(gauge, 0.0, atol=1e-12)
        Jz, hz = potts.zero_sum_gauge(J, h)
        Jz2, hz2 = potts.zero_sum_gauge(Jg, hg)
        np.testing.assert_allclose(Jz, Jz2, atol=1e-12)
        np.testing.assert_allclose(hz, hz2, atol=1e-12)
        np.testing.assert_allclose(jnp.sum(Jz, axis=2), 0.0, atol=1e-12)
        np.testing.assert_allclose(jnp.sum(hz, axis=1), 0.0, atol=1e-12)
        # zero-sum couplings: energies differ from the original by one constant
        diff = jax.vmap(
            lambda s: potts.couplings_energy(Jz, hz, s) - potts.couplings_energy(J, h, s)
        )(states)
        np.testing.assert_allclose(diff, diff[0], atol=1e-12)


def test_categorical_rbm_enumeration_paths_x64():
    kwargs = {"visible": "categorical", "num_states": 3}
    with jax.enable_x64(True):
        em = ebm.EnergyModel(rbm.model, 5, 3, **kwargs)
        assert em.plan["v"].kind == "categorical" and em.plan["W"].shape == (5, 3, 3)
        keys = jax.random.split(jax.random.PRNGKey(0), 3)
        p = {
            k: 0.5 * jax.random.normal(key, v.shape)
            for key, (k, v) in zip(keys, sorted(em.init_params(0).items()), strict=True)
        }
        summed = ebm.log_partition(em, p, method="exact")
        closed = float(rbm.log_partition(p, "categorical"))
        assert summed.info["summed_out"] == "v" and summed.info["num_states"] == 8
        np.testing.assert_allclose(summed.log_z, closed, rtol=0, atol=1e-9)
        data = np.array([[0, 1, 2, 0, 1], [2, 2, 2, 1, 0]])
        ll = ebm.log_likelihood(rbm.model, p, {"v": data}, model_args=(5, 3), model_kwargs=kwargs)
        want = -rbm.free_energy(p, jnp.asarray(data), "categorical") - closed
        np.testing.assert_allclose(ll.per_example, want, rtol=0, atol=1e-9)
        marg = ebm.log_partition(
            rbm.model, p, method="exact", model_args=(5, 3),
            model_kwargs={**kwargs, "marginalize_hidden": True},
        )  # fmt: skip
        np.testing.assert_allclose(marg.log_z, closed, rtol=0, atol=1e-9)


def test_critical_values_match_references():
    for q, t_c in POTTS_T_C.items():
        assert abs(potts.critical_temperature(q) - t_c) < 1e-9
    for q, u_c in POTTS_U_C.items():
        assert abs(potts.critical_energy(q) - u_c) < 1e-6
    # q = 2 at T_c is Ising at its T_c: u = -(N_bonds/2 + sqrt(2) N/2) / N = -(1 + 1/sqrt 2)
    assert abs(potts.critical_energy(2) - (-1.0 - math.sqrt(2.0) / 2.0)) < 1e-12


def test_magnetization_and_binder():
    s = jnp.zeros((4, 4), jnp.int32)
    assert float(potts.magnetization(s, 3)) == 1.0
    half = jnp.arange(16).reshape(4, 4) % 3
    assert abs(float(potts.magnetization(half, 3)) - (3 * 6 / 16 - 1) / 2) < 1e-6
    assert abs(potts.binder_cumulant(np.ones(5)) - 2.0 / 3.0) < 1e-12


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ebm.EnergyModel(potts.model, (3, 3), 1), ValueError, "num_states must be >= 2"),
        (lambda: ebm.EnergyModel(potts.model, (3, 3), 2.5), TypeError, "num_states"),
        (
            lambda: ebm.EnergyModel(potts.model, (3, 3), 3, field=jnp.zeros(4)),
            ValueError,
            "field must have shape",
        ),
        (
            lambda: ebm.EnergyModel(
                potts.couplings_model,
                jnp.zeros((3, 3, 2, 2)).at[0, 1, 0, 1].set(1.0),
                jnp.zeros((3, 2)),
            ),
            ValueError,
            "symmetric",
        ),
        (
            lambda: ebm.EnergyModel(rbm.model, 4, 2, visible="categorical"),
            ValueError,
            "needs num_states",
        ),
        (
            lambda: ebm.EnergyModel(rbm.model, 4, 2, num_states=3),
            ValueError,
            "visible='categorical' only",
        ),
        (
            lambda: ebm.log_likelihood(
                potts.model, {}, np.full((2, 3, 3), 3), model_args=((3, 3), 3)
            ),
            ValueError,
            r"values in \{0, 1, 2\}",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _assert_ais(est, truth):
    # E[Ẑ] = Z: |Ẑ/Z - 1| within 3 of the reported standard error, weights not degenerate
    assert est.info["ess"] >= 0.5 * est.info["num_chains"], est.info["ess"]
    assert abs(math.exp(est.log_z - truth) - 1.0) < 3.0 * est.stderr, (est.log_z, truth)


def test_ais_categorical_torus_uniform_base():
    q, beta = 3, 0.9
    est = ebm.log_partition(
        potts.model,
        method="ais",
        model_args=((3, 3), q),
        model_kwargs={"beta": beta},
        num_chains=128,
        num_temperatures=200,
        rng_key=jax.random.PRNGKey(0),
    )
    assert est.info["base"] == "uniform" and est.info["kernel"] == "gibbs"
    _assert_ais(est, _brute_torus((3, 3), q, beta)[0])


@pytest.mark.slow
def test_log_likelihood_ais_with_state_frequency_base():
    J, h = potts.random_couplings(jax.random.PRNGKey(3), 5, 3)
    data = np.asarray(potts.exact_samples(jax.random.PRNGKey(4), J, h, 500))
    ll = ebm.log_likelihood(
        potts.couplings_model,
        None,
        data,
        model_args=(J, h),
        method="ais",
        num_chains=128,
        num_temperatures=200,
    )
    assert ll.log_z.method == "ais" and ll.log_z.info["base"] == "data frequencies"
    _assert_ais(ll.log_z, _brute_couplings_log_z(J, h)[0])


def test_lattice_logits_fn_equals_exact_conditionals():
    q, beta, field = 3, 0.8, jnp.array([0.1, -0.2, 0.3])
    em = ebm.EnergyModel(potts.model, (4, 4), q, beta=beta, field=field)
    s = jax.random.randint(jax.random.PRNGKey(1), (4, 4), 0, q)
    fn = potts.lattice_logits_fn(q, beta=beta, field=field)
    energy, logits = fn(lambda p: em.energy({}, p), {"s": s}, {"s": q})
    want = exact_categorical_logits(lambda p: em.energy({}, p), {"s": s}, "s", q)
    np.testing.assert_allclose(logits["s"], want, atol=1e-5)
    np.testing.assert_allclose(energy, em.energy({}, {"s": s}), rtol=1e-6)
