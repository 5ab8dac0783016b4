"""ebm_ppl.partition."""
