"""ebm_ppl.infer."""
