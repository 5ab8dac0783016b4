"""ebm_ppl.sample with NumPyro's NUTS against closed forms, caching, init and continuation."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import ebm_ppl as ebm
from tests.helpers.stats import assert_within_mcse

NUM_TESTS = 6  # statistical assertions in this module (Bonferroni)
MU = jnp.array([1.0, -1.0])
PREC = jnp.array([[2.0, 0.9], [0.9, 1.0]])
TRACES = {"gaussian": 0}


def gaussian():
    mu = numpyro.param("mu", jnp.zeros(2))
    prec = numpyro.param("prec", jnp.eye(2))
    x = numpyro.sample("x", ebm.Flat((2,)))
    if isinstance(x, jax.core.Tracer):
        TRACES["gaussian"] += 1
    ebm.energy("E", 0.5 * (x - mu) @ prec @ (x - mu))


def double_well(a=1.0):
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", a * (x**2 - 1.0) ** 2)


PARAMS = {"mu": MU, "prec": PREC}
CONFIG = dict(params=PARAMS, num_chains=4, num_warmup=400, num_samples=1000, progress=False)


@pytest.fixture(scope="module")
def gaussian_run():
    idata, state = ebm.sample(gaussian, rng_key=jax.random.PRNGKey(1), return_state=True, **CONFIG)
    return idata, state


def test_nuts_gaussian_mean_and_covariance(gaussian_run):
    idata, _ = gaussian_run
    x = idata.posterior["x"].values  # (chain, draw, 2)
    cov = np.linalg.inv(np.asarray(PREC))
    assert_within_mcse(x, MU, num_tests=NUM_TESTS, name="mean")
    d = x - np.asarray(MU)
    assert_within_mcse(d[..., 0] ** 2, cov[0, 0], num_tests=NUM_TESTS, name="cov00")
    assert_within_mcse(d[..., 1] ** 2, cov[1, 1], num_tests=NUM_TESTS, name="cov11")
    assert_within_mcse(d[..., 0] * d[..., 1], cov[0, 1], num_tests=NUM_TESTS, name="cov01")


def test_double_well_second_moment():
    idata = ebm.sample(
        double_well,
        num_chains=4,
        num_warmup=500,
        num_samples=2000,
        progress=False,
        rng_key=jax.random.PRNGKey(2),
    )
    x = idata.posterior["x"].values
    assert_within_mcse(x**2, 0.8327454871, num_tests=NUM_TESTS, name="E[x^2]")


def test_inference_data_layout(gaussian_run):
    idata, _ = gaussian_run
    assert set(idata.groups()) == {"posterior", "sample_stats"}  # no log_likelihood from factors
    stats = idata.sample_stats
    for name in ("potential_energy", "energy", "acceptance_rate", "diverging", "step_size"):
        assert name in stats, name
    assert stats["diverging"].dtype == bool
    assert idata.posterior["x"].shape == (4, 1000, 2)
    assert list(idata.posterior.coords["device"].values) == [str(jax.devices()[0])] * 4
    # potential_energy is E(x) at the draws (flat base on R^2: no Jacobian)
    x = idata.posterior["x"].values[0, :5]
    e = 0.5 * np.einsum("ni,ij,nj->n", x - np.asarray(MU), np.asarray(PREC), x - np.asarray(MU))
    np.testing.assert_allclose(stats["potential_energy"].values[0, :5], e, rtol=1e-4, atol=1e-5)
    assert ebm.diagnostics.summary(idata)["ok"].all()


def test_compiled_once_per_configuration(gaussian_run):
    before = TRACES["gaussian"]
    ebm.sample(gaussian, rng_key=jax.random.PRNGKey(5), **CONFIG)
    assert TRACES["gaussian"] == before, (
        "a second call with the same configuration retraced the model"
    )


def test_init_state_continues_without_warmup(gaussian_run):
    idata, state = gaussian_run
    cont, state2 = ebm.sample(
        gaussian, init_state=state, return_state=True, **{**CONFIG, "num_samples": 100}
    )
    # the adapted step size is kept (no new warmup) and the chains go on from the last state
    last = idata.sample_stats["step_size"].values[:, -1]
    np.testing.assert_allclose(
        cont.sample_stats["step_size"].values, np.repeat(last[:, None], 100, 1)
    )
    assert cont.posterior.attrs["num_warmup"] == 0
    assert int(state2.i[0]) == int(state.i[0]) + 100


def test_init_values_are_honoured():
    # A barrier of height 50 keeps each chain in the well it starts in.
    init = {"x": jnp.array([1.0, -1.0])}
    idata = ebm.sample(
        double_well,
        num_chains=2,
        num_warmup=20,
        num_samples=100,
        init_values=init,
        model_kwargs={"a": 50.0},
        progress=False,
    )
    x = idata.posterior["x"].values
    assert (x[0] > 0).all() and (x[1] < 0).all()


def test_sequential_chain_method_runs():
    idata = ebm.sample(
        double_well,
        num_chains=2,
        num_warmup=50,
        num_samples=50,
        chain_method="sequential",
        progress=False,
    )
    assert idata.posterior["x"].shape == (2, 50)
    assert idata.posterior.attrs["chain_method"] == "sequential"
