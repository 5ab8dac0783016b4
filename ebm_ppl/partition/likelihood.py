"""Normalized log-likelihoods of data under an energy model: ``log p(x) = -F(x) - log Z``.

``F(x)`` is the free energy of the data sites: the energy itself when the data fill every state
site, otherwise ``-log Σ_h exp(-E(x, h))`` over the remaining binary (latent) sites, summed by
enumeration. ``log Z`` comes from ``log_z=`` or is computed, and the result says which method
produced it: exact enumeration when the model is small enough (or provides a closed form),
grid quadrature for continuous states of at most two dimensions, and AIS otherwise (with a
data base-rate base for binary data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ebm_ppl.energy.binding import bind_data
from ebm_ppl.energy.conditionals import binary_levels
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.view import StateView, as_energy_model
from ebm_ppl.kernels._random import as_key
from ebm_ppl.partition import exact
from ebm_ppl.partition.base import LogLikelihood, LogZEstimate, as_log_z_estimate, log_partition

__all__ = ["LogLikelihood", "free_energy", "log_likelihood"]


def free_energy(
    em: EnergyModel, params: Mapping[str, Any] | None, data: Mapping[str, Any]
) -> jax.Array:
    """``F(x_n) = -log Σ_h exp(-E(x_n, h))`` for every example, summing out the absent sites.

    State sites absent from ``data`` must be binary; they are summed exactly by
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
    elif not em.continuous_sites and all(
        binary_levels(em.sites[n].support) is not None for n in em.discrete_sites
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
            site -> array; state sites absent from the data (binary latents) are summed out.
        log_z: a known ``log Z`` (float or :class:`LogZEstimate`); skips its computation.
        method: ``log_partition`` method for ``log Z``; default: ``"exact"`` when it applies
            (a closed form, or at most 2^24 enumerated binary states), ``"quadrature"`` for
            continuous states of dimension ``<= 2``, else ``"ais"`` (for binary data with the
            data base-rate base); ``info["exact_skipped"]`` then says why exact was not used.
        rng_key: PRNG key or int seed for stochastic methods (``None`` means ``PRNGKey(0)``).
        model_args, model_kwargs: arguments for ``model``.
        data_site: site for an array ``data``.
        **options: passed to :func:`ebm_ppl.log_partition` (e.g. ``num_chains``).

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
        free = free_energy(em, params, values)
    return LogLikelihood.from_free_energies(free, est)
