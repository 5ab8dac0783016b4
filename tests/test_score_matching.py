"""Score matching objectives against closed forms (Hyvärinen 2005; Vincent 2011 for denoising).

On a Gaussian EBM ``E = ½(x − μ)ᵀP(x − μ)`` the score-matching loss is a convex quadratic in
``(P, Pμ)``: exact and sliced score matching are minimized by the sample mean and the inverse of
the biased covariance ``S⁻¹``, denoising score matching with noise σ by ``(S + σ²I)⁻¹``. The
optimizer runs full-batch Adam to convergence, so exact score matching is held to optimizer
tolerance and the stochastic objectives (random probes, noise) to their residual noise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest

import ebm_ppl as ebm
from ebm_ppl.objectives.score_matching import (
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)

SIGMA = 0.5
# Residual noise of the stochastic objectives after the decayed Adam run, on entries of P of
# size ~2.5 (measured ~0.01 at these seeds); exact score matching converges to ~1e-6.
STOCHASTIC_TOL = 0.03
EXACT_TOL = 1e-3


def gauss3():
    mu = numpyro.param("mu", jnp.zeros(3))
    prec = numpyro.param("prec", jnp.eye(3))
    x = numpyro.sample("x", ebm.Flat(3))
    d = x - mu
    ebm.energy("E", 0.5 * d @ (0.5 * (prec + prec.T)) @ d)


@pytest.fixture(scope="module")
def setup():
    key = jax.random.PRNGKey(0)
    a = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.3, 0.2, 0.6]])
    data = jax.random.normal(key, (1000, 3)) @ a.T + jnp.array([1.0, -1.0, 0.5])
    em = ebm.EnergyModel(gauss3)
    mean = data.mean(0)
    cov = jnp.cov(data.T, bias=True)
    return em, data, mean, cov


def _train(em, obj, data, steps=1500, lr=0.05):
    key = jax.random.PRNGKey(1)
    params = em.init_params(key)
    batch = {"x": data}
    state = obj.init(key, params, batch)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def step(carry, i):
        p, s, o = carry
        (_, (s, _)), g = jax.value_and_grad(obj.loss, has_aux=True)(
            p, s, batch, jax.random.fold_in(key, i)
        )
        u, o = opt.update(g, o, p)
        return (optax.apply_updates(p, u), s, o), None

    carry = (params, state, opt.init(params))
    (params, _, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(steps)))(carry)
    return params["mu"], 0.5 * (params["prec"] + params["prec"].T)


@pytest.mark.parametrize(
    "spec, tol",
    [
        (ScoreMatching(), EXACT_TOL),
        (ScoreMatching(hessian_trace="hutchinson", num_probes=2), STOCHASTIC_TOL),
        (SlicedScoreMatching(1), STOCHASTIC_TOL),
        (SlicedScoreMatching(2, variance_reduced=False, projection="rademacher"), STOCHASTIC_TOL),
    ],
    ids=["exact", "hutchinson", "sliced-vr", "sliced"],
)
def test_recovers_mle(setup, spec, tol):
    em, data, mean, cov = setup
    mu, prec = _train(em, spec.build(em), data)
    np.testing.assert_allclose(mu, mean, atol=tol)
    np.testing.assert_allclose(prec, jnp.linalg.inv(cov), atol=tol)


def test_denoising_recovers_smoothed_precision(setup):
    em, data, mean, cov = setup
    mu, prec = _train(em, DenoisingScoreMatching(SIGMA).build(em), data)
    smoothed = jnp.linalg.inv(cov + SIGMA**2 * jnp.eye(3))
    np.testing.assert_allclose(mu, mean, atol=STOCHASTIC_TOL)
    np.testing.assert_allclose(prec, smoothed, atol=STOCHASTIC_TOL)
    # the known bias is resolved: far from the unsmoothed S⁻¹
    assert float(jnp.max(jnp.abs(prec - jnp.linalg.inv(cov)))) > 10 * STOCHASTIC_TOL


def test_exact_matches_hutchinson_in_expectation(setup):
    em, data, _, _ = setup
    params = {
        "mu": jnp.zeros(3),
        "prec": jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]]),
    }
    batch = {"x": data[:20]}
    exact = ScoreMatching().build(em)
    hutch = ScoreMatching(hessian_trace="hutchinson", num_probes=200).build(em)
    ve, _ = jax.jit(exact.loss)(params, (), batch, jax.random.PRNGKey(0))
    vh, _ = jax.jit(hutch.loss)(params, (), batch, jax.random.PRNGKey(0))
    # E = ½xᵀPx: tr ∇²E = tr P exactly; Rademacher probes' error on 20 × 200 probes has sd ~0.01
    np.testing.assert_allclose(ve, vh, atol=0.05)


def test_annealing_schedule(setup):
    em, data, _, _ = setup
    obj = DenoisingScoreMatching((1.0, 0.5, 0.1), num_steps=6).build(em)
    batch = {"x": data[:8]}
    params = em.init_params(jax.random.PRNGKey(0))
    state = obj.init(None, params, batch)
    loss = jax.jit(obj.loss)
    seen = []
    for i in range(8):
        _, (state, metrics) = loss(params, state, batch, jax.random.PRNGKey(i))
        seen.append(round(float(metrics["sigma"]), 3))
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1]
    # fit's num_steps is used when the objective has none
    obj2 = DenoisingScoreMatching((1.0, 0.1)).build(em, num_steps=2)
    state = obj2.init(None, {}, batch)
    loss2 = jax.jit(obj2.loss)
    _, (state, m0) = loss2(params, state, batch, jax.random.PRNGKey(0))
    _, (state, m1) = loss2(params, state, batch, jax.random.PRNGKey(0))
    assert (float(m0["sigma"]), round(float(m1["sigma"]), 3)) == (1.0, 0.1)


def _bits_model():
    x = numpyro.sample("x", ebm.Bits(3))
    ebm.energy("E", jnp.sum(x))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DenoisingScoreMatching(0.0), "sigma must be > 0"),
        (lambda: DenoisingScoreMatching(-1.0), "sigma must be > 0"),
        (lambda: DenoisingScoreMatching((0.1, 0.5)), "strictly decreasing"),
        (lambda: DenoisingScoreMatching(()), "non-empty"),
        (lambda: SlicedScoreMatching(0), "num_projections must be an integer >= 1"),
        (lambda: SlicedScoreMatching(2, projection="uniform"), "projection must be"),
        (lambda: ScoreMatching(hessian_trace="lanczos"), "hessian_trace must be"),
        (lambda: ScoreMatching(hessian_trace="hutchinson", num_probes=0), "num_probes"),
    ],
)
def test_bad_configuration(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "spec", [ScoreMatching(), DenoisingScoreMatching(0.1), SlicedScoreMatching()]
)
def test_discrete_site_rejected(spec):
    with pytest.raises(ValueError, match="site 'x' is discrete"):
        spec.build(ebm.EnergyModel(_bits_model))


def test_annealing_needs_num_steps(setup):
    em = setup[0]
    with pytest.raises(ValueError, match="num_steps is needed"):
        DenoisingScoreMatching((1.0, 0.1)).build(em)


def test_batch_missing_site(setup):
    em = setup[0]
    obj = ScoreMatching().build(em)
    with pytest.raises(ValueError, match="missing state site"):
        obj.init(None, {}, {"y": jnp.zeros((4, 3))})
