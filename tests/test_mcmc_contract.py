"""NumPyro's MCMC contract for every adapter: ``extra_fields``, divergence, traced constructors,
sample statistics of foreign kernels, and chain starts with a finite energy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from ebm_ppl.models import boltzmann, ising
from numpyro.infer import MCMC, NUTS, DiscreteGibbs, HMCGibbs

import ebm_ppl as ebm
from ebm_ppl.infer.discrete import BlockGibbs, GibbsWithGradients
from ebm_ppl.infer.langevin import MALA, SGLD, ULA
from ebm_ppl.infer.tempering import ParallelTempering
from ebm_ppl.kernels import gwg, mala, ula
from tests.kernel_registry import gaussian_model

NUM_CHAINS = 2
NUM_SAMPLES = 8
FIELDS = ("diverging", "potential_energy")

_DATA = jnp.linspace(-1.0, 1.0, 6)


def _sgld_potential(z, idx):
    return jnp.sum(0.5 * (z[None, :] - _DATA[idx, None]) ** 2)


def _sgld_energy(z):
    """The full energy SGLD sees when its minibatch is the whole data set."""
    return jnp.sum(0.5 * (z[None, :] - _DATA[:, None]) ** 2)


# name -> (kernel factory, model args, energy of one draw dict or None, init_params)
def _cases():
    em_gauss = ebm.EnergyModel(gaussian_model)
    em_ising = ebm.EnergyModel(ising.model, (3, 3))
    em_bm = ebm.EnergyModel(boltzmann.model, 5)
    bm_params = em_bm.init_params(jax.random.PRNGKey(0))  # what the adapter uses without params
    return {
        "ula": (
            lambda: ULA(gaussian_model, step_size=0.1),
            (),
            lambda d: em_gauss.energy({}, d),
            None,
        ),
        "mala": (
            lambda: MALA(gaussian_model, adapt_step_size=False, step_size=0.3),
            (),
            lambda d: em_gauss.energy({}, d),
            None,
        ),
        "sgld": (
            # full-batch minibatches: the reported estimate is the exact energy
            lambda: SGLD(potential_fn=_sgld_potential, data_size=6, batch_size=6, step_size=1e-2),
            (),
            None,
            jnp.zeros((NUM_CHAINS, 2)),
        ),
        "gibbs": (
            lambda: BlockGibbs(ising.model, conditionals="gradient"),
            ((3, 3),),
            lambda d: em_ising.energy({}, d),
            None,
        ),
        "gwg": (
            lambda: GibbsWithGradients(boltzmann.model),
            (5,),
            lambda d: em_bm.energy(bm_params, d),
            None,
        ),
        "pt-gibbs": (
            lambda: ParallelTempering(BlockGibbs(ising.model, conditionals="gradient"), 3),
            ((3, 3),),
            lambda d: em_ising.energy({}, d),
            None,
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
@pytest.mark.parametrize("name", list(CASES))
def test_extra_fields_diverging_and_potential_energy(name, chain_method):
    make, model_args, energy_of, init = CASES[name]
    mcmc = MCMC(
        make(),
        num_warmup=5,
        num_samples=NUM_SAMPLES,
        num_chains=NUM_CHAINS,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), *model_args, init_params=init, extra_fields=FIELDS)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    assert set(extra) == set(FIELDS)
    assert extra["diverging"].shape == (NUM_CHAINS, NUM_SAMPLES)
    assert extra["diverging"].dtype == jnp.bool_
    assert not bool(jnp.any(extra["diverging"])), "a well-posed problem has no divergences"
    pe = np.asarray(extra["potential_energy"])
    assert pe.shape == (NUM_CHAINS, NUM_SAMPLES)
    assert np.all(np.isfinite(pe))
    samples = mcmc.get_samples(group_by_chain=True)
    if energy_of is not None:
        # potential_energy is E at the draw (the unconstrained space = the state space here)
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), samples)
        want = jax.vmap(energy_of)(flat).reshape(NUM_CHAINS, NUM_SAMPLES)
        np.testing.assert_allclose(pe, np.asarray(want), rtol=1e-5, atol=1e-5)
    else:
        # SGLD reports the estimate at the point its last step started from: the previous draw
        want = jax.vmap(jax.vmap(_sgld_energy))(samples[:, :-1])
        np.testing.assert_allclose(pe[:, 1:], np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_cls", [MALA, ULA], ids=["mala", "ula"])
def test_huge_step_size_every_transition_divergent(kernel_cls):
    kwargs = {"adapt_step_size": False} if kernel_cls is MALA else {}
    kernel = kernel_cls(gaussian_model, step_size=1e6, **kwargs)
    mcmc = MCMC(
        kernel,
        num_warmup=0,
        num_samples=20,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(1), extra_fields=FIELDS)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    assert bool(jnp.all(extra["diverging"])), extra["diverging"]
    # and at a sane step size, none (the flag is not always on)
    kernel = kernel_cls(gaussian_model, step_size=0.05, **kwargs)
    mcmc = MCMC(
        kernel,
        num_warmup=0,
        num_samples=20,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(1), extra_fields=FIELDS)
    assert not bool(jnp.any(mcmc.get_extra_fields()["diverging"]))


def test_pure_kernels_divergence_is_energy_error_above_threshold():
    energy_fn = lambda x: 0.5 * jnp.sum(x**2)  # noqa: E731
    keys = jax.random.split(jax.random.PRNGKey(2), 20)
    for module, step in ((mala, 1e6), (ula, 1e6)):
        kernel = jax.jit(module.build_kernel(), static_argnums=2)
        state = module.init(jnp.ones(3), energy_fn)
        for k in keys:
            state, info = kernel(k, state, energy_fn, step)
            assert bool(info.is_divergent) and float(info.delta_energy) > 1000.0
        if module is mala:
            assert float(info.acceptance_rate) == 0.0 and not bool(info.is_accepted)
    # the threshold is the constructor's: with inf only non-finite proposals diverge
    kernel = mala.build_kernel(max_delta_energy=jnp.inf)
    state = mala.init(jnp.ones(3), energy_fn)
    _, info = kernel(keys[0], state, energy_fn, 1e6)
    assert not bool(info.is_divergent) and float(info.acceptance_rate) == 0.0
    with pytest.raises(ValueError, match="max_delta_energy"):
        mala.build_kernel(max_delta_energy=0.0)

    # GWG: a flip the gradient does not see (relu has zero slope at -1) that jumps by 1e4
    levels = {"s": (-1.0, 1.0)}
    cliff = lambda p: 1e4 * jax.nn.relu(p["s"][0])  # noqa: E731
    kernel = jax.jit(gwg.build_kernel(levels=levels), static_argnums=2)
    state = gwg.init({"s": -jnp.ones(4)}, cliff)
    infos = []
    for k in jax.random.split(jax.random.PRNGKey(3), 40):
        state, info = kernel(k, state, cliff)
        infos.append(info)
    div = np.array([bool(i.is_divergent) for i in infos])
    delta = np.array([float(i.delta_energy) for i in infos])
    acc = np.array([bool(i.is_accepted) for i in infos])
    assert div.any() and (~div).any()
    np.testing.assert_array_equal(div, delta > 1000.0)
    assert not (div & acc).any(), "a divergent flip must be rejected"
    assert float(state.position["s"][0]) == -1.0


def test_mala_mcmc_built_inside_jit():
    @jax.jit
    def run(key, step_size, target):
        kernel = MALA(gaussian_model, step_size=step_size, target_accept_prob=target)
        mcmc = MCMC(kernel, num_warmup=100, num_samples=20, progress_bar=False)
        mcmc.run(key, extra_fields=FIELDS)
        extra = mcmc.get_extra_fields()
        return mcmc.get_samples()["x"], extra, mcmc.last_state.adapt_state.step_size

    x, extra, step_low = run(jax.random.PRNGKey(0), 0.5, 0.3)
    assert x.shape == (20, 3) and bool(jnp.all(jnp.isfinite(x)))
    assert extra["diverging"].shape == (20,) and extra["potential_energy"].shape == (20,)
    _, _, step_high = run(jax.random.PRNGKey(0), 0.5, 0.9)
    # the traced target drives the adaptation: a lower target acceptance, a longer step
    assert float(step_low) > 2.0 * float(step_high)
    # concrete values are still validated
    with pytest.raises(ValueError, match="target_accept_prob"):
        MALA(gaussian_model, target_accept_prob=1.5)
    with pytest.raises(ValueError, match="max_delta_energy"):
        MALA(gaussian_model, max_delta_energy=-1.0)


# ----------------------------------------------------------------------------- foreign kernels
def mixed_model():
    """x | s ~ N(2s, 1), P(s = 1 | x) = sigmoid(2x - 2)."""
    s = numpyro.sample("s", ebm.Bits(()))
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 0.5 * (x - 2.0 * s) ** 2)


def _gibbs_s(rng_key, gibbs_sites, hmc_sites):
    logit = 2.0 * hmc_sites["x"] - 2.0
    return {"s": jax.random.bernoulli(rng_key, jax.nn.sigmoid(logit)).astype(jnp.float32)}


def _spin_chain():
    s = numpyro.sample("s", ebm.Spins((3,)))
    ebm.energy("E", -0.4 * jnp.sum(s[:-1] * s[1:]) - 0.2 * s[0])


def _check_energy_stat(idata, em):
    pe = idata.sample_stats["potential_energy"].values
    post = {k: idata.posterior[k].values for k in em.state_sites}
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in post.items()}
    want = np.asarray(em.batch_energy({}, flat)).reshape(pe.shape)
    np.testing.assert_allclose(pe, want, rtol=1e-5, atol=1e-5)


def test_sample_with_discrete_gibbs_reports_its_stats():
    idata = ebm.sample(
        _spin_chain,
        kernel=DiscreteGibbs(_spin_chain),
        num_chains=2,
        num_warmup=5,
        num_samples=20,
        progress=False,
    )
    # DiscreteGibbsState carries the potential energy only
    assert set(idata.sample_stats.data_vars) == {"potential_energy"}
    assert idata.sample_stats["potential_energy"].shape == (2, 20)
    _check_energy_stat(idata, ebm.EnergyModel(_spin_chain))


def test_sample_with_hmc_gibbs_reports_its_stats():
    kernel = HMCGibbs(NUTS(mixed_model), gibbs_fn=_gibbs_s, gibbs_sites=["s"])
    idata = ebm.sample(
        mixed_model, kernel=kernel, num_chains=2, num_warmup=50, num_samples=30, progress=False
    )
    # the statistics of its HMC block (NumPyro's hmc_state): exactly these, nothing claimed
    assert set(idata.sample_stats.data_vars) == {
        "potential_energy",
        "energy",
        "acceptance_rate",
        "diverging",
        "step_size",
        "n_steps",
    }
    assert idata.sample_stats["diverging"].dtype == bool
    _check_energy_stat(idata, ebm.EnergyModel(mixed_model))


# ----------------------------------------------------------------------------- chain starts
def walled_model():
    """A Gaussian whose energy is +inf on half of NumPyro's uniform init box."""
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", jnp.where(x[0] > 0.0, jnp.inf, 0.5 * jnp.sum(x**2)))


def walled_spins():
    """Spins with energy +inf when the first spin is up: half of the uniform starts."""
    s = numpyro.sample("s", ebm.Spins((4,)))
    ebm.energy("E", jnp.where(s[0] > 0, jnp.inf, -0.3 * jnp.sum(s[:-1] * s[1:])))


@pytest.mark.parametrize("name", ["sgld", "mala"])
def test_drawn_continuous_starts_have_finite_energy(name):
    make = {"sgld": lambda: SGLD(walled_model, step_size=1e-3), "mala": lambda: MALA(walled_model)}
    mcmc = MCMC(
        make[name](),
        num_warmup=0,
        num_samples=5,
        num_chains=8,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), extra_fields=FIELDS)
    x = mcmc.get_samples(group_by_chain=True)["x"]
    assert bool(jnp.all(x[..., 0] <= 0.0))
    assert bool(jnp.all(jnp.isfinite(mcmc.get_extra_fields()["potential_energy"])))
    idata = ebm.sample(
        walled_model, kernel=name, num_chains=8, num_warmup=0, num_samples=5, progress=False
    )
    assert np.all(idata.posterior["x"].values[..., 0] <= 0.0)
    assert np.all(np.isfinite(idata.sample_stats["potential_energy"].values))


@pytest.mark.parametrize("kernel_cls", [BlockGibbs, GibbsWithGradients], ids=["gibbs", "gwg"])
def test_drawn_discrete_starts_are_redrawn(kernel_cls):
    kernel = kernel_cls(walled_spins)
    state = kernel.init(jax.random.split(jax.random.PRNGKey(0), 8), 0, None, (), {})
    assert bool(jnp.all(jnp.isfinite(state.potential_energy)))
    assert bool(jnp.all(state.z["s"][:, 0] == -1.0))
    idata = ebm.sample(
        walled_spins,
        kernel={BlockGibbs: "gibbs", GibbsWithGradients: "gwg"}[kernel_cls],
        num_chains=8,
        num_warmup=0,
        num_samples=5,
        progress=False,
    )
    assert np.all(idata.posterior["s"].values[..., 0] == -1.0)


def test_user_starts_with_infinite_energy_name_the_chains():
    bad = jnp.array([[-1.0, 0.0], [1.0, 0.0], [-0.5, 0.3]])  # chain 1 is behind the wall
    potential = lambda z: jnp.where(z[0] > 0.0, jnp.inf, 0.5 * jnp.sum(z**2))  # noqa: E731
    mcmc = MCMC(
        MALA(potential_fn=potential),
        num_warmup=0,
        num_samples=2,
        num_chains=3,
        chain_method="vectorized",
        progress_bar=False,
    )
    with pytest.raises(ValueError, match=r"init_params give chain\(s\) \[1\]"):
        mcmc.run(jax.random.PRNGKey(0), init_params=bad)
    sgld = SGLD(
        potential_fn=lambda z, idx: jnp.sum(potential(z) + 0.0 * _DATA[idx]),
        data_size=6,
        batch_size=2,
    )
    mcmc = MCMC(
        sgld,
        num_warmup=0,
        num_samples=2,
        num_chains=3,
        chain_method="vectorized",
        progress_bar=False,
    )
    with pytest.raises(ValueError, match=r"init_params give chain\(s\) \[1\]"):
        mcmc.run(jax.random.PRNGKey(0), init_params=bad)
    with pytest.raises(ValueError, match="init_params give the chain a start"):
        MCMC(MALA(walled_model), num_warmup=0, num_samples=2, progress_bar=False).run(
            jax.random.PRNGKey(0), init_params={"x": jnp.array([2.0, 0.0])}
        )
    for kernel in ("sgld", "mala"):
        with pytest.raises(ValueError, match=r"init_values give chain\(s\) \[0, 2\]"):
            ebm.sample(
                walled_model,
                kernel=kernel,
                num_chains=3,
                num_warmup=0,
                num_samples=2,
                init_values={"x": jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.5, 0.5]])},
                progress=False,
            )
