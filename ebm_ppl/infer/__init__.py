"""ebm_ppl.infer."""

from ebm_ppl.infer.adapter import AdapterState, KernelAdapter
from ebm_ppl.infer.langevin import MALA, SGLD, ULA
