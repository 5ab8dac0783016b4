"""ebm_ppl.infer."""

from ebm_ppl.infer.adapter import AdapterState, KernelAdapter
from ebm_ppl.infer.langevin import MALA, SGLD, ULA

__all__ = ["AdapterState", "KernelAdapter", "MALA", "SGLD", "ULA"]
