"""AIS against exact log partition functions, compared in Z-space.

Tolerance: AIS's ``Ẑ = mean(w)`` is unbiased for ``Z`` (``log Ẑ`` is not: Jensen), and by the
CLT ``(Ẑ − Z) / sd(Ẑ)`` is standard normal, with ``sd(Ẑ) / Z ≈ sd(w) / (mean(w) √M)`` = the
reported ``stderr``. So each forward check is ``|Ẑ/Z − 1| = |exp(log_z − truth) − 1| <
Z_CRIT · stderr`` and each reverse check ``|exp(truth − log_z_rev) − 1| < Z_CRIT · stderr``
(``E[w_rev] = 1/Z``). ``Z_CRIT = 3`` as the issue asks (two-sided false-failure probability
0.27 % per assertion, ~2 % for the module's assertions together; seeds are fixed, so a pass is
reproducible). Heavy-tailed weights make the sample ``stderr`` itself unreliable, so every check
is gated on the weights' ESS being at least half the chains (the analogue of the R-hat/ESS gate
of MCMC tests): a degenerate run fails instead of passing on an under-estimated error.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from ebm_ppl.models import ising, rbm

import ebm_ppl as ebm
from ebm_ppl.partition.ais import check_schedule, summarize_log_weights
from tests import references as refs

Z_CRIT = 3.0
MIN_ESS_FRACTION = 0.5

# ----------------------------------------------------------------------------- models
_RNG = np.random.default_rng(7)
_A = _RNG.normal(size=(5, 5))
PREC = (_A @ _A.T / 5.0 + 0.5 * np.eye(5)).astype(np.float32)  # non-diagonal precision
MU = np.linspace(-1.0, 1.0, 5).astype(np.float32)
GAUSS_LOG_Z = 2.5 * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(PREC.astype(np.float64))[1]


def gaussian():
    x = numpyro.sample("x", ebm.Flat(5))
    r = x - MU
    ebm.energy("E", 0.5 * r @ PREC @ r)


def double_well():
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", jnp.sum((x**2 - 1.0) ** 2))


DOUBLE_WELL_LOG_Z = 2 * math.log(refs.DOUBLE_WELL_Z_A1)  # a = 1, two independent dimensions
ISING_LOG_Z = refs.ISING_4X4_LOG_Z_T2  # 4x4 torus, T = 2.0


def rbm_params(seed=3, nv=20, nh=10, scale=1.0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {
        "W": scale * jax.random.normal(k1, (nv, nh)),
        "b": 0.5 * jax.random.normal(k2, (nv,)),
        "c": 0.5 * jax.random.normal(k3, (nh,)),
    }


def assert_forward(est, truth):
    m = est.info["num_chains"]
    assert est.info["ess"] >= MIN_ESS_FRACTION * m, f"degenerate weights: ESS {est.info['ess']}"
    ratio = math.exp(est.log_z - truth)
    assert abs(ratio - 1.0) < Z_CRIT * est.stderr, (est.log_z, truth, est.stderr)


def assert_reverse(est, truth):
    m = est.info["num_chains"]
    assert est.info["ess"] >= MIN_ESS_FRACTION * m, f"degenerate weights: ESS {est.info['ess']}"
    ratio = math.exp(truth - est.log_z)  # mean(w_rev) * Z, 1 in expectation
    assert abs(ratio - 1.0) < Z_CRIT * est.stderr, (est.log_z, truth, est.stderr)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def rbm_setup():
    params = rbm_params()
    exact = float(rbm.log_partition(params))
    fwd = ebm.log_partition(
        rbm.model, params, method="ais", model_args=(20, 10), rng_key=jax.random.PRNGKey(11)
    )
    samples = rbm.exact_samples(jax.random.PRNGKey(12), params, 256)
    rev = ebm.log_partition(
        rbm.model,
        params,
        method="ais",
        model_args=(20, 10),
        reverse=True,
        samples=samples,
        rng_key=jax.random.PRNGKey(13),
    )
    return params, exact, fwd, rev


# ----------------------------------------------------------------------------- tests
def test_gaussian_mismatched_base():
    # An explicit N(0, I) base: a Laplace base would equal the target and could not fail.
    base = dist.Normal(jnp.zeros(5), 1.0).to_event(1)
    est = ebm.log_partition(
        gaussian,
        method="ais",
        base=base,
        num_chains=256,
        num_temperatures=300,
        rng_key=jax.random.PRNGKey(1),
    )
    assert est.method == "ais" and est.info["base"] == "user" and est.info["kernel"] == "mala"
    # the base is far enough from the target that log w varies: the test has power
    assert np.std(est.info["log_weights"]) > 0.01
    assert_forward(est, GAUSS_LOG_Z)


@pytest.mark.slow
def test_double_well_laplace_base():
    est = ebm.log_partition(
        double_well,
        method="ais",
        num_chains=256,
        num_temperatures=300,
        rng_key=jax.random.PRNGKey(2),
    )
    assert est.info["base"] == "laplace"
    assert 0.3 < float(np.mean(est.info["acceptance"])) < 0.9
    assert_forward(est, DOUBLE_WELL_LOG_Z)


def test_ising_4x4_block_gibbs():
    est = ebm.log_partition(
        ising.model,
        method="ais",
        model_args=((4, 4),),
        model_kwargs={"beta": 0.5},
        num_chains=256,
        num_temperatures=300,
        rng_key=jax.random.PRNGKey(3),
    )
    assert est.info["kernel"] == "gibbs" and est.info["base"] == "uniform"
    assert_forward(est, ISING_LOG_Z)


@pytest.mark.slow
def test_rbm_forward_default_settings(rbm_setup):
    _, exact, fwd, _ = rbm_setup
    assert fwd.info["num_chains"] == 256 and fwd.info["num_temperatures"] == 1000
    assert fwd.stderr < 0.1
    assert_forward(fwd, exact)


@pytest.mark.slow
def test_rbm_reverse_is_upper_bound(rbm_setup):
    _, exact, fwd, rev = rbm_setup
    assert rev.method == "reverse_ais"
    assert_reverse(rev, exact)
    # bracket, each side in expectation: forward <= log Z <= reverse (3-stderr slack)
    assert fwd.log_z <= exact + Z_CRIT * fwd.stderr
    assert rev.log_z >= exact - Z_CRIT * rev.stderr


@pytest.mark.slow
def test_rbm_data_base_rate_base():
    params = rbm_params(seed=4, nv=8, nh=4)
    data = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(5), 0.3, (50, 8)), np.float32)
    est = ebm.log_partition(
        rbm.model,
        params,
        method="ais",
        model_args=(8, 4),
        data=data,
        num_chains=128,
        num_temperatures=100,
        rng_key=jax.random.PRNGKey(6),
    )
    assert est.info["base"] == "data base rates"
    assert_forward(est, float(rbm.log_partition(params)))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "schedule, match",
    [
        ([0.0, 0.5, 0.4, 1.0], "strictly increasing"),
        ([0.1, 0.5, 1.0], "start at 0 and end at 1"),
        ([0.0, 0.5, 0.9], "start at 0 and end at 1"),
        ([0.0, np.nan, 1.0], "finite"),
        ([[0.0, 1.0]], "1-D"),
    ],
)
def test_bad_schedule(schedule, match):
    with pytest.raises(ValueError, match=match):
        check_schedule(schedule)
    with pytest.raises(ValueError, match="schedule"):
        ebm.log_partition(gaussian, method="ais", schedule=schedule)


def test_no_usable_base():
    def mixed():
        x = numpyro.sample("x", ebm.Flat(2))
        s = numpyro.sample("s", ebm.Bits(2))
        ebm.energy("E", jnp.sum(x**2) - jnp.sum(s * x))

    with pytest.raises(ValueError, match="base"):
        ebm.log_partition(mixed, method="ais")


def test_bad_kernel_and_reverse_without_samples():
    with pytest.raises(ValueError, match="kernel"):
        ebm.log_partition(gaussian, method="ais", kernel="gibbs")
    with pytest.raises(ValueError, match="kernel"):
        ebm.log_partition(gaussian, method="ais", kernel="ula")
    with pytest.raises(ValueError, match="samples"):
        ebm.log_partition(gaussian, method="ais", reverse=True)
    with pytest.raises(ValueError, match="base"):
        ebm.log_partition(gaussian, method="ais", base=dist.Normal(0.0, 1.0))


def test_nonfinite_weights_are_flagged():
    # The energy is NaN on part of the base's support: the first weight increment is NaN there.
    def broken():
        x = numpyro.sample("x", ebm.Flat(()))
        ebm.energy("E", jnp.where(x > 2.0, jnp.nan, 0.5 * x**2))

    with pytest.warns(RuntimeWarning, match="NaN"):
        est = ebm.log_partition(
            broken,
            method="ais",
            base=dist.Normal(0.0, 2.0),
            num_chains=32,
            num_temperatures=5,
            adapt_step_size=False,
        )
    assert math.isnan(est.log_z) and est.info["num_nonfinite"] > 0


def test_summarize_log_weights():
    s = summarize_log_weights(np.log([1.0, 3.0]))
    assert s["log_mean"] == pytest.approx(math.log(2.0))
    assert s["stderr"] == pytest.approx(np.std([1.0, 3.0], ddof=1) / (2.0 * math.sqrt(2)))
    assert s["ess"] == pytest.approx(16.0 / 10.0)
    assert math.isnan(summarize_log_weights(np.array([0.0, np.nan]))["log_mean"])


# ----------------------------------------------------------------------------- log_likelihood
def test_log_likelihood_quadrature_path():
    def normal():
        x = numpyro.sample("x", ebm.Flat(()))
        ebm.energy("E", 0.5 * (x - 1.0) ** 2 / 0.25)

    x = np.array([0.0, 1.0, 2.5], np.float32)
    ll = ebm.log_likelihood(normal, {}, x, data_site="x")
    assert ll.log_z.method == "quadrature"
    truth = -0.5 * (x - 1.0) ** 2 / 0.25 - 0.5 * math.log(2 * math.pi * 0.25)
    np.testing.assert_allclose(ll.per_example, truth, atol=1e-4)


@pytest.mark.slow
def test_log_likelihood_ais_path():
    params = rbm_params(seed=8, nv=10, nh=4)
    data = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(9), 0.3, (40, 10)), np.float32)
    exact = ebm.log_likelihood(rbm.model, params, data, model_args=(10, 4))
    assert exact.log_z.method == "exact" and exact.stderr == 0.0
    est = ebm.log_likelihood(
        rbm.model,
        params,
        data,
        model_args=(10, 4),
        method="ais",
        num_chains=128,
        num_temperatures=200,
        rng_key=jax.random.PRNGKey(10),
    )
    assert est.log_z.method == "ais" and est.log_z.info["base"] == "data base rates"
    # the same free energies: the difference is log Z's, checked in Z-space
    np.testing.assert_allclose(
        est.per_example - exact.per_example, exact.log_z.log_z - est.log_z.log_z, atol=1e-4
    )
    assert_forward(est.log_z, exact.log_z.log_z)
