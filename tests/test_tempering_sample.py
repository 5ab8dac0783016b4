"""``sample(tempering=...)`` and ``log_partition(method="pt")`` on multimodal models with exact
answers: a double well MALA does not cross, a mixture of two unequal Gaussians, the 4x4 Ising
torus below its critical temperature, a q = 10 Potts torus below its (first-order) transition;
tempering over the composite kernel of a mixed model."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from ebm_ppl.models import ising, potts
from jax.scipy.special import logsumexp
from scipy import integrate

import ebm_ppl as ebm
from tests.helpers.stats import assert_within_mcse, mixing

matplotlib.use("Agg")

# statistical assertions in this module (Bonferroni)
NUM_TESTS = 8


# ------------------------------------------------------------------------------ double well
def double_well():
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 8.0 * (x**2 - 1.0) ** 2)  # barrier of 8 nats between x = -1 and x = 1


RUN = dict(num_chains=8, num_warmup=500, num_samples=1500, progress=False, rng_key=3)


@pytest.fixture(scope="module")
def double_well_pt():
    return ebm.sample(
        double_well, tempering={"num_temperatures": 6, "reference": dist.Normal(0.0, 1.5)}, **RUN
    )


def test_double_well_pt_crosses_where_mala_does_not(double_well_pt):
    pt = (double_well_pt.posterior["x"].values > 0).astype(float)
    assert_within_mcse(pt, 0.5, name="PT P(x > 0)", num_tests=NUM_TESTS)
    mala = ebm.sample(double_well, kernel="mala", **RUN)
    right = (mala.posterior["x"].values > 0).astype(float)
    # MALA alone stays in the well it starts in: the same gate fails
    with pytest.raises(AssertionError, match="R-hat"):
        assert_within_mcse(right, 0.5, name="MALA P(x > 0)")
    assert mixing(right)[0] > 1.1


def test_tempering_diagnostics(double_well_pt):
    idata = double_well_pt
    report = ebm.diagnostics.tempering_report(idata)
    acc = idata.sample_stats["swap_acceptance"].values
    assert acc.shape == (8, 1500, 5)
    # in float64, as the report computes it: a float32 mean of 1500 draws errs by ~1e-7
    acc64 = acc.astype(np.float64)
    np.testing.assert_allclose(report.global_barrier, (1.0 - acc64.mean(axis=1)).sum(-1).mean())
    assert report.betas[0] == 0.0 and report.betas[-1] == 1.0
    assert np.all(np.diff(report.betas) > 0)
    # every chain's replicas make round trips, at a rate of the order of the optimum
    assert np.all(report.round_trips > 10)
    assert 0.3 * report.optimal_rate < report.round_trip_rate < 1.2 * report.optimal_rate
    # replica indices are a permutation at every draw
    replica = idata.sample_stats["replica"].values
    assert np.all(np.sort(replica, axis=-1) == np.arange(6))
    text = str(ebm.diagnostics.mixing_report(idata))
    assert "global barrier Lambda" in text and "round-trip rate" in text
    fig = ebm.diagnostics.plot_tempering(idata)
    assert len(fig.axes) == 2


@pytest.mark.slow
def test_pilot_reference_double_well_and_log_z_by_quadrature():
    idata = ebm.sample(double_well, tempering={"num_temperatures": 6, "reference": "pilot"}, **RUN)
    right = (idata.posterior["x"].values > 0).astype(float)
    assert_within_mcse(right, 0.5, name="PT (pilot reference) P(x > 0)", num_tests=NUM_TESTS)
    est = ebm.log_partition(
        double_well,
        method="pt",
        reference="pilot",
        num_chains=16,
        num_temperatures=6,
        num_warmup=500,
        num_samples=1500,
        rng_key=4,
    )
    z, _ = integrate.quad(lambda x: math.exp(-8.0 * (x * x - 1.0) ** 2), -4.0, 4.0, epsabs=1e-13)
    assert abs(est.log_z - math.log(z)) < 3.0 * est.stderr, (est.log_z, est.stderr, math.log(z))


# ------------------------------------------------------------------------------ two Gaussians
MEANS = jnp.array([[-4.0, 0.0], [4.0, 0.0]])  # 8 standard deviations apart
LOG_WEIGHTS = jnp.log(jnp.array([0.25, 0.75]))


def mixture():
    x = numpyro.sample("x", ebm.Flat((2,)))
    # exp(-E) = 2π · (0.25 N(x; m0, I) + 0.75 N(x; m1, I)), so Z = 2π exactly
    ebm.energy("E", -logsumexp(LOG_WEIGHTS - 0.5 * jnp.sum((x - MEANS) ** 2, axis=-1)))


MIXTURE_REF = dist.Normal(0.0, 4.0).expand((2,)).to_event(1)


@pytest.mark.slow
def test_mixture_mode_weights():
    idata = ebm.sample(mixture, tempering={"num_temperatures": 8, "reference": MIXTURE_REF}, **RUN)
    right = (idata.posterior["x"].values[..., 0] > 0).astype(float)
    assert_within_mcse(right, 0.75, name="weight of the right mode", num_tests=NUM_TESTS)


@pytest.mark.slow
def test_mixture_stepping_stone_log_z():
    est = ebm.log_partition(
        mixture,
        method="pt",
        reference=MIXTURE_REF,
        num_chains=16,
        num_temperatures=8,
        num_warmup=500,
        num_samples=1500,
        rng_key=1,
    )
    truth = math.log(2.0 * math.pi)
    assert est.method == "pt" and est.stderr > 0
    assert abs(est.log_z - truth) < 3.0 * est.stderr, (est.log_z, est.stderr, truth)
    assert est.info["forward"] <= est.info["backward"] + 3.0 * est.stderr


# ------------------------------------------------------------------------------ Ising 4x4
T_ISING = 1.5
SHAPE = (4, 4)


def ising_exact():
    """``⟨E⟩`` (the model's energy, β H) and ``⟨m²⟩`` by enumerating the 2^16 states."""
    spins = np.array(list(itertools.product([-1.0, 1.0], repeat=16))).reshape(-1, 4, 4)
    h = -np.sum(spins * np.roll(spins, 1, axis=1) + spins * np.roll(spins, 1, axis=2), (1, 2))
    e = h / T_ISING
    w = np.exp(-(e - e.min()))
    w /= w.sum()
    m = spins.mean(axis=(1, 2))
    log_z = float(np.log(np.sum(np.exp(-(e - e.min())))) - e.min())
    return float(w @ e), float(w @ m**2), log_z


def test_ising_below_tc_pt_leaves_its_phase():
    kw = dict(
        model_args=(SHAPE,),
        model_kwargs={"beta": 1.0 / T_ISING},
        num_chains=8,
        num_warmup=300,
        num_samples=1500,
        init_values={"s": np.ones((8, *SHAPE))},  # ordered starts
        progress=False,
        rng_key=0,
    )
    pt = ebm.sample(ising.model, tempering=8, **kw)
    gibbs = ebm.sample(ising.model, kernel="gibbs", **kw)
    e_exact, m2_exact, _ = ising_exact()
    s = pt.posterior["s"].values
    assert_within_mcse(s.mean(axis=(2, 3)), 0.0, name="PT <m>", num_tests=NUM_TESTS)
    assert_within_mcse(
        pt.sample_stats["potential_energy"].values, e_exact, name="PT <E>", num_tests=NUM_TESTS
    )
    assert_within_mcse(s.mean(axis=(2, 3)) ** 2, m2_exact, name="PT <m^2>", num_tests=NUM_TESTS)
    # Gibbs chains started ordered stay in their phase (most of them, for the whole run): the
    # same gate fails
    m_gibbs = gibbs.posterior["s"].values.mean(axis=(2, 3))
    assert np.sum(m_gibbs.mean(axis=1) > 0.9) >= 4
    with pytest.raises(AssertionError):
        assert_within_mcse(m_gibbs, 0.0, name="Gibbs <m>")


@pytest.mark.slow
def test_ising_stepping_stone_log_z_exact():
    _, _, log_z = ising_exact()
    est = ebm.log_partition(
        ising.model,
        method="pt",
        model_args=(SHAPE,),
        model_kwargs={"beta": 1.0 / T_ISING},
        num_chains=16,
        num_temperatures=8,
        num_warmup=300,
        num_samples=1500,
        rng_key=2,
    )
    assert est.info["log_z_reference"] == pytest.approx(16 * math.log(2.0))
    assert abs(est.log_z - log_z) < 3.0 * est.stderr, (est.log_z, est.stderr, log_z)


# ------------------------------------------------------------------------------ other kernels
def mixed():
    s = numpyro.sample("s", ebm.Spins(2))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum((x - 2.0 * s) ** 2))


def test_tempering_wraps_the_composite_kernel():
    ref = dist.Normal(0.0, 3.0).expand((2,)).to_event(1)
    idata, state = ebm.sample(
        mixed,
        num_chains=2,
        num_warmup=60,
        num_samples=40,
        progress=False,
        tempering={"num_temperatures": 3, "reference": ref},
        return_state=True,
    )
    assert idata.posterior.attrs["kernel"] == "composite"
    assert idata.posterior["x"].shape == (2, 40, 2)
    assert set(np.unique(idata.posterior["s"].values)) <= {-1.0, 1.0}
    acc = idata.sample_stats["swap_acceptance"].values
    assert acc.shape == (2, 40, 2) and np.all((acc >= 0) & (acc <= 1))
    # the beta = 1 replica's cached energy is the model's at the draw
    em = ebm.EnergyModel(mixed)
    last = {n: idata.posterior[n].values[:, -1] for n in ("s", "x")}
    want = [float(em.energy({}, {n: v[c] for n, v in last.items()})) for c in range(2)]
    np.testing.assert_allclose(state.pt_state.energy[:, -1], want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ q = 10 Potts
@pytest.mark.slow
def test_potts_q10_below_transition_pt_matches_enumeration():
    """q = 10 Potts on a 2x3 torus at 0.8 T_c (first-order transition in the thermodynamic
    limit): PT from ordered starts gives the exact marginals and energy (10^6 states
    enumerated)."""

    q, shape = 10, (2, 3)
    beta = 1.0 / (0.8 * potts.critical_temperature(q))
    em = ebm.EnergyModel(potts.model, shape, q, beta=beta)
    states = np.array(list(itertools.product(range(q), repeat=6)), np.int32).reshape(-1, *shape)
    energies = np.asarray(jax.jit(lambda s: em.batch_energy({}, {"s": s}))(states), np.float64)
    w = np.exp(-(energies - energies.min()))
    w /= w.sum()
    e_exact = float(w @ energies)
    kw = dict(
        model_args=(shape, q),
        model_kwargs={"beta": beta},
        num_chains=8,
        num_warmup=200,
        num_samples=1000,
        init_values={"s": np.zeros((8, *shape), np.int32)},  # ordered starts
        progress=False,
        rng_key=0,
    )
    pt = ebm.sample(potts.model, tempering=8, **kw)
    s = pt.posterior["s"].values
    energy = pt.sample_stats["potential_energy"].values
    assert_within_mcse((s == 0).mean(axis=(2, 3)), 1.0 / q, name="PT P(s = 0)", num_tests=NUM_TESTS)
    assert_within_mcse(energy, e_exact, name="PT <E>", num_tests=NUM_TESTS)
    # (a lattice this small lets block Gibbs itself leave the ordered phase at 0.8 T_c; the
    # contrast with a local kernel is the Ising test's)
