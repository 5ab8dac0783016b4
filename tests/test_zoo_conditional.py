"""models.conditional: the program, sampling and prediction against enumeration."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ebm_ppl.models import conditional

import ebm_ppl as ebm
from tests.helpers.stats import assert_within_mcse

P = {
    "U": jnp.array([[1.0, -0.5], [0.3, 0.8], [-1.0, 0.2]]),
    "a": jnp.array([-0.2, 0.1, 0.4]),
    "J": jnp.array([[0.0, 1.5, -1.0], [0.0, 0.0, 0.7], [0.0, 0.0, 0.0]]),
}
X = jnp.array([0.5, -1.0])


def _exact_marginals(x):
    ys = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    e = np.asarray(conditional.energy(P, jnp.broadcast_to(x, (8, 2)), jnp.asarray(ys)))
    w = np.exp(-(e - e.min()))
    return (w / w.sum()) @ ys, ys[np.argmin(e)]


@pytest.mark.slow
def test_program_samples_the_conditional():
    truth, _ = _exact_marginals(X)
    idata = ebm.sample(
        conditional.model,
        params=P,
        kernel="gibbs",
        num_chains=4,
        num_warmup=100,
        num_samples=1000,
        rng_key=jax.random.PRNGKey(0),
        model_args=(X, 3),
        progress=False,
    )
    assert_within_mcse(np.asarray(idata.posterior["y"], np.float64), truth, num_tests=3)


def test_predict_marginals_and_energy_minimum():
    truth, mode = _exact_marginals(X)
    marg = conditional.predict(jax.random.PRNGKey(1), P, X[None], num_sweeps=4000)
    # Rao-Blackwellized averages of 4000 sweeps: Monte Carlo error well below 0.03
    np.testing.assert_allclose(marg[0], truth, atol=0.03)
    icm = conditional.predict(jax.random.PRNGKey(1), P, X[None], method="icm")
    assert icm[0].tolist() == mode.tolist()  # 3 units: ICM from the unary start finds it


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"x must have shape \(num_examples, 2\)"):
        conditional.predict(jax.random.PRNGKey(0), P, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="method must be one of"):
        conditional.predict(jax.random.PRNGKey(0), P, X[None], method="map")
    with pytest.raises(ValueError, match="x must be one input"):
        ebm.EnergyModel(conditional.model, jnp.zeros((2, 2)), 3)
