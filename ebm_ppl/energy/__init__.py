"""Declaration layer: ``energy``, base measures and :class:`EnergyModel`."""

from ebm_ppl.energy.base import Bits, Categorical, Flat, Spins
from ebm_ppl.energy.conditionals import one_hot
from ebm_ppl.energy.declare import energy
from ebm_ppl.energy.lattice import Lattice
from ebm_ppl.energy.model import EnergyModel, SiteInfo
from ebm_ppl.energy.plan import SitePlan, SiteSpec

__all__ = [
    "Bits",
    "Categorical",
    "EnergyModel",
    "Flat",
    "Lattice",
    "SiteInfo",
    "SitePlan",
    "SiteSpec",
    "Spins",
    "energy",
    "one_hot",
]
