"""Model zoo: NumPyro EBM programs with helpers (installed as ``ebm_ppl.models``).

Submodules load on first attribute access, so ``import ebm_ppl.models`` stays cheap:
``ising`` (lattice and general-coupling Ising models, Onsager/Kaufman references),
``boltzmann`` (fully visible Boltzmann machine), ``rbm`` (Bernoulli and Gaussian–Bernoulli RBMs),
``neural`` (multilayer-perceptron energies over a flat continuous state), ``potts`` (q-state
Potts lattices and Potts Boltzmann machines), ``dbn`` (deep belief networks: greedy stacks of
RBMs), ``dbm`` (two-layer deep Boltzmann machines), ``poe`` (products of experts),
``conditional`` (conditional EBMs for structured prediction), ``meg`` (maximum-entropy
generators: an energy trained against a flow generator), ``jem`` (joint energy models: a
classifier's logits as an energy).

Examples:
    >>> from ebm_ppl import models
    >>> callable(models.ising.model)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = (
    "boltzmann",
    "conditional",
    "dbm",
    "dbn",
    "ising",
    "jem",
    "meg",
    "neural",
    "poe",
    "potts",
    "rbm",
)

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
