"""ebm_ppl.objectives."""
