"""Non-reversible parallel tempering, the pure kernel: swaps, schedule adaptation, round trips
against the theory on a path whose barrier is known, and the checks of bad input."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import integrate
from scipy import stats as sps

import ebm_ppl as ebm
from ebm_ppl.infer import MALA, ParallelTempering
from ebm_ppl.kernels import tempering
from ebm_ppl.kernels.resolve import resolve_kernel

# Gaussian reference N(0, 1) -> Gaussian target N(M, S^2), one dimension.
M, S = 2.0, 0.5
NUM_TEMPS = 16
NUM_CHAINS = 32
NUM_WARMUP = 1000
NUM_ITERS = 4000


def target_energy(x):
    return 0.5 * jnp.sum((x - M) ** 2) / S**2


def reference_energy(x):
    return 0.5 * jnp.sum(x**2)


def barrier_truth() -> tuple[float, callable]:
    """``Λ = ∫ λ(β) dβ`` by quadrature of the closed-form local barrier (docs/tempering.md).

    ``V = E - E_ref = a x² + b x + c``; for ``X, X'`` iid ``π_β = N(μ, 1/p)``,
    ``V(X) - V(X') = (X - X')(a (X + X') + b)`` with ``X - X'`` and ``X + X'`` independent
    Gaussians, so ``λ(β) = ½ E|X - X'| · E|a (X + X') + b|`` (folded-normal means).
    """
    a = 0.5 * (1.0 / S**2 - 1.0)
    b = -M / S**2

    def folded_mean(mu, sd):
        return sd * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sd**2)) + mu * (
            1 - 2 * sps.norm.cdf(-mu / sd)
        )

    def local(beta):
        p = 1.0 + beta * (1.0 / S**2 - 1.0)
        mu = beta * M / S**2 / p
        sd = math.sqrt(2.0 / p)
        return 0.5 * folded_mean(0.0, sd) * folded_mean(2 * a * mu + b, abs(a) * sd)

    value, _ = integrate.quad(local, 0.0, 1.0, epsabs=1e-12, epsrel=1e-10)
    return value, local


class _ExactState(NamedTuple):
    position: jax.Array
    energy: jax.Array


class _ExactInfo(NamedTuple):
    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array


class ExactGaussian:
    """A local kernel drawing exactly from a 1-D Gaussian energy (curvature and minimum read
    off two gradients): the efficient local exploration the round-trip theory assumes."""

    uses_step_size = False
    name = "exact-gaussian"

    @staticmethod
    def init(position, energy_fn):
        return _ExactState(position, energy_fn(position))

    @staticmethod
    def step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None):
        grad = jax.grad(energy_fn)
        g0 = grad(jnp.zeros(()))
        precision = grad(jnp.ones(())) - g0
        x = -g0 / precision + jax.random.normal(rng_key) / jnp.sqrt(precision)
        one = jnp.ones(())
        return _ExactState(x, energy_fn(x)), _ExactInfo(one, jnp.array(True), jnp.array(False))


@pytest.fixture(scope="module")
def runs():
    """DEO and reversible swaps on the Gaussian path, 32 chains each, one compiled program."""
    sampler = ExactGaussian()

    def run(kernel, key):
        k0, k1, k2 = jax.random.split(key, 3)
        state = tempering.init(
            jax.random.normal(k0, (NUM_TEMPS,)),
            target_energy,
            reference_energy,
            sampler=sampler,
            betas=tempering.default_schedule(NUM_TEMPS),
        )

        def body(s, k):
            return kernel(k, s, target_energy, reference_energy)[0], None

        state, _ = jax.lax.scan(body, state, jax.random.split(k1, NUM_WARMUP))
        state, _ = jax.lax.scan(body, state, jax.random.split(k2, NUM_ITERS))
        return state

    kernels = {
        swap: tempering.build_kernel(sampler, num_warmup=NUM_WARMUP, swap=swap)
        for swap in tempering.SWAP_SCHEMES
    }

    @jax.jit
    def both(keys):
        return {s: jax.vmap(lambda k, s=s: run(kernels[s], k))(keys) for s in kernels}

    out = both(jax.random.split(jax.random.PRNGKey(0), NUM_CHAINS))
    return jax.device_get(out)


def test_barrier_and_round_trip_rate_match_theory(runs):
    truth, _ = barrier_truth()
    state = runs["deo"]
    rejection = state.rejection_sum / state.swap_count[:, None]  # sampling phase, per chain
    lam_hat = rejection.sum(axis=1)
    assert abs(lam_hat.mean() - truth) < 0.10 * truth, (lam_hat.mean(), truth)
    rate = state.round_trips.mean() / NUM_ITERS
    optimal = 1.0 / (2.0 + 2.0 * truth)
    assert abs(rate - optimal) < 0.20 * optimal, (rate, optimal)
    # the adapted schedule equalizes the rejection rates along the path
    pooled = rejection.mean(axis=0)
    assert pooled.max() / pooled.min() < 1.5, pooled
    # every chain's schedule runs from 0 to 1, increasing
    assert np.all(state.betas[:, 0] == 0.0) and np.all(state.betas[:, -1] == 1.0)
    assert np.all(np.diff(state.betas, axis=1) > 0)


def test_reversible_swaps_make_fewer_round_trips(runs):
    # reversible PT: rate ~ 1/(2N + 2 + 2 Σ r/(1-r)), several times below the DEO rate
    deo = runs["deo"].round_trips.mean()
    rev = runs["reversible"].round_trips.mean()
    assert rev < 0.5 * deo, (rev, deo)


def test_replicas_stay_a_permutation_and_swaps_preserve_energies(runs):
    state = runs["deo"]
    assert np.all(np.sort(state.replica, axis=1) == np.arange(NUM_TEMPS))
    x = np.asarray(state.states.position)
    want = 0.5 * (x - M) ** 2 / S**2
    np.testing.assert_allclose(state.energy, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.reference_energy, 0.5 * x**2, rtol=1e-5, atol=1e-5)


def test_target_replica_draws_the_target():
    """One chain of MALA-tempered replicas on the Gaussian path: the beta = 1 replica is N(M, S²)."""
    sampler = resolve_kernel("mala", step_size=0.3)
    kernel = tempering.build_kernel(sampler, num_warmup=200)

    def run(key):
        k0, k1 = jax.random.split(key)
        state = tempering.init(
            jnp.zeros((4, 1)),
            target_energy,
            reference_energy,
            sampler=sampler,
            betas=tempering.default_schedule(4),
            step_size=0.3,
        )

        def body(s, k):
            s, _ = kernel(k, s, target_energy, reference_energy)
            return s, s.position[0]

        return jax.lax.scan(body, state, jax.random.split(k1, 1200))[1][200:]

    draws = np.asarray(jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(1), 4)))
    from tests.helpers.stats import assert_within_mcse

    assert_within_mcse(draws, M, name="mean", num_tests=2)
    assert_within_mcse((draws - M) ** 2, S**2, name="variance", num_tests=2)


# ------------------------------------------------------------------------------ bad input
def flat_model():
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", jnp.sum(x**2))


def positive_model():
    x = numpyro.sample("x", ebm.Flat((2,), support=dist.constraints.positive))
    ebm.energy("E", jnp.sum(x))


@pytest.mark.parametrize(
    ("betas", "match"),
    [
        ([0.0, 0.6, 0.5, 1.0], "betas must be strictly increasing"),
        ([0.1, 0.5, 1.0], "betas must start at 0 and end at 1"),
        ([0.0, 0.5, 0.9], "betas must start at 0 and end at 1"),
        ([1.0], "betas must be a 1-D schedule of at least 2 values"),
        ([0.0, float("nan"), 1.0], "betas must be finite"),
    ],
)
def test_bad_schedule_is_named(betas, match):
    with pytest.raises(ValueError, match=match):
        tempering.check_schedule(betas)
    ref = dist.Normal(0.0, 1.0).expand((2,)).to_event(1)
    with pytest.raises(ValueError, match=match):
        ebm.sample(flat_model, tempering={"betas": betas, "reference": ref}, progress=False)


def test_fewer_than_two_temperatures():
    with pytest.raises(ValueError, match="num_temperatures must be >= 2"):
        tempering.default_schedule(1)
    with pytest.raises(ValueError, match="num_temperatures must be >= 2"):
        ParallelTempering(MALA(flat_model), num_temperatures=1)
    ref = dist.Normal(0.0, 1.0).expand((2,)).to_event(1)
    with pytest.raises(ValueError, match="num_temperatures must be >= 2"):
        ebm.sample(flat_model, tempering={"num_temperatures": 1, "reference": ref})


def test_improper_base_needs_a_reference():
    with pytest.raises(ValueError, match=r"reference: site 'x' has an improper base measure"):
        ebm.sample(flat_model, tempering=4, progress=False)
    with pytest.raises(ValueError, match=r"reference: site 'x' has an improper base measure"):
        ebm.log_partition(flat_model, method="pt")


@pytest.mark.parametrize(
    ("model", "reference", "match"),
    [
        (flat_model, dist.Normal(0.0, 1.0), r"reference\['x'\] must have batch_shape \+ event"),
        (
            flat_model,
            dist.Normal(0.0, 1.0).expand((3,)).to_event(1),
            r"batch_shape \+ event_shape = \(2,\)",
        ),
        (
            flat_model,
            dist.Exponential(1.0).expand((2,)).to_event(1),
            r"reference\['x'\] must have the site's support",
        ),
        (
            positive_model,
            dist.Normal(0.0, 1.0).expand((2,)).to_event(1),
            r"reference\['x'\] must have the site's support",
        ),
        (flat_model, {"y": dist.Normal(0.0, 1.0)}, "reference names 'y', which is not a state"),
    ],
)
def test_reference_with_wrong_support_or_shape(model, reference, match):
    with pytest.raises(ValueError, match=match):
        ebm.sample(model, tempering={"reference": reference}, progress=False)


def test_bad_tempering_options():
    ref = dist.Normal(0.0, 1.0).expand((2,)).to_event(1)
    with pytest.raises(ValueError, match="swap must be one of"):
        ebm.sample(flat_model, tempering={"reference": ref, "swap": "odd"})
    with pytest.raises(ValueError, match="unknown option"):
        ebm.sample(flat_model, tempering={"reference": ref, "temps": 3})
    with pytest.raises(TypeError, match="tempering must be an int"):
        ebm.sample(flat_model, tempering="yes")
    with pytest.raises(ValueError, match="kernel='nuts' cannot be tempered"):
        ebm.sample(flat_model, kernel="nuts", tempering={"reference": ref})
    with pytest.raises(TypeError, match="kernel must be a kernel adapter"):
        ParallelTempering("mala", num_temperatures=4)
    with pytest.raises(ValueError, match="num_local_steps must be"):
        tempering.build_kernel(resolve_kernel("mala"), num_local_steps=0)
