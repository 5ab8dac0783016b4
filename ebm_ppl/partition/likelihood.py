"""Normalized log-likelihoods of data under an energy model: ``log p(x) = -F(x) - log Z``.

``F(x)`` is the free energy of the data sites: the energy itself when the data fill every state
site, otherwise ``-log Σ_h exp(-E(x, h))`` over the remaining binary (latent) sites, summed by
enumeration, or ``-log ∫ exp(-E(x, z)) dz`` over continuous latent sites, estimated by
importance sampling from a NumPyro guide ``q(z | x)`` fitted to each example by SVI
(:func:`latent_free_energy`). ``log Z`` comes from ``log_z=`` or is computed, and the result says which method
produced it: exact enumeration when the model is small enough (or provides a closed form),
grid quadrature for continuous states of at most two dimensions, and AIS otherwise (with a
data base-rate base for binary data, a state-frequency base for categorical data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoGuide, AutoNormal
from numpyro.infer.initialization import init_to_uniform

from ebm_ppl.energy.binding import bind_data
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.view import StateView, as_energy_model
from ebm_ppl.kernels._random import as_key
from ebm_ppl.partition import exact
from ebm_ppl.partition.base import LogLikelihood, LogZEstimate, as_log_z_estimate, log_partition

__all__ = ["LogLikelihood", "free_energy", "latent_free_energy", "log_likelihood"]


def free_energy(
    em: EnergyModel, params: Mapping[str, Any] | None, data: Mapping[str, Any]
) -> jax.Array:
    """``F(x_n) = -log Σ_h exp(-E(x_n, h))`` for every example, summing out the absent sites.

    State sites absent from ``data`` must be binary or categorical; they are summed exactly by
    :func:`ebm_ppl.partition.exact.free_energy` (one conditionally independent block in
    closed form, e.g. all hidden units of an RBM, the rest enumerated).

    Args:
        em: the energy model.
        params: model parameters.
        data: dict state site -> ``(num_examples, *shape)``.

    Returns:
        ``(num_examples,)`` array.

    Examples:
        >>> import jax.numpy as jnp, math, ebm_ppl as ebm
        >>> from ebm_ppl.models import rbm
        >>> em = ebm.EnergyModel(rbm.model, 2, 3)
        >>> p = {"W": jnp.zeros((2, 3)), "b": jnp.zeros(2), "c": jnp.zeros(3)}
        >>> round(float(free_energy(em, p, {"v": jnp.ones((1, 2))})[0]), 4)   # -3 log 2
        -2.0794
    """
    state = {n: v for n, v in data.items() if n in em.state_sites}
    return exact.free_energy(em, dict(params or {}), state)


def latent_free_energy(
    em: EnergyModel,
    params: Mapping[str, Any] | None,
    data: Mapping[str, Any],
    *,
    guide: Any = None,
    num_guide_steps: int = 500,
    num_particles: int = 256,
    guide_optimizer: Any = None,
    rng_key: Any = None,
) -> jax.Array:
    """``F(x_n) = -log ∫ exp(-E(x_n, z)) dz`` over continuous latent sites ``z``, per example.

    For each example a guide ``q(z | x_n)`` is fitted by SVI (``num_guide_steps`` steps of the
    ELBO ``E_q[-E(x_n, z)] + H(q)``), then ``F`` is estimated by importance sampling,
    ``-log (1/K) Σ_k exp(-E(x_n, z_k) - log q(z_k | x_n))``, ``z_k ~ q``. The estimate is exact
    when ``q`` is the posterior, and otherwise biased upward in expectation (Jensen), so the
    log-likelihood it gives is a stochastic lower bound.

    Args:
        em: the energy model.
        params: model parameters.
        data: dict data site -> ``(num_examples, *shape)``; every state site absent from it must
            be continuous.
        guide: a NumPyro guide of the per-example model (called with ``x``, the dict of one
            example's data sites), or an autoguide class; default ``AutoNormal``.
        num_guide_steps: SVI steps per example.
        num_particles: importance samples per example.
        guide_optimizer: Optax optimizer of the guide (default ``adam(0.02)``).
        rng_key: PRNG key or int (default 0).

    Returns:
        ``(num_examples,)`` array.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     z = numpyro.sample("z", ebm.Flat(()))
        ...     x = numpyro.sample("x", ebm.Flat(()))
        ...     ebm.energy("E", 0.5 * z**2 + 0.5 * (x - z) ** 2)
        >>> f = latent_free_energy(ebm.EnergyModel(m), {}, {"x": jnp.zeros(2)}, num_guide_steps=300)
        >>> bool(jnp.allclose(f, -0.5 * jnp.log(jnp.pi), atol=0.02))   # -log ∫ e^{-E} dz at x=0
        True
    """
    params = dict(params or {})
    data_sites = tuple(n for n in data if n in em.state_sites)
    latent = tuple(n for n in em.state_sites if n not in data)
    discrete = [n for n in latent if em.plan[n].is_discrete]
    if discrete:
        raise ValueError(
            f"latent_free_energy integrates continuous latents; {discrete} are discrete"
        )
    values = {n: jnp.asarray(data[n]) for n in data_sites}

    def model(x):
        with (
            handlers.block(hide_fn=lambda msg: msg["type"] == "param"),
            handlers.substitute(data=params),
            handlers.condition(data=dict(x)),
        ):
            em.model(*em.args, **em.kwargs)

    if guide is None:
        guide = AutoNormal(model, init_loc_fn=init_to_uniform)
    elif isinstance(guide, type) and issubclass(guide, AutoGuide):
        guide = guide(model)
    optimizer = optax.adam(0.02) if guide_optimizer is None else guide_optimizer
    svi = SVI(model, guide, optimizer, Trace_ELBO(num_particles=8))

    def one(key, x):
        k_init, k_is = jax.random.split(key)
        state = svi.init(k_init, x)
        state, _ = jax.lax.scan(
            lambda st, _: svi.update(st, x), state, None, length=num_guide_steps
        )
        guide_params = svi.get_params(state)

        def log_weight(k):
            tr = handlers.trace(
                handlers.seed(handlers.substitute(guide, data=guide_params), k)
            ).get_trace(x)
            z = {n: tr[n]["value"] for n in latent}
            log_q = sum(jnp.sum(tr[n]["fn"].log_prob(tr[n]["value"])) for n in latent)
            return -em.energy(params, {**x, **z}) - log_q

        w = jax.vmap(log_weight)(jax.random.split(k_is, num_particles))
        return -(jax.scipy.special.logsumexp(w) - np.log(num_particles))

    n = jax.tree.leaves(values)[0].shape[0]
    keys = jax.random.split(as_key(rng_key, default=0), n)
    return jax.jit(jax.vmap(one))(keys, values)


def _auto_log_z(em, params, data, rng_key, options) -> LogZEstimate:
    skipped = None
    if getattr(em.model, "exact_log_partition", None) is not None or not em.continuous_sites:
        try:
            return log_partition(em, params, method="exact")
        except ValueError as err:  # too many states, or a site exact enumeration cannot handle
            skipped = str(err)
    if not em.discrete_sites:
        if StateView(em, who="log_likelihood", unconstrained=True).dim <= 2:
            return log_partition(em, params, method="quadrature", rng_key=rng_key, **options)
    elif not em.continuous_sites and set(em.discrete_sites) <= set(
        em.plan.binary_sites + em.plan.categorical_sites
    ):
        options.setdefault("data", {n: v for n, v in data.items() if n in em.discrete_sites})
    est = log_partition(em, params, method="ais", rng_key=rng_key, **options)
    if skipped is not None:
        est.info["exact_skipped"] = skipped
    return est


def log_likelihood(
    model: Any,
    params: Mapping[str, Any] | None,
    data: Any,
    *,
    log_z: float | LogZEstimate | None = None,
    method: str | None = None,
    rng_key: Any = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    data_site: str | None = None,
    **options: Any,
) -> LogLikelihood:
    """``log p(x_n) = -F(x_n) - log Z`` for every example of ``data``.

    Args:
        model: a NumPyro EBM program (or an :class:`ebm_ppl.EnergyModel`).
        params: model parameters (constrained values; a ``numpyro.contrib.module`` network's
            entry is its parameter pytree); ``None`` uses the model's initial values
            (``EnergyModel.init_params(PRNGKey(0))``).
        data: array ``(num_examples, *site_shape)`` (bound as by :func:`ebm_ppl.fit`) or a dict
            site -> array; state sites absent from the data (latents) are summed out: binary
            ones exactly, continuous ones by importance sampling from a guide fitted to each
            example (:func:`latent_free_energy`; a stochastic lower bound on ``log p``).
        log_z: a known ``log Z`` (float or :class:`LogZEstimate`); skips its computation.
        method: ``log_partition`` method for ``log Z``; default: ``"exact"`` when it applies
            (a closed form, or at most 2^24 enumerated binary states), ``"quadrature"`` for
            continuous states of dimension ``<= 2``, else ``"ais"`` (for binary and categorical
            data with the data base-rate or state-frequency base); ``info["exact_skipped"]`` then
            says why exact was not used.
        rng_key: PRNG key or int seed for stochastic methods (``None`` means ``PRNGKey(0)``).
        model_args, model_kwargs: arguments for ``model``.
        data_site: site for an array ``data``.
        **options: passed to :func:`ebm_ppl.log_partition` (e.g. ``num_chains``); for
            continuous latents ``guide``, ``num_guide_steps``, ``num_particles`` and
            ``guide_optimizer`` go to :func:`latent_free_energy`.

    Returns:
        :class:`LogLikelihood`; ``.log_z.method`` says how ``log Z`` was obtained.

    Raises:
        ValueError: for bad data (see :func:`ebm_ppl.energy.binding.bind_data`), latent sites
            that cannot be summed out, or ``params`` that do not fit the model (unknown or
            missing sites, shapes, module structure, non-finite values, values outside a
            constraint; naming the site), before anything is compiled.
        TypeError: for an ``rng_key`` that is neither a key nor an int, or ``params`` that is
            not a dict.

    Examples:
        >>> import jax.numpy as jnp, numpy as np, math, ebm_ppl as ebm
        >>> from ebm_ppl.models import rbm
        >>> p = {"W": jnp.zeros((3, 2)), "b": jnp.zeros(3), "c": jnp.zeros(2)}
        >>> r = ebm.log_likelihood(rbm.model, p, np.ones((4, 3)), model_args=(3, 2))
        >>> round(r.mean, 4) == round(-3 * math.log(2), 4), r.log_z.method
        (True, 'exact')
    """
    em = as_energy_model(model, model_args, model_kwargs)
    latent_options = {
        k: options.pop(k)
        for k in ("guide", "num_guide_steps", "num_particles", "guide_optimizer")
        if k in options
    }
    if params is None:
        params = em.init_params(jax.random.PRNGKey(0))
    params = em.validate_params(params)  # before anything compiles; modules stay pytrees
    bound = bind_data(em, data, data_site)
    key = as_key(rng_key, default=0)
    if log_z is None:
        if method is None:
            est = _auto_log_z(em, params, bound, key, dict(options))
        else:
            if method == "ais" and "data" not in options:
                options["data"] = {n: v for n, v in bound.items() if n in em.discrete_sites}
                if not options["data"] or em.continuous_sites:
                    options.pop("data")
            est = log_partition(em, params, method=method, rng_key=key, **options)
    else:
        est = as_log_z_estimate(log_z)
    values = {n: jnp.asarray(v) for n, v in bound.items()}
    if all(n in values for n in em.state_sites):
        free = jax.jit(jax.vmap(lambda v: em.energy(params, v)))(values)
    else:
        conditions = [n for n in values if n not in em.state_sites]
        if conditions:
            raise ValueError(
                f"data: summing out latent sites is not supported together with observed "
                f"(conditioning) sites {conditions}"
            )
        latent = [n for n in em.state_sites if n not in values]
        if any(not em.plan[n].is_discrete for n in latent):
            free = latent_free_energy(
                em, params, values, rng_key=_random_fold(key), **latent_options
            )
        else:
            free = free_energy(em, params, values)
    return LogLikelihood.from_free_energies(free, est)


def _random_fold(key: jax.Array) -> jax.Array:
    return jax.random.fold_in(key, 1)
