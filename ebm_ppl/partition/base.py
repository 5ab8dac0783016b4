"""``LogZEstimate``, ``LogLikelihood`` and the ``log_partition`` dispatcher of the methods."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from ebm_ppl.energy.view import as_energy_model
from ebm_ppl.kernels._random import as_key
from ebm_ppl.kernels.compile_cache import enable_compilation_cache

__all__ = ["LogLikelihood", "LogZEstimate", "log_partition", "register_method"]


class LogZEstimate(NamedTuple):
    """An estimate of ``log Z = log ∫ base(x) exp(-E(x)) dx``.

    Attributes:
        log_z: the estimate (a float).
        stderr: its standard error (0.0 for exact methods).
        method: name of the method that produced it.
        info: dict of method-specific diagnostics (weights' ESS, grid size, flags, ...).

    Examples:
        >>> LogZEstimate(1.0, 0.0, "exact", {}).log_z
        1.0
    """

    log_z: float
    stderr: float
    method: str
    info: dict[str, Any]


class LogLikelihood(NamedTuple):
    """Log-likelihoods of data and how ``log Z`` was obtained.

    What every ``log_likelihood`` of the library returns (:func:`ebm_ppl.log_likelihood`,
    :func:`ebm_ppl.partition.exact.log_likelihood`).

    Attributes:
        per_example: ``(num_examples,)`` float64 array of ``log p(x_n)``.
        mean: their mean.
        stderr: standard error of ``mean`` carried over from ``log Z`` (every example shares the
            one ``log Z``; 0 for exact methods).
        log_z: the :class:`LogZEstimate` used (``log_z.method`` says which method).

    Examples:
        >>> r = LogLikelihood(np.zeros(2), 0.0, 0.0, LogZEstimate(0.0, 0.0, "exact", {}))
        >>> r.log_z.method
        'exact'
    """

    per_example: np.ndarray
    mean: float
    stderr: float
    log_z: LogZEstimate

    @classmethod
    def from_free_energies(cls, free_energies: Any, log_z: LogZEstimate) -> LogLikelihood:
        """``log p(x_n) = -F(x_n) - log Z`` from per-example free energies and a ``log Z``.

        Examples:
            >>> r = LogLikelihood.from_free_energies([1.0, 3.0], LogZEstimate(0.5, 0.1, "ais", {}))
            >>> r.per_example.tolist(), r.mean, r.stderr
            ([-1.5, -3.5], -2.5, 0.1)
        """
        per_example = -np.asarray(free_energies, dtype=np.float64) - log_z.log_z
        return cls(per_example, float(per_example.mean()), float(log_z.stderr), log_z)


def as_log_z_estimate(log_z: float | LogZEstimate) -> LogZEstimate:
    """A given ``log Z`` as an estimate: kept if it is one, else ``method="given"``.

    Raises:
        ValueError: for a value that is not finite.

    Examples:
        >>> as_log_z_estimate(2.0)
        LogZEstimate(log_z=2.0, stderr=0.0, method='given', info={})
    """
    if isinstance(log_z, LogZEstimate):
        return log_z
    value = float(log_z)
    if not math.isfinite(value):
        raise ValueError(f"log_z must be finite, got {log_z!r}")
    return LogZEstimate(value, 0.0, "given", {})


# method name -> "module:function"; modules are imported on first use.
_METHODS: dict[str, str] = {
    "exact": "ebm_ppl.partition.exact:log_partition_exact",
    "quadrature": "ebm_ppl.partition.quadrature:log_partition_quadrature",
    "ais": "ebm_ppl.partition.ais:log_partition_ais",
    "elbo": "ebm_ppl.partition.variational:log_partition_elbo",
    "importance": "ebm_ppl.partition.variational:log_partition_importance",
    "pt": "ebm_ppl.partition.stepping_stone:log_partition_pt",
}


def register_method(name: str, target: str) -> None:
    """Register ``log_partition(method=name)`` as ``target`` (``"module:function"``).

    The function is called as ``fn(model, params, *, rng_key, model_args, model_kwargs, **options)``
    (by :func:`log_partition`: with ``model`` an :class:`~ebm_ppl.EnergyModel`, its arguments
    bound and ``model_args``/``model_kwargs`` empty, and ``params`` already validated).

    Examples:
        >>> register_method("exact", "ebm_ppl.partition.exact:log_partition_exact")
    """
    _METHODS[name] = target


def log_partition(
    model: Any,
    params: dict[str, Any] | None = None,
    *,
    method: str = "exact",
    rng_key: Any = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> LogZEstimate:
    """Estimate the log partition function of an energy model.

    Args:
        model: a NumPyro EBM program (or an :class:`ebm_ppl.EnergyModel`).
        params: model parameters (constrained values; a ``numpyro.contrib.module`` network's
            entry is its parameter pytree), checked against the model before any method runs;
            ``None`` uses the model's own initial values (``EnergyModel.init_params(PRNGKey(0))``,
            as :func:`ebm_ppl.sample` does).
        method: one of the registered methods (``"exact"``, ``"quadrature"``, ``"ais"``, ...).
        rng_key: PRNG key or int seed for stochastic methods (``None`` means ``PRNGKey(0)``).
        model_args, model_kwargs: arguments for ``model``.
        **options: method-specific options.

    Returns:
        :class:`LogZEstimate`.

    Raises:
        ValueError: for an unknown ``method``; for ``params`` with unknown or missing sites,
            wrong shapes or module structure, non-finite values or values outside a constraint
            (naming the site), before anything is compiled.
        TypeError: for an ``rng_key`` that is neither a key nor an int, or ``params`` that is
            not a dict.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def coin():
        ...     x = numpyro.sample("x", ebm.Bits(1))
        ...     ebm.energy("E", -jnp.sum(x) * jnp.log(3.0))
        >>> round(ebm.log_partition(coin, method="exact").log_z, 6)  # log(1 + 3)
        1.386294
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    enable_compilation_cache()  # persistent across processes (EBM_PPL_NO_CACHE=1 opts out)
    rng_key = as_key(rng_key, default=0)
    em = as_energy_model(model, tuple(model_args), dict(model_kwargs or {}))
    if params is None:
        params = em.init_params(jax.random.PRNGKey(0))
    # Once, for every method: NaN parameters would otherwise give -inf or NaN estimates.
    params = em.validate_params(params)
    module_name, fn_name = _METHODS[method].split(":")
    fn: Callable[..., LogZEstimate] = getattr(importlib.import_module(module_name), fn_name)
    return fn(em, params, rng_key=rng_key, model_args=(), model_kwargs={}, **options)
