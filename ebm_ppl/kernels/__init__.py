"""Pure JAX samplers after BlackJAX: ``init(position, energy_fn)``, ``build_kernel(**static)``.

Each module holds ``XState``/``XInfo`` NamedTuples, ``init`` and ``build_kernel``; the kernel
``kernel(rng_key, state, energy_fn, step_size, inverse_mass_matrix=None) -> (XState, XInfo)``
takes the step size and mass as dynamic arguments. No NumPyro import here: the adapters in
:mod:`ebm_ppl.infer` turn these into ``numpyro.infer.mcmc.MCMCKernel`` objects.

Examples:
    >>> from ebm_ppl.kernels import mala
    >>> callable(mala.build_kernel())
    True
"""

from ebm_ppl.kernels import (
    adaptation,
    cluster,
    compact,
    composite,
    dlangevin,
    gibbs,
    gwg,
    mala,
    resolve,
    sgld,
    tempering,
    ula,
)

__all__ = [
    "adaptation",
    "cluster",
    "compact",
    "composite",
    "dlangevin",
    "gibbs",
    "gwg",
    "mala",
    "resolve",
    "sgld",
    "tempering",
    "ula",
]
