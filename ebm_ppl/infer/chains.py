"""Chains across devices and processes (an alias of :mod:`ebm_ppl.kernels.chains`).

The chain-mapping helpers are pure JAX and shared by ``sample``, the PCD chains and AIS, so they
live in the kernels layer; this module re-exports them under their first public path.

Examples:
    >>> from ebm_ppl.infer import chains
    >>> from ebm_ppl.kernels import chains as kernel_chains
    >>> chains.map_chains is kernel_chains.map_chains
    True
"""

from ebm_ppl.kernels.chains import (
    CHAIN_METHODS,
    ChainPlacement,
    chain_device_labels,
    gather_chains,
    local_chains,
    map_chains,
    place_chains,
    resolve_devices,
)

__all__ = [
    "CHAIN_METHODS",
    "ChainPlacement",
    "chain_device_labels",
    "gather_chains",
    "local_chains",
    "map_chains",
    "place_chains",
    "resolve_devices",
]
