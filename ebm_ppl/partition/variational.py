"""Variational bounds on ``log Z``: the ELBO and the importance-weighted estimate.

For any distribution ``q`` over the state,

.. math::

    \\log Z = \\log \\mathbb E_q\\Bigl[\\frac{e^{-E(x)}}{q(x)}\\Bigr]
    \\;\\ge\\; \\mathbb E_q[-E(x)] + H(q) = \\mathrm{ELBO}(q),

with equality iff ``q = p``. ``method="elbo"`` fits ``q`` by maximizing the ELBO with
``numpyro.infer.SVI`` (the EBM program *is* the NumPyro model: its ``factor`` sites carry
``-E``) and reports a Monte Carlo ELBO on fresh draws. ``method="importance"`` uses the fitted
``q`` as an importance proposal: ``log mean(e^{-E(x_i)} / q(x_i))`` is unbiased for ``Z`` (in
``Z``-space) and its delta-method stderr is reported with the weights' ESS.

Guides: any NumPyro guide for the model (autoguides, flows such as ``AutoBNAFNormal``/
``AutoIAFNormal``); by default :class:`~numpyro.infer.autoguide.AutoMultivariateNormal` for
continuous states and the library's mean-field :class:`BernoulliMeanField` for binary states.
For binary states with an energy *multilinear* in the units (affine in each unit: Ising,
Boltzmann machines, RBMs) the mean-field ELBO is closed form,

.. math::

    \\mathrm{ELBO}(\\mu) = -E(\\mu) + \\sum_i H_{\\mathrm{Bern}}(p_i), \\qquad
    \\mu_i = lo + (hi - lo)\\,p_i,

because independence makes :math:`\\mathbb E_q[E(x)] = E(\\mathbb E_q[x])`; it is maximized
deterministically with Optax. Otherwise the mean-field guide is fitted by SVI with
``TraceGraph_ELBO`` (score-function gradients for the discrete draws).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import log_density

from ebm_ppl.energy.mean_field import (
    BernoulliMeanField,
    BinaryBernoulli,
    binary_site_levels,
    energy_terms,
)
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.view import as_energy_model
from ebm_ppl.kernels._random import as_key
from ebm_ppl.partition.ais import _warn_weights, summarize_log_weights
from ebm_ppl.partition.base import LogZEstimate

__all__ = [
    "BernoulliMeanField",
    "BinaryBernoulli",
    "energy_terms",
    "fit_guide",
    "guide_log_weights",
    "log_partition_elbo",
    "log_partition_importance",
    "mean_field_elbo",
]

Values = dict[str, jax.Array]


def mean_field_elbo(
    em: EnergyModel, params: Mapping[str, Any] | None, logits: Mapping[str, Any]
) -> jax.Array:
    """Closed-form mean-field ELBO ``-E(μ) + Σ H(p_i)`` for energies multilinear in the units.

    Args:
        em: an energy model whose state sites are binary (energy affine in each unit).
        params: model parameters.
        logits: dict binary site -> logits of ``P(x_i = hi)``.

    Returns:
        scalar array (a lower bound on ``log Z``).

    Examples:
        >>> import jax.numpy as jnp, math, ebm_ppl as ebm
        >>> from ebm_ppl.models import ising
        >>> em = ebm.EnergyModel(ising.model, (4, 4), beta=0.0)      # no coupling: exact
        >>> round(float(mean_field_elbo(em, {}, {"s": jnp.zeros((4, 4))})), 4)
        11.0904
        >>> round(16 * math.log(2), 4)
        11.0904
    """
    levels = binary_site_levels(em)
    mu, entropy = {}, jnp.zeros(())
    for n, (lo, hi) in levels.items():
        d = BinaryBernoulli(logits[n], lo, hi)
        mu[n] = d.mean
        entropy = entropy + jnp.sum(d.entropy())
    return entropy - energy_terms(em, params, mu)


# ----------------------------------------------------------------------------- fitting
def _svi_model(em: EnergyModel, params: Mapping[str, Any]):
    """The EBM program with ``params`` fixed and hidden from SVI (only the guide is fitted)."""

    def model(*args, **kwargs):
        del args, kwargs
        with (
            handlers.block(hide_fn=lambda msg: msg["type"] == "param"),
            handlers.substitute(data=dict(params)),
        ):
            em.model(*em.args, **em.kwargs)

    return model


def _default_guide(em: EnergyModel):
    if em.discrete_sites and em.continuous_sites:
        raise ValueError(
            f"guide: the model mixes discrete {list(em.discrete_sites)} and continuous "
            f"{list(em.continuous_sites)} state sites; pass guide= (a NumPyro guide)"
        )
    if em.discrete_sites:
        return BernoulliMeanField(em)
    bound = functools.partial(em.model, *em.args, **em.kwargs)
    return AutoMultivariateNormal(bound, init_loc_fn=init_to_uniform)


def _is_multilinear(em: EnergyModel) -> bool:
    if em.continuous_sites or not em.discrete_sites:
        return False
    affine = em.affine_sites
    affine = affine() if callable(affine) else affine
    return all(affine.get(n, False) for n in em.discrete_sites)


def fit_guide(
    em: EnergyModel,
    params: Mapping[str, Any] | None,
    rng_key: jax.Array,
    *,
    guide: Any = None,
    num_steps: int = 2000,
    optimizer: Any = None,
    num_particles: int = 8,
    closed_form: bool | None = None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Fit a guide to ``exp(-E) / Z`` by maximizing the ELBO.

    Args:
        em: the energy model.
        params: model parameters (held fixed).
        rng_key: PRNG key.
        guide: a NumPyro guide, or ``None`` for the default (see module docstring).
        num_steps: optimizer steps.
        optimizer: an Optax optimizer (default ``adam(1e-2)``).
        num_particles: ELBO particles per SVI step.
        closed_form: use the closed-form mean-field ELBO (default: whenever the guide is the
            default :class:`BernoulliMeanField` and the energy is multilinear).

    Returns:
        ``(guide, guide_params, info)`` with ``info["closed_form"]`` and ``info["losses"]``
        (``-ELBO`` per step; exact values in closed form, estimates otherwise).

    Examples:
        >>> import jax, ebm_ppl as ebm
        >>> from ebm_ppl.models import ising
        >>> em = ebm.EnergyModel(ising.model, (3, 3), beta=0.1)
        >>> g, gp, info = fit_guide(em, {}, jax.random.PRNGKey(0), num_steps=100)
        >>> info["closed_form"], gp["s_logits"].shape
        (True, (3, 3))
    """
    params = dict(params or {})
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    user_guide = guide is not None
    if guide is None:
        guide = _default_guide(em)
    elif not callable(guide):
        raise TypeError(f"guide must be a NumPyro guide (callable), got {type(guide).__name__}")
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    if closed_form is None:
        closed_form = (
            (not user_guide) and isinstance(guide, BernoulliMeanField) and _is_multilinear(em)
        )
    if closed_form:
        if not isinstance(guide, BernoulliMeanField):
            raise ValueError("closed_form=True needs the BernoulliMeanField guide")
        if not _is_multilinear(em):
            raise ValueError("closed_form=True needs an energy affine in each binary unit")
        init = guide.params_init()
        names = list(guide.shapes)

        def neg_elbo(gp):
            return -mean_field_elbo(em, params, {n: gp[f"{n}_logits"] for n in names})

        @jax.jit
        def run_closed(gp):
            state = optimizer.init(gp)

            def step(carry, _):
                gp, state = carry
                loss, grad = jax.value_and_grad(neg_elbo)(gp)
                updates, state = optimizer.update(grad, state, gp)
                return (optax.apply_updates(gp, updates), state), loss

            (gp, _), losses = jax.lax.scan(step, (gp, state), None, length=num_steps)
            return gp, losses

        gp, losses = run_closed(init)
        return guide, gp, {"closed_form": True, "losses": np.asarray(losses)}
    has_discrete = bool(em.discrete_sites)
    elbo = (TraceGraph_ELBO if has_discrete else Trace_ELBO)(num_particles=num_particles)
    svi = SVI(_svi_model(em, params), guide, optimizer, elbo)

    @jax.jit
    def run(key):
        state = svi.init(key)

        def step(state, _):
            state, loss = svi.update(state)
            return state, loss

        state, losses = jax.lax.scan(step, state, None, length=num_steps)
        return svi.get_params(state), losses

    with warnings.catch_warnings():
        # Binary sites keep one unit per batch element without a plate (no ``to_event``, so
        # NumPyro's discrete machinery sees the units); the energy is a single factor over all of
        # them, so no plate is missing and NumPyro's plate check would only be noise here.
        warnings.filterwarnings("ignore", message="Missing a plate statement", category=UserWarning)
        gp, losses = run(rng_key)
    return guide, gp, {"closed_form": False, "losses": np.asarray(losses)}


def guide_log_weights(
    em: EnergyModel,
    params: Mapping[str, Any] | None,
    guide: Any,
    guide_params: Mapping[str, Any],
    rng_key: jax.Array,
    num_samples: int,
) -> tuple[jax.Array, Values]:
    """Importance log weights ``-E(x_i) - log q(x_i)`` of ``num_samples`` guide draws.

    Args:
        em: the energy model.
        params: model parameters.
        guide: a NumPyro guide.
        guide_params: its fitted parameters.
        rng_key: PRNG key.
        num_samples: number of draws.

    Returns:
        ``(log_w (num_samples,), draws dict site -> (num_samples, ...))``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> from ebm_ppl.models import ising
        >>> em = ebm.EnergyModel(ising.model, (2,), beta=0.0, periodic=False)
        >>> g = BernoulliMeanField(em)
        >>> lw, x = guide_log_weights(em, {}, g, g.params_init(), jax.random.PRNGKey(0), 3)
        >>> [round(float(v), 4) for v in lw]    # q uniform, E = 0: log 4
        [1.3863, 1.3863, 1.3863]
    """
    params = dict(params or {})
    names = em.state_sites

    def one(key):
        log_q, tr = log_density(handlers.seed(guide, key), (), {}, dict(guide_params))
        values = {n: tr[n]["value"] for n in names}
        return -em.energy(params, values) - log_q, values

    return jax.jit(jax.vmap(one))(jax.random.split(rng_key, num_samples))


# ----------------------------------------------------------------------------- methods
def _setup(model, params, model_args, model_kwargs, rng_key, num_samples):
    em = as_energy_model(model, model_args, model_kwargs)
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, (int, np.integer))
        or num_samples < 2
    ):
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    return em, dict(params or {}), as_key(rng_key, default=0)


def log_partition_elbo(
    model: Any,
    params: Mapping[str, Any] | None = None,
    *,
    rng_key: Any = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    guide: Any = None,
    num_steps: int = 2000,
    optimizer: Any = None,
    num_particles: int = 8,
    num_samples: int = 4096,
    closed_form: bool | None = None,
) -> LogZEstimate:
    """A lower bound on ``log Z``: the ELBO of a fitted guide (``log_partition(method="elbo")``).

    Args:
        model: a NumPyro EBM program (or an :class:`ebm_ppl.EnergyModel`).
        params: model parameters.
        rng_key: PRNG key (``None`` means ``PRNGKey(0)``).
        model_args, model_kwargs: arguments for ``model``.
        guide: a NumPyro guide (autoguide, flow, ...); default: ``AutoMultivariateNormal`` for
            continuous states, :class:`BernoulliMeanField` for binary ones.
        num_steps: optimizer steps.
        optimizer: Optax optimizer (default ``adam(1e-2)``).
        num_particles: ELBO particles per SVI step.
        num_samples: fresh guide draws for the reported Monte Carlo ELBO (not used in closed
            form, where the ELBO is exact).
        closed_form: force or forbid the closed-form mean-field ELBO (see :func:`fit_guide`).

    Returns:
        :class:`LogZEstimate` with ``method="elbo"``; ``stderr`` is the Monte Carlo error of the
        ELBO (0 in closed form); ``info`` holds ``closed_form``, ``guide``, ``guide_params`` and
        ``losses``.

    Examples:
        >>> import jax.numpy as jnp, math, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> est = ebm.log_partition(gauss, method="elbo", num_steps=500)
        >>> est.log_z <= math.log(2 * math.pi) + 3 * est.stderr, abs(est.log_z - 1.8379) < 0.05
        (True, True)
    """
    em, params, key = _setup(model, params, model_args, model_kwargs, rng_key, num_samples)
    k_fit, k_eval = jax.random.split(key)
    guide, gp, info = fit_guide(
        em,
        params,
        k_fit,
        guide=guide,
        num_steps=num_steps,
        optimizer=optimizer,
        num_particles=num_particles,
        closed_form=closed_form,
    )
    info = {**info, "guide": guide, "guide_params": gp}
    if info["closed_form"]:
        value = float(mean_field_elbo(em, params, {n: gp[f"{n}_logits"] for n in guide.shapes}))
        return LogZEstimate(value, 0.0, "elbo", info)
    log_w, _ = guide_log_weights(em, params, guide, gp, k_eval, num_samples)
    lw = np.asarray(log_w, dtype=np.float64)
    if not np.all(np.isfinite(lw)):
        warnings.warn(
            f"ELBO: {int(np.sum(~np.isfinite(lw)))} of {lw.size} log weights are not "
            "finite; log_z is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return LogZEstimate(
            math.nan, math.nan, "elbo", {**info, "num_nonfinite": int(np.sum(~np.isfinite(lw)))}
        )
    return LogZEstimate(
        float(lw.mean()),
        float(lw.std(ddof=1) / math.sqrt(lw.size)),
        "elbo",
        {**info, "num_nonfinite": 0},
    )


def log_partition_importance(
    model: Any,
    params: Mapping[str, Any] | None = None,
    *,
    rng_key: Any = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    guide: Any = None,
    num_steps: int = 2000,
    optimizer: Any = None,
    num_particles: int = 8,
    num_samples: int = 4096,
    closed_form: bool | None = None,
) -> LogZEstimate:
    """``log Z`` by importance sampling from a fitted guide (``log_partition(method="importance")``).

    The guide is fitted as in :func:`log_partition_elbo`; then
    ``log Ẑ = log mean_i exp(-E(x_i) - log q(x_i))`` over ``num_samples`` fresh draws, unbiased
    in ``Z``-space, with the delta-method stderr ``sd(w) / (mean(w) √n)`` and the weights' ESS.

    ``model``, ``params``, ``rng_key``, ``model_args``, ``model_kwargs``, ``guide``,
    ``num_steps``, ``optimizer``, ``num_particles`` and ``closed_form`` are as in
    :func:`log_partition_elbo`.

    Args:
        num_samples: importance draws.

    Returns:
        :class:`LogZEstimate` with ``method="importance"`` and ``info`` holding ``ess``,
        ``log_weights``, ``degenerate``, ``num_nonfinite``, ``guide``, ``guide_params``.

    Warns:
        RuntimeWarning: for NaN/+inf weights (``log_z`` is NaN) or degenerate weights.

    Examples:
        >>> import jax.numpy as jnp, math, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> est = ebm.log_partition(gauss, method="importance", num_steps=500)
        >>> abs(est.log_z - math.log(2 * math.pi)) < 4 * est.stderr + 1e-3
        True
    """
    em, params, key = _setup(model, params, model_args, model_kwargs, rng_key, num_samples)
    k_fit, k_eval = jax.random.split(key)
    guide, gp, info = fit_guide(
        em,
        params,
        k_fit,
        guide=guide,
        num_steps=num_steps,
        optimizer=optimizer,
        num_particles=num_particles,
        closed_form=closed_form,
    )
    log_w, _ = guide_log_weights(em, params, guide, gp, k_eval, num_samples)
    summary = summarize_log_weights(log_w)
    degenerate = _warn_weights(
        summary, "importance sampling", "more samples or a closer guide (e.g. a flow)"
    )
    info = {
        **info,
        "guide": guide,
        "guide_params": gp,
        "ess": summary["ess"],
        "log_weights": np.asarray(log_w),
        "degenerate": degenerate,
        "num_nonfinite": summary["num_nonfinite"],
    }
    return LogZEstimate(float(summary["log_mean"]), float(summary["stderr"]), "importance", info)
