"""models.dbn and models.dbm against brute-force enumeration of tiny networks."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ebm_ppl.models import dbm, dbn, rbm

import ebm_ppl as ebm
from tests.helpers.stats import assert_within_mcse


def _states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)), np.float64)


def _random_dbm(seed, nv=5, n1=3, n2=2, scale=1.0):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    return {
        "W1": scale * jax.random.normal(k[0], (nv, n1)),
        "W2": scale * jax.random.normal(k[1], (n1, n2)),
        "b": 0.5 * jax.random.normal(k[2], (nv,)),
        "c1": 0.5 * jax.random.normal(k[3], (n1,)),
        "c2": 0.5 * jax.random.normal(k[4], (n2,)),
    }


def _brute_dbm(p):
    nv, n1 = p["W1"].shape
    n2 = p["W2"].shape[1]
    s = _states(nv + n1 + n2)
    v, h1, h2 = s[:, :nv], s[:, nv : nv + n1], s[:, nv + n1 :]
    q = {k: np.asarray(a, np.float64) for k, a in p.items()}
    neg_e = (
        v @ q["b"]
        + h1 @ q["c1"]
        + h2 @ q["c2"]
        + np.einsum("ni,ij,nj->n", v, q["W1"], h1)
        + np.einsum("ni,ij,nj->n", h1, q["W2"], h2)
    )
    log_z = np.logaddexp.reduce(neg_e)
    return s, v, neg_e, log_z


def test_dbm_exact_functions_match_enumeration():
    p = _random_dbm(0)
    s, v, neg_e, log_z = _brute_dbm(p)
    assert float(dbm.log_partition(p)) == pytest.approx(log_z, abs=1e-4)
    vs = _states(5)
    f_brute = np.array([-np.logaddexp.reduce(neg_e[np.all(v == x, 1)]) for x in vs])
    np.testing.assert_allclose(dbm.free_energy(p, vs.astype(np.float32)), f_brute, atol=1e-4)
    # the mean-field bound is a bound, and the library's exact method reads the hook
    lb = dbm.lower_bound(p, vs.astype(np.float32), float(dbm.log_partition(p)))
    assert np.all(np.asarray(lb) <= -f_brute - log_z + 1e-4)
    exact = ebm.log_partition(dbm.model, p, method="exact", model_args=(5, 3, 2))
    assert exact.log_z == pytest.approx(log_z, abs=1e-4)


@pytest.mark.slow
def test_dbm_exact_samples_have_the_exact_means():
    p = _random_dbm(1)
    s, _, neg_e, log_z = _brute_dbm(p)
    truth = np.exp(neg_e - log_z) @ s
    draws = dbm.exact_samples(jax.random.PRNGKey(2), p, 8000)
    flat = np.concatenate([draws["v"], draws["h1"], draws["h2"]], 1).reshape(4, 2000, 10)
    assert_within_mcse(flat, truth, num_tests=3, name="E[v, h1, h2]")


@pytest.mark.slow
def test_dbm_ais_forward_and_reverse_bracket_the_exact_log_z():
    p = _random_dbm(3, nv=8, n1=4, n2=3)
    log_z = float(dbm.log_partition(p))
    args = dict(method="ais", model_args=(8, 4, 3), num_chains=200, num_temperatures=300)
    fwd = ebm.log_partition(dbm.model, p, rng_key=4, **args)
    rev = ebm.log_partition(dbm.model, p, rng_key=5, reverse=True, **args)
    for est in (fwd, rev):
        assert est.stderr > 0
        assert abs(est.log_z - log_z) < 4.0 * est.stderr + 0.02, (est.method, est.log_z, log_z)


def _random_stack(seed, sizes=(4, 3, 2)):
    layers = dbn.init_layers(jax.random.PRNGKey(seed), sizes, scale=1.0)
    k = jax.random.split(jax.random.PRNGKey(seed + 100), len(layers))
    return [
        {**l_, "b": 0.5 * jax.random.normal(kk, l_["b"].shape), "c": -0.3 * jnp.ones_like(l_["c"])}
        for l_, kk in zip(layers, k, strict=True)
    ]


def test_dbn_program_and_bounds_match_enumeration():
    layers = _random_stack(0)
    top = layers[-1]
    # the program is the DBN joint: normalized up to the top RBM's Z
    prog = ebm.log_partition(dbn.model, dbn.program_params(layers), model_args=((4, 3, 2),))
    assert prog.log_z == pytest.approx(float(rbm.log_partition(top)), abs=1e-4)
    # exact log p(v) = log Σ_h1 p(v | h1) p_top(h1)
    vs, h1s = _states(4), _states(3)
    lv = h1s @ np.asarray(layers[0]["W"]).T + np.asarray(layers[0]["b"])
    log_pv_h1 = vs @ lv.T - np.sum(np.logaddexp(0, lv), 1)  # (16, 8)
    log_top = -np.asarray(rbm.free_energy(top, h1s.astype(np.float32))) - float(
        rbm.log_partition(top)
    )
    exact = np.logaddexp.reduce(log_pv_h1 + log_top, axis=1)
    assert np.logaddexp.reduce(exact) == pytest.approx(0.0, abs=1e-5)
    b = dbn.lower_bound(jax.random.PRNGKey(1), layers, vs.astype(np.float32), num_samples=4000)
    assert np.all(np.asarray(b.elbo) <= exact + 0.02)
    assert np.all(np.asarray(b.iw_bound) >= np.asarray(b.elbo) - 1e-5)
    # exp(iw_bound) averages 4000 importance weights p(v, h)/q(h | v): close to p(v)
    np.testing.assert_allclose(b.iw_bound, exact, atol=0.1)
    assert abs(float(np.mean(b.iw_bound)) - float(np.mean(exact))) < 0.02
    # one layer: the bound is the exact RBM log-likelihood
    one = dbn.lower_bound(jax.random.PRNGKey(2), layers[:1], vs.astype(np.float32), num_samples=2)
    np.testing.assert_allclose(
        one.elbo,
        -rbm.free_energy(layers[0], vs.astype(np.float32)) - rbm.log_partition(layers[0]),
        atol=1e-5,
    )


def test_dbn_generate_and_greedy_shapes():
    layers = _random_stack(3)
    x = dbn.generate(jax.random.PRNGKey(0), layers, 7, num_gibbs=5)
    assert x.shape == (7, 4) and bool(jnp.all((x >= 0) & (x <= 1)))


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: dbn.check_layers(
                [
                    {"W": jnp.zeros((4, 3)), "b": jnp.zeros(4), "c": jnp.zeros(3)},
                    {"W": jnp.zeros((2, 2)), "b": jnp.zeros(2), "c": jnp.zeros(2)},
                ]
            ),
            r"layers\[1\]\['W'\] has 2 rows but layers\[0\] has 3 hidden units",
        ),
        (lambda: dbn.check_layers([]), "layers must be a non-empty list"),
        (lambda: dbn.init_layers(jax.random.PRNGKey(0), (4,)), "sizes must be at least two"),
        (lambda: dbn.fit_greedy(jax.random.PRNGKey(0), jnp.zeros((5, 4)), (0,)), "hidden must"),
        (
            lambda: dbn.lower_bound(jax.random.PRNGKey(0), _random_stack(0), jnp.zeros((2, 5))),
            r"v must have shape \(num_examples, 4\)",
        ),
        (lambda: dbm.from_stack(_random_stack(0, (4, 3))), "layers must be two RBMs"),
        (lambda: dbm.log_partition(_random_dbm(0, n1=21)), "enumerating more than 20"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
