"""Noise-contrastive and flow contrastive estimation.

Closed form (Gutmann & Hyvärinen 2012): with ``log φ(x; θ) + c`` and ``c`` free, NCE's ``ĉ → −log Z(θ*)``;
the error shrinks like 1/√N and ``|ĉ − c*| < 0.02`` needs N ≳ 1e4. Here the learned ``log Z``
is ``−ĉ``, on a 1-d Gaussian with N = 20 000 draws of N(1, 2²): ``log Z* = ½ log(2π·4)``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flowjax.distributions import Normal
from flowjax.flows import masked_autoregressive_flow

import ebm_ppl as ebm
from ebm_ppl.objectives.nce import NCE, FlowContrastiveEstimation, NCEState

TRUE_MEAN, TRUE_SD, N = 1.0, 2.0, 20_000


def gauss1():
    m = numpyro.param("m", 0.0)
    p = numpyro.param("p", 1.0)
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 0.5 * p * (x - m) ** 2)


def gauss2():
    m = numpyro.param("m", jnp.zeros(2))
    p = numpyro.param("p", 1.0)
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * p * jnp.sum((x - m) ** 2))


def _train(em, obj, data, *, steps, lr, batch_size=None):
    key = jax.random.PRNGKey(3)
    params = em.init_params(key)
    n = data.shape[0]
    state = obj.init(key, params, {"x": data if batch_size is None else data[:batch_size]})
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def step(carry, i):
        p, s, o = carry
        k = jax.random.fold_in(key, i)
        if batch_size is None:
            batch = {"x": data}
        else:
            batch = {"x": data[jax.random.randint(jax.random.fold_in(k, 1), (batch_size,), 0, n)]}
        (_, (s, metrics)), g = jax.value_and_grad(obj.loss, has_aux=True)(p, s, batch, k)
        u, o = opt.update(g, o, p)
        return (optax.apply_updates(p, u), s, o), metrics

    carry = (params, state, opt.init(params))
    (params, state, _), metrics = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(steps)))(carry)
    return params, state, metrics


@pytest.fixture(scope="module")
def data1():
    return TRUE_MEAN + TRUE_SD * jax.random.normal(jax.random.PRNGKey(0), (N,))


@pytest.mark.slow
def test_nce_gaussian_log_z(data1):
    em = ebm.EnergyModel(gauss1)
    params, state, metrics = _train(em, NCE("gaussian").build(em), data1, steps=400, lr=0.05)
    assert isinstance(state, NCEState)
    log_z_data = 0.5 * math.log(2 * math.pi * TRUE_SD**2)
    assert abs(float(state.log_z) - log_z_data) < 0.02
    # the learned log Z is the model's own: ½ log(2π/p̂) in closed form
    log_z_model = 0.5 * math.log(2 * math.pi / float(params["p"]))
    assert abs(float(state.log_z) - log_z_model) < 1e-3
    # mean and variance: NCE's standard errors here are ~1.5× the MLE's (2/√N, 4√2/√N)
    assert abs(float(params["m"]) - float(jnp.mean(data1))) < 0.05
    assert abs(1.0 / float(params["p"]) - float(jnp.var(data1))) < 0.15
    assert float(metrics["log_z"][-1]) == pytest.approx(float(state.log_z), abs=1e-3)


def test_nce_given_noise_distribution(data1):
    em = ebm.EnergyModel(gauss1)
    obj = NCE(dist.Normal(0.0, 4.0), noise_ratio=2).build(em)
    params, state, _ = _train(em, obj, data1[:4000], steps=400, lr=0.05)
    log_z_model = 0.5 * math.log(2 * math.pi / float(params["p"]))
    assert abs(float(state.log_z) - log_z_model) < 0.01
    # N = 4000 here: standard errors ~0.05 (mean) and ~0.15 (variance)
    assert abs(float(params["m"]) - TRUE_MEAN) < 0.2
    assert abs(1.0 / float(params["p"]) - TRUE_SD**2) < 0.6


def test_nce_data_moments_from_build(data1):
    em = ebm.EnergyModel(gauss1)
    obj = NCE("gaussian").build(em, data={"x": data1})
    state = obj.init(jax.random.PRNGKey(0), em.init_params(jax.random.PRNGKey(0)), {"x": data1[:7]})
    mean, chol = state.noise
    np.testing.assert_allclose(mean, [jnp.mean(data1)], rtol=1e-5)
    np.testing.assert_allclose(chol @ chol.T, [[jnp.var(data1)]], rtol=1e-3)


@pytest.mark.slow
def test_fce_learns_gaussian():
    em = ebm.EnergyModel(gauss2)
    data = jnp.array([1.0, -0.5]) + 0.7 * jax.random.normal(jax.random.PRNGKey(1), (4000, 2))
    # a small affine autoregressive flow keeps compilation short; the default is a spline flow
    flow = masked_autoregressive_flow(
        jax.random.key(0), base_dist=Normal(jnp.zeros(2)), flow_layers=2, nn_width=16
    )
    obj = FlowContrastiveEstimation(flow, mle_weight=1.0, flow_optimizer=optax.adam(1e-2)).build(em)
    params, state, metrics = _train(em, obj, data, steps=300, lr=0.02, batch_size=256)
    np.testing.assert_allclose(params["m"], [1.0, -0.5], atol=0.1)
    assert abs(1.0 / float(params["p"]) - 0.49) < 0.1
    log_z_model = math.log(2 * math.pi / float(params["p"]))
    assert abs(float(state.log_z) - log_z_model) < 0.1
    # the flow was trained: its data NLL fell
    assert float(metrics["flow_nll"][-1]) < float(metrics["flow_nll"][0]) - 0.5


def _bits_model():
    x = numpyro.sample("x", ebm.Bits(3))
    ebm.energy("E", jnp.sum(x))


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: NCE("uniform"), ValueError, "noise must be 'gaussian'"),
        (lambda: NCE(3.0), TypeError, "noise must be 'gaussian' or a NumPyro distribution"),
        (lambda: NCE(noise_ratio=0), ValueError, "noise_ratio must be an integer >= 1"),
        (lambda: NCE(noise_scale=0.0), ValueError, "noise_scale must be > 0"),
        (lambda: NCE(log_z_rate=2.0), ValueError, "log_z_rate must be in"),
        (lambda: FlowContrastiveEstimation(mle_weight=-1.0), ValueError, "mle_weight must be >= 0"),
        (
            lambda: FlowContrastiveEstimation(flow=3),
            TypeError,
            "flow must be a flowjax distribution",
        ),
    ],
)
def test_bad_configuration(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_noise_event_shape_must_match_state():
    em = ebm.EnergyModel(gauss2)
    with pytest.raises(ValueError, match="event_shape equal to the state"):
        NCE(dist.Normal(jnp.zeros(3), 1.0).to_event(1)).build(em)
    with pytest.raises(ValueError, match="event_shape equal to the state"):
        NCE(dist.Normal(0.0, 1.0)).build(em)


def test_gaussian_noise_needs_continuous_state():
    with pytest.raises(ValueError, match="site 'x' is discrete"):
        NCE("gaussian").build(ebm.EnergyModel(_bits_model))
    with pytest.raises(ValueError, match="site 'x' is discrete"):
        FlowContrastiveEstimation().build(ebm.EnergyModel(_bits_model))
