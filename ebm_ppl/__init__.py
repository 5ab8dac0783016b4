"""ebm_ppl: energy-based models as first-class NumPyro programs.

An energy-based model is an ordinary NumPyro model whose unnormalized density is
``base(x) * exp(-E(x))``; ``E`` enters through :func:`ebm_ppl.energy`, which is exactly
``numpyro.factor(name, -E)``. :class:`EnergyModel` compiles such a program into pure JAX
functions (energy, score, potential), :func:`sample` runs MCMC on it and returns an
``arviz.InferenceData``.

Examples:
    >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
    >>> def double_well():
    ...     x = numpyro.sample("x", ebm.Flat((2,)))
    ...     ebm.energy("E", jnp.sum((x**2 - 1.0) ** 2))
    >>> em = ebm.EnergyModel(double_well)
    >>> float(em.energy({}, {"x": jnp.ones(2)}))
    0.0

Subpackages (``kernels``, ``infer``, ``objectives``, ``partition``, ``diagnostics``,
``models``, ``data``, ``train``) load on first attribute access, so ``import ebm_ppl`` stays
cheap and creates no JAX arrays.
"""

from __future__ import annotations

import importlib
from typing import Any

# The declaration layer is imported eagerly: it is small and everything else needs it.
# ``ebm_ppl.energy`` is both a subpackage and the declaration function; importing the
# subpackage first and re-binding the name afterwards keeps ``ebm_ppl.energy(name, E)`` the
# function (Python only sets the parent attribute when a submodule is first loaded).
from ebm_ppl.energy import Bits, Categorical, EnergyModel, Flat, Lattice, SiteInfo, Spins, one_hot
from ebm_ppl.energy import energy as energy

__version__ = "0.1.0"

_SUBMODULES = (
    "kernels",
    "infer",
    "objectives",
    "partition",
    "diagnostics",
    "models",
    "data",
    "train",
    "sklearn",  # scikit-learn estimators (the sklearn extra)
    "cli",
    "apps",
)

# Public functions that live in lazily imported subpackages: name -> (module, attribute).
_LAZY_ATTRS: dict[str, tuple[str, str]] = {
    "sample": ("ebm_ppl.infer.driver", "sample"),
    "log_partition": ("ebm_ppl.partition.base", "log_partition"),
    "LogZEstimate": ("ebm_ppl.partition.base", "LogZEstimate"),
    "LogLikelihood": ("ebm_ppl.partition.base", "LogLikelihood"),
    "log_likelihood": ("ebm_ppl.partition.likelihood", "log_likelihood"),
    "fit": ("ebm_ppl.train.fit", "fit"),
    "PseudoLikelihood": ("ebm_ppl.objectives.pseudo_likelihood", "PseudoLikelihood"),
    "enable_compilation_cache": ("ebm_ppl.kernels.compile_cache", "enable_compilation_cache"),
    "FitResult": ("ebm_ppl.train.fit", "FitResult"),
    "save": ("ebm_ppl.train.saving", "save"),
    "load": ("ebm_ppl.train.saving", "load"),
}

__all__ = [
    "Bits",
    "Categorical",
    "EnergyModel",
    "Flat",
    "Lattice",
    "SiteInfo",
    "Spins",
    "energy",
    "one_hot",
    *_LAZY_ATTRS,
    *_SUBMODULES,
]


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _SUBMODULES:
        module = importlib.import_module(f"ebm_ppl.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_ATTRS:
        module_name, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ebm_ppl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
