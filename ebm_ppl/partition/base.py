"""``LogZEstimate`` and the ``log_partition`` dispatcher; methods register themselves."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["LogZEstimate", "log_partition", "register_method"]


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


# method name -> "module:function"; modules are imported on first use.
_METHODS: dict[str, str] = {}


def register_method(name: str, target: str) -> None:
    """Register ``log_partition(method=name)`` as ``target`` (``"module:function"``).

    The function is called as ``fn(model, params, *, rng_key, model_args, model_kwargs, **options)``.

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
        params: model parameters (``None`` for a model without any).
        method: one of the registered methods (``"exact"``, ``"quadrature"``, ``"ais"``, ...).
        rng_key: PRNG key for stochastic methods (``None`` means ``PRNGKey(0)``).
        model_args, model_kwargs: arguments for ``model``.
        **options: method-specific options.

    Returns:
        :class:`LogZEstimate`.

    Raises:
        ValueError: for an unknown ``method``.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def coin():
        ...     x = numpyro.sample("x", ebm.Bits(1))
        ...     ebm.energy("E", -jnp.sum(x) * jnp.log(3.0))
        >>> round(ebm.log_partition(coin, method="exact").log_z, 6)  # log(1 + 3)
        1.386294
    """
    import ebm_ppl.partition  # noqa: F401  (registers the built-in methods)

    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    module_name, fn_name = _METHODS[method].split(":")
    fn: Callable[..., LogZEstimate] = getattr(importlib.import_module(module_name), fn_name)
    return fn(
        model,
        params,
        rng_key=rng_key,
        model_args=tuple(model_args),
        model_kwargs=dict(model_kwargs or {}),
        **options,
    )
