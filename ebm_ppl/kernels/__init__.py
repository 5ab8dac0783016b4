"""ebm_ppl.kernels."""
