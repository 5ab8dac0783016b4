"""``log Z`` by the stepping-stone estimator from non-reversible parallel tempering.

Along the tempered path ``π_β ∝ exp(-E_ref - β V)``, ``V = E - E_ref``
(:mod:`ebm_ppl.kernels.tempering`), with ``Z_β = ∫ exp(-E_ref - β V)``,

.. math::

    \\log \\frac{Z_1}{Z_0} = \\sum_{i=0}^{N-1} \\log \\frac{Z_{\\beta_{i+1}}}{Z_{\\beta_i}}
    = \\sum_i \\log \\mathbb E_{\\pi_{\\beta_i}}\\big[e^{-(\\beta_{i+1}-\\beta_i) V}\\big]
    = -\\sum_i \\log \\mathbb E_{\\pi_{\\beta_{i+1}}}\\big[e^{(\\beta_{i+1}-\\beta_i) V}\\big],

and ``Z_0`` is the reference's normalizer (1 for a normalized reference, ``2^n`` for the
counting measure of ``n`` spins or bits). The *forward* estimate averages the first form over
the draws of each temperature, the *backward* one the second; by Jensen the first is biased low
and the second high in log space, so their mean is reported, and both are kept in ``info``.
Each chain (its own replicas and its own adapted schedule) gives one estimate; the result is
their mean, with the standard error of that mean across chains.

Usage (a few seconds; ``tests/test_tempering_logz.py`` checks it against exact values)::

    est = ebm.log_partition(model, method="pt", num_chains=8, num_temperatures=8)
    est.log_z, est.stderr, est.info["global_barrier"]

References:
    Xie, Lewis, Fan, Kuo & Chen (2011), Improving marginal likelihood estimation for Bayesian
    phylogenetic model selection. Systematic Biology 60(2). Syed et al. (2022), JRSS B 84(2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.view import as_energy_model
from ebm_ppl.kernels import tempering
from ebm_ppl.kernels._random import as_key
from ebm_ppl.kernels.chains import map_chains
from ebm_ppl.kernels.resolve import resolve_kernel
from ebm_ppl.partition.base import LogZEstimate

__all__ = ["log_partition_pt", "stepping_stone"]


def stepping_stone(betas: Any, energy_gap: Any) -> tuple[jax.Array, jax.Array]:
    """Forward and backward stepping-stone estimates of ``log Z_1 - log Z_0`` for one chain.

    Args:
        betas: ``(T,)`` schedule of the draws.
        energy_gap: ``(num_draws, T)`` ``V = E - E_ref`` of the replica at each temperature.

    Returns:
        ``(forward, backward)`` scalars.

    Examples:
        >>> import jax.numpy as jnp
        >>> gap = jnp.zeros((10, 3)) + 2.0        # constant V: Z_1 / Z_0 = exp(-2)
        >>> [round(float(v), 5) for v in stepping_stone(jnp.array([0.0, 0.5, 1.0]), gap)]
        [-2.0, -2.0]
    """
    betas = jnp.asarray(betas)
    gap = jnp.asarray(energy_gap)
    n = gap.shape[0]
    dbeta = jnp.diff(betas)
    log_n = jnp.log(jnp.asarray(n, gap.dtype))
    forward = jnp.sum(logsumexp(-dbeta[None, :] * gap[:, :-1], axis=0) - log_n)
    backward = -jnp.sum(logsumexp(dbeta[None, :] * gap[:, 1:], axis=0) - log_n)
    return forward, backward


def log_partition_pt(
    model: Any,
    params: Mapping[str, Any] | None = None,
    *,
    rng_key: Any = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    kernel: Any = "auto",
    kernel_options: Mapping[str, Any] | None = None,
    reference: Any = None,
    num_temperatures: int = 8,
    betas: Any = None,
    num_chains: int = 8,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    step_size: float = 0.1,
    swap: str = "deo",
    num_local_steps: int = 1,
    chain_method: str = "vectorized",
) -> LogZEstimate:
    """``log Z`` by stepping stone over non-reversible PT (``log_partition(method="pt")``).

    Args:
        model: a NumPyro EBM program (or an :class:`ebm_ppl.EnergyModel`).
        params: model parameters.
        rng_key: PRNG key or int seed.
        model_args, model_kwargs: arguments of ``model``.
        kernel: the local kernel (``"auto"``: MALA on continuous states, block Gibbs on binary
            ones, a composite on mixed ones; see :func:`ebm_ppl.kernels.resolve.resolve_kernel`).
        kernel_options: options of the kernel.
        reference: the path's reference (required for ``Flat`` sites: a distribution, a dict
            site -> distribution, or ``"pilot"``, Gaussians fitted per chain to a pilot run;
            see :func:`ebm_ppl.kernels.tempering.reference_energy`).
        num_temperatures: replicas per chain (>= 2); or ``len(betas)``.
        betas: initial schedule (default equally spaced; adapted during warmup).
        num_chains: independent PT chains (>= 2 for a standard error).
        num_warmup: adaptation iterations (schedule rounds, step sizes).
        num_samples: iterations whose energies enter the estimate.
        step_size: initial step size of every temperature (Langevin kernels).
        swap: ``"deo"`` or ``"reversible"``.
        num_local_steps: kernel transitions between swaps.
        chain_method: ``"vectorized"``, ``"sequential"`` or ``"sharded"``.

    Returns:
        :class:`LogZEstimate` with ``method="pt"``; ``info`` holds ``forward``/``backward``
        (means over chains), ``per_chain`` estimates, ``log_z_reference``, ``betas``
        ``(num_chains, T)``, ``swap_acceptance`` ``(num_chains, T-1)``, ``global_barrier``
        (per chain) and ``round_trips`` (per chain, sampling phase).

    Raises:
        ValueError: bad options; an improper base without ``reference``; a discrete base
            whose normalizer is not known per unit.
    """
    em: EnergyModel = as_energy_model(model, tuple(model_args), dict(model_kwargs or {}))
    rng_key = as_key(rng_key, default=0)
    for name, value, low in (
        ("num_chains", num_chains, 1),
        ("num_warmup", num_warmup, 0),
        ("num_samples", num_samples, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if betas is not None:
        schedule = tempering.check_schedule(betas, "betas")
        num_temperatures = schedule.shape[0]
    num = tempering._check_num_temperatures(num_temperatures)
    init_betas = tempering.default_schedule(num) if betas is None else jnp.asarray(schedule)
    plan = em.plan
    sites = em.state_sites
    ref_fn, log_z_ref = tempering.reference_energy(plan, sites, reference)
    if log_z_ref is None:
        raise ValueError(
            "method='pt' needs the reference's normalizer: a discrete base measure here does "
            "not factorize over its units"
        )
    energy_fn = em.potential_fn(params)
    probe = None
    if em.discrete_sites:
        values = plan.to_kernel(em.init_values(jax.random.PRNGKey(0), 1))
        probe = (lambda pos: em.energy(params, pos), {n: v[0] for n, v in values.items()})
    sampler = resolve_kernel(
        kernel,
        plan=plan,
        purpose="train",
        step_size=step_size,
        kernel_options=kernel_options,
        affine=em.affine_sites if em.discrete_sites else None,
        probe=probe,
    )
    pt_kernel = tempering.build_kernel(
        sampler, num_warmup=num_warmup, swap=swap, num_local_steps=num_local_steps
    )
    k_init, k_run = jax.random.split(rng_key)
    starts = em.unconstrain(em.init_values(k_init, num_chains * num))
    starts = plan.to_kernel(starts)
    starts = {n: v.reshape(num_chains, num, *v.shape[1:]) for n, v in starts.items()}

    pilot = isinstance(reference, str)

    def run_chain(key, positions):
        rf = ref_fn
        if pilot:  # per chain, from its replicas' starts
            fitted = tempering.pilot_reference(
                jax.random.fold_in(key, 1),
                positions,
                energy_fn,
                sampler=sampler,
                plan=plan,
                sites=sites,
                step_size=step_size,
            )
            rf = tempering.reference_energy(plan, sites, fitted)[0]
        state = tempering.init(
            positions, energy_fn, rf, sampler=sampler, betas=init_betas, step_size=step_size
        )

        def warm(s, k):
            return pt_kernel(k, s, energy_fn, rf)[0], None

        def draw(s, k):
            s, info = pt_kernel(k, s, energy_fn, rf)
            return s, (s.energy - s.reference_energy, info.swap_acceptance)

        k_warm, k_draw = jax.random.split(key)
        if num_warmup:
            state, _ = jax.lax.scan(warm, state, jax.random.split(k_warm, num_warmup))
        state, (gap, swap_acc) = jax.lax.scan(draw, state, jax.random.split(k_draw, num_samples))
        forward, backward = stepping_stone(state.betas, gap)
        return forward, backward, state.betas, jnp.mean(swap_acc, axis=0), state.round_trips

    run = jax.jit(map_chains(run_chain, chain_method, in_axes=(0, 0)))
    keys = jax.random.split(k_run, num_chains)
    forward, backward, final_betas, swap_acc, trips = jax.device_get(run(keys, starts))
    forward = np.asarray(forward, np.float64) + log_z_ref
    backward = np.asarray(backward, np.float64) + log_z_ref
    per_chain = 0.5 * (forward + backward)
    log_z = float(np.mean(per_chain))
    stderr = float(np.std(per_chain, ddof=1) / np.sqrt(num_chains)) if num_chains > 1 else np.nan
    rejection = 1.0 - np.asarray(swap_acc, np.float64)
    info = {
        "forward": float(np.mean(forward)),
        "backward": float(np.mean(backward)),
        "per_chain": per_chain,
        "log_z_reference": float(log_z_ref),
        "betas": np.asarray(final_betas),
        "swap_acceptance": np.asarray(swap_acc),
        "global_barrier": rejection.sum(axis=-1),
        "round_trips": np.asarray(trips),
        "num_chains": int(num_chains),
        "num_samples": int(num_samples),
        "kernel": sampler.name,
    }
    return LogZEstimate(log_z, stderr, "pt", info)
