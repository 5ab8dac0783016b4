"""ULA, MALA and SGLD (pure kernels and NumPyro adapters) against exact values.

Every statistical assertion goes through ``assert_within_mcse`` (gated on split R-hat < 1.01 and
bulk ESS >= 400, then |mean - truth| < z * MCSE with Bonferroni over ``NUM_TESTS``).
"""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, DiscreteGibbs, Gibbs

import ebm_ppl as ebm
from ebm_ppl.infer.langevin import MALA, SGLD, ULA
from ebm_ppl.kernels import adaptation, mala, sgld, ula
from tests import references as refs
from tests.helpers.stats import assert_within_mcse

# Statistical assertions in this module (each component of a vector statistic counts):
# MALA Gaussian 5 means + 15 covariances, ULA 2, MALA large step 1, double well 1, SGLD 2,
# Gibbs block 5.
NUM_TESTS = 31
DOUBLE_WELL_A2_EX2 = refs.DOUBLE_WELL_EX2_A2


def run_chains(
    kernel, rng_key, *, num_chains, num_warmup, num_samples, stat, model_args=(), init_params=None
):
    """Vectorized chains of a NumPyro adapter in one jitted scan; draws ``(chain, draw, ...)``."""
    keys = jax.random.split(rng_key, num_chains)
    state = kernel.init(keys, num_warmup, init_params, model_args, {})
    post = jax.vmap(kernel.postprocess_fn(model_args, {}))

    @jax.jit
    def run(state):
        def warm(s, _):
            return kernel.sample(s, model_args, {}), None

        state, _ = jax.lax.scan(warm, state, None, length=num_warmup)

        def body(s, _):
            s = kernel.sample(s, model_args, {})
            return s, (stat(post(s.z)), kernel.sample_stats(s))

        return jax.lax.scan(body, state, None, length=num_samples)

    state, (draws, stats) = run(state)
    swap = lambda x: np.asarray(jnp.swapaxes(x, 0, 1))
    return state, jax.tree.map(swap, draws), jax.tree.map(swap, stats)


# ----------------------------------------------------------------------------- MALA, Gaussian
MU5 = jnp.array([1.0, -1.0, 0.5, 0.0, 2.0])
SD5 = jnp.array([1.0, 0.8, 1.2, 1.0, 0.9])
COV5 = SD5[:, None] * SD5[None, :] * 0.5 ** jnp.abs(jnp.arange(5)[:, None] - jnp.arange(5))
PREC5 = jnp.linalg.inv(COV5)
IU = np.triu_indices(5)


def gaussian5_energy(z):
    d = z["x"] - MU5
    return 0.5 * d @ PREC5 @ d


@pytest.fixture(scope="module")
def mala_gaussian():
    kernel = MALA(potential_fn=gaussian5_energy, step_size=0.1)

    def stat(values):
        x = values["x"]
        d = x - MU5
        return jnp.concatenate([x, (d[:, :, None] * d[:, None, :])[:, IU[0], IU[1]]], axis=1)

    init = {"x": jax.random.normal(jax.random.PRNGKey(1), (8, 5))}
    return run_chains(
        kernel,
        jax.random.PRNGKey(0),
        num_chains=8,
        num_warmup=1000,
        num_samples=5000,
        stat=stat,
        init_params=init,
    )


def test_mala_correlated_gaussian_mean_and_covariance(mala_gaussian):
    _, draws, _ = mala_gaussian
    assert_within_mcse(draws[..., :5], MU5, num_tests=NUM_TESTS, name="mean")
    assert_within_mcse(draws[..., 5:], COV5[IU], num_tests=NUM_TESTS, name="cov")


def test_mala_adaptation_reaches_target_acceptance(mala_gaussian):
    state, _, stats = mala_gaussian
    acceptance = float(np.mean(stats["acceptance_rate"]))
    assert abs(acceptance - 0.574) < 0.05, acceptance
    # adapted per chain during warmup only: the step size is constant while sampling
    assert np.all(stats["step_size"] == stats["step_size"][:, :1])
    assert np.all(stats["step_size"] > 0.1)


# ---------------------------------------------------------------- ULA bias, MALA exactness
def iid4_energy(z):
    return 0.5 * jnp.sum(z**2)


def mean_square(z):
    return jnp.mean(z**2, axis=-1)  # averaging 4 iid coordinates of N(0, 1)


@pytest.mark.parametrize("step_size", [0.1, 0.4])
def test_ula_stationary_variance_is_biased(step_size):
    kernel = ULA(potential_fn=iid4_energy, step_size=step_size)
    _, draws, _ = run_chains(
        kernel,
        jax.random.PRNGKey(2),
        num_chains=8,
        num_warmup=200,
        num_samples=10000,
        stat=mean_square,
        init_params=jnp.zeros((8, 4)),
    )
    biased = 1.0 / (1.0 - step_size / 2.0)  # s^2 / (1 - eps / (2 s^2)), s = 1
    assert_within_mcse(draws, biased, num_tests=NUM_TESTS, name=f"ULA var eps={step_size}")
    assert abs(draws.mean() - biased) < abs(draws.mean() - 1.0)


def test_mala_unbiased_at_large_step():
    # ULA at this step has variance 1 / (1 - 0.75) = 4; MALA's correction removes the bias.
    kernel = MALA(potential_fn=iid4_energy, step_size=1.5, adapt_step_size=False)
    _, draws, stats = run_chains(
        kernel,
        jax.random.PRNGKey(3),
        num_chains=8,
        num_warmup=100,
        num_samples=8000,
        stat=mean_square,
        init_params=jnp.zeros((8, 4)),
    )
    assert 0.05 < stats["acceptance_rate"].mean() < 0.6
    assert_within_mcse(draws, 1.0, num_tests=NUM_TESTS, name="MALA var eps=1.5")


# ---------------------------------------------------------------- double well via sample
def double_well():
    a = numpyro.param("a", 1.0)
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", a * (x**2 - 1.0) ** 2)


def test_double_well_through_sample():
    init = {"x": jnp.array([-1.0, 1.0] * 4)}  # 8 chains, symmetric around the barrier
    idata = ebm.sample(
        double_well,
        params={"a": jnp.array(2.0)},
        kernel="mala",
        num_chains=8,
        num_warmup=500,
        num_samples=4000,
        init_values=init,
        progress=False,
        rng_key=jax.random.PRNGKey(4),
    )
    x = idata.posterior["x"].values
    assert_within_mcse(x**2, DOUBLE_WELL_A2_EX2, num_tests=NUM_TESTS, name="double well E[x^2]")
    stats = idata.sample_stats
    for name in ("potential_energy", "acceptance_rate", "diverging", "step_size"):
        assert stats[name].shape == (8, 4000), name
    assert "energy" not in stats  # the Hamiltonian only exists for HMC/NUTS
    np.testing.assert_allclose(
        stats["potential_energy"].values, 2.0 * (x**2 - 1.0) ** 2, rtol=1e-4, atol=1e-5
    )


# ----------------------------------------------------------------------------- SGLD
N_DATA, BATCH = 200, 20


def regression(x, y):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with numpyro.plate("data", x.shape[0], subsample_size=BATCH) as idx:
        numpyro.sample("y", dist.Normal(x[idx] @ w, 1.0), obs=y[idx])


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_DATA, 2)) * np.array([1.0, 0.7])
    y = x @ np.array([0.8, -0.5]) + rng.normal(size=N_DATA)
    precision = np.eye(2) + x.T @ x  # prior N(0, I), noise sd 1: conjugate posterior
    cov = np.linalg.inv(precision)
    mean = cov @ x.T @ y
    return (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)), mean, cov


def _sgld_run(args, step_size, key, num_samples=5000):
    kernel = SGLD(regression, step_size=step_size)
    return run_chains(
        kernel,
        key,
        num_chains=8,
        num_warmup=500,
        num_samples=num_samples,
        stat=lambda v: v["w"],
        model_args=args,
    )


def test_sgld_constant_step_gives_exact_posterior_mean(regression_data):
    args, mean, _ = regression_data
    _, draws, stats = _sgld_run(args, 1e-3, jax.random.PRNGKey(5))
    # the minibatch gradient of a linear score is unbiased, so the stationary mean is exact
    assert_within_mcse(draws, mean, num_tests=NUM_TESTS, name="SGLD posterior mean")
    assert np.all(stats["step_size"] == np.float32(1e-3))
    assert not stats["diverging"].any()


def test_sgld_schedule_values():
    sched = sgld.polynomial_schedule(0.1, 10.0, 0.55)
    t = jnp.arange(5)
    np.testing.assert_allclose(sched(t), 0.1 * (10.0 + np.arange(5)) ** -0.55, rtol=1e-6)
    kernel = SGLD(
        potential_fn=lambda z, idx: jnp.sum((z - idx) ** 2),
        data_size=10,
        batch_size=2,
        step_size=sched,
    )
    state = kernel.init(jax.random.PRNGKey(0), 0, jnp.zeros(()), (), {})
    for i in range(3):
        assert kernel.sample_stats(state)["step_size"] == pytest.approx(float(sched(i)))
        state = kernel.sample(state, (), {})


def test_sgld_decreasing_steps_shrink_variance_bias(regression_data):
    args, _, cov = regression_data
    big = 4e-3  # step * largest curvature ~ 0.8: a large discretization bias
    # eps_t = big * 2000 / (2000 + t): ~0.6 big over the first window, ~0.17 big over the last
    sched = sgld.polynomial_schedule(2000.0 * big, 2000.0, 1.0)
    _, draws, stats = _sgld_run(args, sched, jax.random.PRNGKey(6), num_samples=10000)
    assert np.all(np.diff(stats["step_size"], axis=1) < 0)
    var_early = draws[:, :2000].reshape(-1, 2).var(axis=0)
    var_late = draws[:, -2000:].reshape(-1, 2).var(axis=0)
    truth = np.diag(cov)
    assert np.all(var_early > 1.2 * truth), (var_early, truth)
    assert np.all(np.abs(var_late - truth) < 0.5 * (var_early - truth)), (
        var_late,
        var_early,
        truth,
    )


# ----------------------------------------------------------------------------- Gibbs block
PROBS = jnp.array([0.2, 0.5, 0.3])
MU3 = jnp.array([-1.0, 0.0, 1.5])
S3 = jnp.array([1.0, 0.6, 1.2])


def mixed():
    c = numpyro.sample("c", dist.Categorical(PROBS))
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 0.5 * ((x - MU3[c]) / S3[c]) ** 2)


def test_mala_block_next_to_discrete_gibbs_matches_enumeration():
    # exact: p(c, x) ∝ π_c exp(-(x - μ_c)² / 2s_c²)  =>  P(c) ∝ π_c s_c
    pc = np.asarray(PROBS * S3 / jnp.sum(PROBS * S3))
    ex = float(np.sum(pc * MU3))
    ex2 = float(np.sum(pc * (S3**2 + MU3**2)))
    kernel = Gibbs([(DiscreteGibbs(mixed), ["c"]), (MALA(mixed), ["x"])])
    mcmc = MCMC(
        kernel,
        num_warmup=500,
        num_samples=4000,
        num_chains=8,
        chain_method=jax.vmap,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(7))
    s = mcmc.get_samples(group_by_chain=True)
    c, x = np.asarray(s["c"]), np.asarray(s["x"])
    onehot = (c[..., None] == np.arange(3)).astype(float)
    assert_within_mcse(onehot, pc, num_tests=NUM_TESTS, name="P(c)")
    assert_within_mcse(x, ex, num_tests=NUM_TESTS, name="E[x]")
    assert_within_mcse(x**2, ex2, num_tests=NUM_TESTS, name="E[x^2]")


# ----------------------------------------------------------------------------- behaviour
def test_nonfinite_energy_is_a_rejection_through_the_adapter():
    energy = lambda z: jnp.where(z > 1.0, jnp.nan, 0.5 * z**2)
    kernel = MALA(potential_fn=energy, step_size=2.0, adapt_step_size=False)
    state = kernel.init(jax.random.PRNGKey(0), 0, jnp.array(0.9), (), {})
    step = jax.jit(lambda s: kernel.sample(s, (), {}))
    divergent = []
    for _ in range(30):
        state = step(state)
        divergent.append(bool(kernel.sample_stats(state)["diverging"]))
        assert np.isfinite(float(state.z)) and float(state.z) <= 1.0
    assert any(divergent)


def test_ula_clipping():
    kernel = ula.build_kernel(clip_grad_norm=1.0, clip_position=(-0.5, 0.5))
    energy_fn = lambda x: 1e4 * jnp.sum(x**2)
    state = ula.init(jnp.full(3, 0.4), energy_fn)
    state, _ = kernel(jax.random.PRNGKey(0), state, energy_fn, 1e-4)
    # clipped gradient moves at most eps * 1; clipped box holds the state
    assert float(jnp.max(jnp.abs(state.position - 0.4))) < 0.05
    assert bool(jnp.all(jnp.abs(state.position) <= 0.5))


def test_mala_pytree_and_mass_matrix_match_flat():
    energy_tree = lambda p: 0.5 * (jnp.sum(p["a"] ** 2) / 2.0 + p["b"] ** 2)
    energy_flat = lambda x: 0.5 * (jnp.sum(x[:2] ** 2) / 2.0 + x[2] ** 2)
    imm = jnp.array([2.0, 2.0, 1.0])
    kernel = mala.build_kernel()
    key = jax.random.PRNGKey(0)
    tree = {"a": jnp.array([0.3, -0.1]), "b": jnp.array(0.2)}
    s_tree, i_tree = kernel(key, mala.init(tree, energy_tree), energy_tree, 0.4, imm)
    s_flat, i_flat = kernel(
        key, mala.init(jnp.array([0.3, -0.1, 0.2]), energy_flat), energy_flat, 0.4, imm
    )
    flat_tree = jnp.concatenate([s_tree.position["a"], s_tree.position["b"][None]])
    np.testing.assert_allclose(flat_tree, s_flat.position, rtol=1e-6)
    assert float(i_tree.acceptance_rate) == pytest.approx(float(i_flat.acceptance_rate), rel=1e-5)


def test_diagnostics_string():
    kernel = MALA(potential_fn=iid4_energy, step_size=0.3)
    state = kernel.init(jax.random.PRNGKey(0), 5, jnp.zeros(4), (), {})
    text = kernel.get_diagnostics_str(kernel.sample(state, (), {}))
    assert text.startswith("step size ") and "acc. prob=" in text


def test_warmup_is_gated_by_the_counter():
    kernel = MALA(potential_fn=iid4_energy, step_size=0.3)
    state = kernel.init(jax.random.PRNGKey(0), 20, jnp.zeros(4), (), {})
    step = jax.jit(lambda s: kernel.sample(s, (), {}))
    sizes = []
    for _ in range(30):
        state = step(state)
        sizes.append(float(state.adapt_state.step_size))
    assert len(set(sizes[:20])) > 1, "warmup adapts"
    assert len(set(sizes[19:])) == 1, "no adaptation after warmup (or in a continued state)"
    assert int(state.i) == 30


def test_adaptation_schedule_matches_stan_windows():
    slow, end = adaptation.build_schedule(1000)
    assert np.flatnonzero(end).tolist() == [99, 149, 249, 449, 949]
    assert not slow[:75].any() and not slow[950:].any() and slow[75:950].all()


def test_mass_matrix_adaptation_learns_scales():
    scales = jnp.array([0.1, 1.0, 10.0])
    kernel = MALA(
        potential_fn=lambda z: 0.5 * jnp.sum((z / scales) ** 2),
        step_size=0.01,
        adapt_mass_matrix=True,
    )
    state = kernel.init(jax.random.PRNGKey(0), 1000, jnp.zeros(3), (), {})
    run = jax.jit(lambda s: jax.lax.fori_loop(0, 1000, lambda _, x: kernel.sample(x, (), {}), s))
    state = run(state)
    ratio = np.asarray(state.adapt_state.inverse_mass_matrix) / np.asarray(scales**2)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_kernel_pickles_and_reinitializes():
    kernel = MALA(double_well, params={"a": jnp.array(2.0)})
    kernel.init(jax.random.PRNGKey(0), 10, None, (), {})
    clone = pickle.loads(pickle.dumps(kernel))
    assert clone._sample_fn is None  # MCMC re-runs init for a kernel without closures
    state = clone.init(jax.random.PRNGKey(0), 10, None, (), {})
    assert np.isfinite(float(clone.sample(state, (), {}).kernel_state.energy))


def test_registered_names():
    from ebm_ppl.infer.registry import available_kernels, get_kernel_factory

    assert {"mala", "ula", "sgld"} <= set(available_kernels())
    assert isinstance(get_kernel_factory("mala")(double_well, {}), MALA)
    assert isinstance(get_kernel_factory("ula")(double_well, {}), ULA)
    assert isinstance(get_kernel_factory("sgld")(double_well, {}), SGLD)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: MALA(double_well, step_size=0.0), ValueError, "step_size"),
        (lambda: ULA(double_well, step_size=-1.0), ValueError, "step_size"),
        (lambda: SGLD(double_well, step_size=float("nan")), ValueError, "step_size"),
        (lambda: MALA(), ValueError, "model and potential_fn.*neither"),
        (
            lambda: MALA(double_well, potential_fn=iid4_energy),
            ValueError,
            "model and potential_fn.*both",
        ),
        (lambda: ULA(double_well, adapt_step_size=True), ValueError, "adapt_step_size"),
        (lambda: SGLD(potential_fn=lambda z, i: z, batch_size=2), ValueError, "data_size"),
        (
            lambda: SGLD(potential_fn=lambda z, i: z, data_size=2, batch_size=3),
            ValueError,
            "batch_size",
        ),
        (lambda: MALA(double_well, target_accept_prob=1.5), ValueError, "target_accept_prob"),
        (
            lambda: MALA(double_well, inverse_mass_matrix=jnp.ones((2, 2))),
            ValueError,
            "inverse_mass_matrix",
        ),
        (
            lambda: MALA(double_well, inverse_mass_matrix=jnp.array([1.0, -1.0])),
            ValueError,
            "positive",
        ),
        (lambda: MALA(double_well, params=[1.0]), TypeError, "params"),
        (lambda: ula.build_kernel(clip_position=(1.0, 0.0)), ValueError, "clip_position"),
        (lambda: sgld.polynomial_schedule(-1.0), ValueError, "a must be"),
        (lambda: sgld.build_kernel(data_size=0), ValueError, "data_size"),
    ],
)
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_arguments_at_init_and_step():
    energy_fn = lambda x: jnp.sum(x**2)
    state = mala.init(jnp.zeros(3), energy_fn)
    kernel = mala.build_kernel()
    with pytest.raises(ValueError, match="step_size"):
        kernel(jax.random.PRNGKey(0), state, energy_fn, -0.1)
    with pytest.raises(ValueError, match=r"inverse_mass_matrix.*\(3,\)"):
        kernel(jax.random.PRNGKey(0), state, energy_fn, 0.1, jnp.ones(4))
    with pytest.raises(ValueError, match=r"inverse_mass_matrix.*\(3,\)"):
        MALA(potential_fn=energy_fn, inverse_mass_matrix=jnp.ones(2)).init(
            jax.random.PRNGKey(0), 0, jnp.zeros(3), (), {}
        )
    with pytest.raises(ValueError, match="init_params"):
        MALA(potential_fn=energy_fn).init(jax.random.PRNGKey(0), 0, None, (), {})
