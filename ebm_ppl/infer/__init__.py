"""NumPyro ``MCMCKernel`` adapters of the library's kernels, and the kernel registry.

Every adapter is exported here: the Langevin family (:class:`MALA`, :class:`ULA`,
:class:`SGLD`), the binary-state samplers (:class:`BlockGibbs`,
:class:`GibbsWithGradients`, and for binary and categorical states the discrete Langevin
samplers :class:`DULA`/:class:`DMALA`) and the composite of mixed models (:class:`Composite`), all built
on :class:`KernelAdapter`. :func:`ebm_ppl.sample` finds
them by name through :func:`register_kernel`.
"""

from ebm_ppl.infer.adapter import AdapterState, KernelAdapter
from ebm_ppl.infer.composite import Composite
from ebm_ppl.infer.discrete import DMALA, DULA, BlockGibbs, GibbsWithGradients
from ebm_ppl.infer.langevin import MALA, SGLD, ULA
from ebm_ppl.infer.lattice import LatticeGibbs, SwendsenWang
from ebm_ppl.infer.registry import available_kernels, register_kernel
from ebm_ppl.infer.tempering import ParallelTempering, PTState

__all__ = [
    "DMALA",
    "DULA",
    "MALA",
    "SGLD",
    "SwendsenWang",
    "ULA",
    "AdapterState",
    "BlockGibbs",
    "Composite",
    "GibbsWithGradients",
    "KernelAdapter",
    "LatticeGibbs",
    "PTState",
    "ParallelTempering",
    "available_kernels",
    "register_kernel",
]
