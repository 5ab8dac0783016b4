"""Model zoo: NumPyro EBM programs with helpers (installed as ``ebm_ppl.models``)."""
