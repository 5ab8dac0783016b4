"""ebm_ppl.apps: scores against closed forms, conditional draws against exact enumeration."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from ebm_ppl.models import rbm

import ebm_ppl as ebm
from ebm_ppl import apps
from tests.helpers.stats import assert_within_mcse

NUM_TESTS = 5  # statistical assertions in this module (Bonferroni)

P3 = {
    "W": jnp.array([[2.0, -1.0], [1.5, 0.5], [-1.0, 2.0]]),
    "b": jnp.array([-0.5, 0.2, 0.1]),
    "c": jnp.array([0.3, -0.4]),
}


def _states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)), np.float32)


def test_auroc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 40).astype(float)
    b = rng.integers(2, 8, 30).astype(float)
    pairs = (b[None, :] > a[:, None]).mean() + 0.5 * (b[None, :] == a[:, None]).mean()
    assert apps.auroc(a, b) == pytest.approx(pairs, abs=1e-12)
    assert apps.auroc(b, a) == pytest.approx(1.0 - pairs, abs=1e-12)


def test_expected_calibration_error_by_hand():
    # two bins: confidences 0.9 (3 right of 4) and 0.6 (1 of 2 right)
    logits = np.log(np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2, dtype=np.float64)).astype(
        np.float32
    )
    labels = np.array([0, 0, 0, 1, 0, 1])
    want = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * abs(0.5 - 0.6)
    assert apps.expected_calibration_error(logits, labels, num_bins=10) == pytest.approx(want, 1e-5)


def test_classifier_energy_reads_the_logit_scale_softmax_drops():
    logits = jnp.array([[1.0, 2.0, 3.0]])
    e = apps.classifier_energy(logits)
    assert float(e[0]) == pytest.approx(-float(jnp.log(jnp.sum(jnp.exp(logits)))), 1e-6)
    assert float(apps.classifier_energy(logits + 5.0)[0]) == pytest.approx(float(e[0]) - 5.0, 1e-5)
    assert apps.max_softmax_score(logits + 5.0) == pytest.approx(apps.max_softmax_score(logits))


def test_anomaly_scores_are_free_energies():
    v = jnp.asarray(_states(3))
    joint = apps.anomaly_scores(rbm.model, P3, v, site="v", model_args=(3, 2))
    np.testing.assert_allclose(joint, rbm.free_energy(P3, v), rtol=1e-5, atol=1e-5)
    marginal = apps.anomaly_scores(
        rbm.model, P3, v, model_args=(3, 2), model_kwargs={"marginalize_hidden": True}
    )
    np.testing.assert_allclose(marginal, rbm.free_energy(P3, v), rtol=1e-5, atol=1e-5)


def test_inpaint_draws_the_exact_conditional():
    # observe v0 = 1, v2 = 0; p(v1 | v0, v2) from free energies
    x = jnp.array([[1.0, 0.0, 0.0]])
    mask = jnp.array([[True, False, True]])
    f = rbm.free_energy(P3, jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    truth = float(jax.nn.sigmoid(f[0] - f[1]))
    out = apps.inpaint(
        0,
        rbm.model,
        P3,
        x,
        mask,
        site="v",
        num_chains=4,
        num_warmup=20,
        num_samples=500,
        model_args=(3, 2),
    )
    draws = np.asarray(out.samples[0]).reshape(4, 500, 3)
    assert np.all(draws[..., 0] == 1.0) and np.all(draws[..., 2] == 0.0)
    assert out.mean.shape == (1, 3) and out.acceptance_rate.shape == (1,)
    assert_within_mcse(draws[..., 1], truth, num_tests=NUM_TESTS, name="p(v1 | v0, v2)")


def _spin_chain():
    s = numpyro.sample("s", ebm.Spins(4))
    ebm.energy("E", -0.8 * jnp.sum(s[:-1] * s[1:]) - 0.2 * s[0])


def test_denoise_draws_the_exact_posterior():
    y = jnp.array([1.0, -1.0, 1.0, 1.0])
    p = 0.2
    states = 2.0 * _states(4) - 1.0
    prior = 0.8 * np.sum(states[:, :-1] * states[:, 1:], 1) + 0.2 * states[:, 0]
    loglik = np.sum(np.where(states == np.asarray(y), np.log(1 - p), np.log(p)), 1)
    w = np.exp(prior + loglik - np.max(prior + loglik))
    truth = (w / w.sum()) @ states
    out = apps.denoise(
        1, _spin_chain, {}, y, noise_scale=p, num_chains=4, num_warmup=20, num_samples=500
    )
    draws = np.asarray(out.samples[0]).reshape(4, 500, 4)
    assert_within_mcse(draws[..., :], truth, num_tests=NUM_TESTS, name="E[s | y]")


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: apps.classifier_energy(jnp.zeros(5)), ValueError, "logits must have shape"),
        (lambda: apps.classifier_energy(jnp.zeros((5, 1))), ValueError, "logits must have shape"),
        (
            lambda: apps.inpaint(
                0,
                rbm.model,
                P3,
                jnp.zeros((2, 3)),
                jnp.ones((2, 4), bool),
                site="v",
                model_args=(3, 2),
            ),
            ValueError,
            "mask must have the shape of x",
        ),
        (
            lambda: apps.inpaint(
                0, rbm.model, P3, jnp.zeros((2, 3)), jnp.ones((2, 3)), site="v", model_args=(3, 2)
            ),
            TypeError,
            "mask must be a boolean array",
        ),
        (
            lambda: apps.inpaint(
                0, rbm.model, P3, jnp.zeros((2, 3)), jnp.ones((2, 3), bool), model_args=(3, 2)
            ),
            ValueError,
            "site must name the state site",
        ),
        (
            lambda: apps.anomaly_scores(
                rbm.model, P3, jnp.zeros((2, 5)), site="v", model_args=(3, 2)
            ),
            ValueError,
            r"x must have shape \(num_examples, \*\(3,\)\)",
        ),
        (
            lambda: apps.denoise(0, _spin_chain, {}, jnp.ones(4), noise_scale=0.7),
            ValueError,
            "noise_scale must be a flip probability",
        ),
        (
            lambda: apps.denoise(0, _spin_chain, {}, jnp.ones(4), noise="gaussian"),
            ValueError,
            "needs a continuous site",
        ),
        (lambda: apps.auroc([], [1.0]), ValueError, "scores_in must be a non-empty"),
    ],
)
def test_bad_input_is_named(call, err, match):
    with pytest.raises(err, match=match):
        call()
