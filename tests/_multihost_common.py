"""Model and configuration shared by the multi-process test and its worker processes."""

import jax.numpy as jnp
import numpyro

import ebm_ppl as ebm

# 8 chains over 2 processes: a block of 4 per process. (Exact equality with one process needs
# blocks that XLA vectorizes alike: on CPU a batch of 7 and batches of 4 + 3 can differ in the
# last bit, which Metropolis-Hastings decisions then amplify.)
CONFIG = dict(kernel="mala", num_chains=8, num_warmup=0, num_samples=100, progress=False)


def quartic():
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", 0.5 * jnp.sum(x**2) + 0.1 * jnp.sum(x**4))
