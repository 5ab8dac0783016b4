"""Potts chains at the critical temperature, shared by the lattice-kernel tests."""

import jax
import jax.numpy as jnp
import numpy as np
from ebm_ppl.models import potts


def critical_energies(step, init, q, L, num_sweeps, num_chains, key):
    """Energy per site ``(chain, sweep)`` at T_c; half the chains start ordered, half random.

    ``step(key, state, beta) -> (state, info)`` and ``init(s, q, beta=beta) -> state`` are a
    lattice kernel's pair (the compact heat bath or Swendsen–Wang); states carry ``.energy``.
    """
    beta = 1.0 / potts.critical_temperature(q)
    half = num_chains // 2
    starts = jnp.concatenate(
        [
            jnp.zeros((half, L, L), jnp.int32),
            jax.random.randint(key, (num_chains - half, L, L), 0, q),
        ]
    )

    @jax.jit
    def run(key):
        def chain(k, s):
            def body(st, kk):
                st, _ = step(kk, st, beta)
                return st, st.energy

            st = init(s, q, beta=beta)
            return jax.lax.scan(body, st, jax.random.split(k, num_sweeps))[1]

        return jax.vmap(chain)(jax.random.split(key, num_chains), starts)

    return np.asarray(run(jax.random.fold_in(key, 1)), np.float64) / (beta * L * L)
