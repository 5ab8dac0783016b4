"""Maximum-entropy generators (ebm_ppl.models.meg): the flow's entropy, the latent-space target,
latent MALA against a closed form, a short fit, and the example's tiny mode."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ebm_ppl.models import meg
from ebm_ppl.models.neural import mlp_energy

import ebm_ppl as ebm
from ebm_ppl.data import toy_data, toy_log_density
from ebm_ppl.partition.quadrature import compare_on_grid
from tests.helpers.examples import run_example
from tests.helpers.stats import assert_within_mcse

ROOT = Path(__file__).resolve().parents[1]

# One compiled program per helper (eager op-by-op dispatch of the flow costs more to compile).
_forward = jax.jit(meg.forward)
_jacobian = jax.jit(jax.vmap(jax.jacfwd(lambda g, z: meg.forward(g, z)[0], argnums=1), (None, 0)))


def _randomized(gen, key, scale=0.5):
    """The generator with every weight and bias drawn at random (a nonlinear bijection)."""
    leaves, treedef = jax.tree.flatten(gen)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )


def _affine(key, dim=2):
    """A generator whose couplings have zero weights: ``G(z) = A z + t`` with A diagonal."""
    gen = _randomized(meg.init_generator(key, dim, hidden=4, num_layers=3), key)
    for layer in gen["couplings"]:
        layer["W1"] = jnp.zeros_like(layer["W1"])
    return gen


def test_entropy_of_an_affine_generator_is_the_gaussian_closed_form():
    gen = _affine(jax.random.PRNGKey(0), dim=3)
    jac = _jacobian(gen, jnp.zeros((1, 3)))[0]
    cov = jac @ jac.T
    closed = 0.5 * math.log(np.linalg.det(2 * math.pi * math.e * np.asarray(cov, np.float64)))
    est = float(jax.jit(meg.entropy, static_argnums=2)(jax.random.PRNGKey(1), gen, 64))
    assert abs(est - closed) < 1e-4, (est, closed)
    # the draws have that covariance (a distribution check, not only the formula)
    x = np.asarray(jax.jit(meg.generate, static_argnums=2)(jax.random.PRNGKey(2), gen, 20000))
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.05 * float(np.max(np.diag(cov))))


def test_log_det_is_the_jacobian_of_the_nonlinear_flow():
    gen = _randomized(meg.init_generator(jax.random.PRNGKey(3), 2, hidden=8), jax.random.PRNGKey(4))
    z = jax.random.normal(jax.random.PRNGKey(5), (5, 2))
    _, log_det = _forward(gen, z)
    jac = _jacobian(gen, z)
    np.testing.assert_allclose(log_det, jnp.linalg.slogdet(jac)[1], rtol=1e-4, atol=1e-4)


def test_latent_target_is_the_pulled_back_energy():
    gen = _randomized(meg.init_generator(jax.random.PRNGKey(6), 2, hidden=8), jax.random.PRNGKey(7))
    em = ebm.EnergyModel(mlp_energy, 2, (8,))
    params = em.init_params(jax.random.PRNGKey(8))
    energy_fn = lambda x: em.energy(params, {"x": x})  # noqa: E731

    @jax.jit
    def check(z):
        x, log_det = meg.forward(gen, z)
        jac = jax.jacfwd(lambda w: meg.forward(gen, w)[0])(z)
        pulled = lambda w, exact: meg.latent_energy(energy_fn, gen, w, exact=exact)  # noqa: E731
        return {
            "u": (pulled(z, False), energy_fn(x) + 0.5 * jnp.sum(z**2)),
            "u_exact": (pulled(z, True), energy_fn(x) - log_det),
            # chain rule: ∇U = Jᵀ∇E(G(z)) + z, and Jᵀ∇E(G(z)) − ∇log|det J| when exact
            "grad": (jax.grad(pulled)(z, False), jac.T @ jax.grad(energy_fn)(x) + z),
            "grad_exact": (
                jax.grad(pulled)(z, True),
                jac.T @ jax.grad(energy_fn)(x) - jax.grad(lambda w: meg.forward(gen, w)[1])(z),
            ),
        }

    for name, (got, want) in check(jnp.array([0.3, -0.7])).items():
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_latent_mala_samples_the_closed_form_targets():
    """G(z) = a z + t and E(x) = |x − μ|²/2: the latent target pushed forward is
    N((a²μ + t)/(1 + a²), a²/(1 + a²)) per coordinate; with ``exact`` it is p_θ = N(μ, 1)."""
    gen = _affine(jax.random.PRNGKey(9))
    a = np.asarray(jnp.diag(_jacobian(gen, jnp.zeros((1, 2)))[0]))
    t = np.asarray(_forward(gen, jnp.zeros(2))[0])
    mu = np.array([1.0, -0.5])
    energy_fn = lambda x: 0.5 * jnp.sum((x - mu) ** 2)  # noqa: E731
    tests = 4
    for exact, mean, var in (
        (False, (a**2 * mu + t) / (1 + a**2), a**2 / (1 + a**2)),
        (True, mu, np.ones(2)),
    ):
        x, acc = meg.sample_latent(
            jax.random.PRNGKey(10),
            energy_fn,
            gen,
            num_chains=2000,
            num_steps=150,
            step_size=0.2,
            exact=exact,
        )
        assert 0.5 < float(acc) <= 1.0
        x = np.asarray(x).reshape(4, 500, 2)  # independent final states of 2000 chains
        for i in range(2):
            assert_within_mcse(x[..., i], mean[i], num_tests=tests, name=f"mean x{i}")
            assert_within_mcse(
                (x[..., i] - mean[i]) ** 2, var[i], num_tests=tests, name=f"var x{i}"
            )


def test_bad_arguments():
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        meg.init_generator(jax.random.PRNGKey(0), 1)
    with pytest.raises(ValueError, match="generator_steps"):
        meg.MEG(2, generator_steps=0)
    with pytest.raises(ValueError, match="entropy_weight"):
        meg.MEG(2, entropy_weight=-1.0)
    with pytest.raises(ValueError, match="step_size"):
        meg.sample_latent(
            jax.random.PRNGKey(0),
            jnp.sum,
            meg.init_generator(jax.random.PRNGKey(0), 2),
            step_size=0.0,
        )
    em = ebm.EnergyModel(mlp_energy, 3, (4,))
    with pytest.raises(ValueError, match=r"MEG\(dim=2\) needs a data site of shape \(2,\)"):
        meg.MEG(2).build(em, data_sites=("x",), batch_size=8)


@pytest.mark.slow
def test_short_meg_fit_lowers_kl():
    """40 updates on 8 gaussians: KL(true ‖ model) by quadrature falls to under half of the
    random start's."""
    data = toy_data("8gaussians", jax.random.PRNGKey(0), 4096)
    em = ebm.EnergyModel(mlp_energy, 2, (16,))
    params0 = em.init_params(jax.random.PRNGKey(1))
    objective = meg.MEG(
        2,
        hidden=8,
        num_layers=2,
        scale=2.0,
        generator_optimizer=optax.adam(3e-3),
        generator_steps=3,
    )
    result = ebm.fit(
        em,
        data,
        objective=objective,
        optimizer=optax.adam(1e-2),
        num_steps=40,
        batch_size=256,
        rng_key=jax.random.PRNGKey(2),
        init_params=params0,
        progress=False,
        log_every=10,
    )
    ref = lambda x: toy_log_density("8gaussians", x)  # noqa: E731
    kl = [
        compare_on_grid(em, p, ref, box=5.0, num_points=41)["kl"] for p in (params0, result.params)
    ]
    assert kl[1] < 0.5 * kl[0], kl
    assert np.all(np.isfinite(result.history["generator_loss"]))


def test_example_tiny_mode(tmp_path, capsys, monkeypatch):
    out = tmp_path / "meg.png"
    stdout, _ = run_example(
        "meg_toy2d.py",
        *("--dataset", "8gaussians", "--steps", "5", "--hidden", "8"),
        *("--generator-hidden", "4", "--generator-layers", "2", "--batch-size", "64"),
        *("--num-train", "512", "--num-test", "64", "--num-samples", "32", "--mala-steps", "3"),
        *("--grid-points", "21", "--plot", out),
        capsys=capsys,
        monkeypatch=monkeypatch,
        cwd=tmp_path,
    )
    assert "8gaussians   meg  KL(true ‖ model)" in stdout
    assert "8gaussians   pcd  KL(true ‖ model)" in stdout
    assert out.stat().st_size > 0
