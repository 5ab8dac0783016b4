"""Kernels selectable by name in :func:`ebm_ppl.sample` (``kernel="nuts"``, ``"mala"``, ...)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["available_kernels", "get_kernel_factory", "register_kernel"]

KernelFactory = Callable[[Callable[..., Any], dict[str, Any]], Any]

_FACTORIES: dict[str, KernelFactory] = {}

# Modules that register kernels when imported; imported lazily on the first lookup so that
# ``import ebm_ppl`` stays cheap.
_KERNEL_MODULES: tuple[str, ...] = (
    "ebm_ppl.infer.hmc",
    "ebm_ppl.infer.langevin",
    "ebm_ppl.infer.discrete",
)


def register_kernel(name: str, factory: KernelFactory) -> None:
    """Make ``ebm_ppl.sample(kernel=name)`` build its kernel with ``factory(model, params)``.

    Args:
        name: lower-case kernel name.
        factory: ``factory(model, params) -> numpyro.infer.mcmc.MCMCKernel``.

    Examples:
        >>> from numpyro.infer import HMC
        >>> register_kernel("hmc-short", lambda model, params: HMC(model, num_steps=4))
        >>> "hmc-short" in available_kernels()
        True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    _FACTORIES[name.lower()] = factory


def _load() -> None:
    for module in _KERNEL_MODULES:
        importlib.import_module(module)


def available_kernels() -> tuple[str, ...]:
    """Names accepted by ``ebm_ppl.sample(kernel=...)``.

    Examples:
        >>> "nuts" in available_kernels()
        True
    """
    _load()
    return tuple(sorted(_FACTORIES))


def get_kernel_factory(name: str) -> KernelFactory:
    """Factory registered under ``name``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).

    Examples:
        >>> callable(get_kernel_factory("nuts"))
        True
    """
    _load()
    key = name.lower() if isinstance(name, str) else name
    if key not in _FACTORIES:
        raise ValueError(
            f"kernel must be one of {sorted(_FACTORIES)} or an MCMCKernel, got {name!r}"
        )
    return _FACTORIES[key]
