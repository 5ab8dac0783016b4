"""ebm_ppl.train."""
