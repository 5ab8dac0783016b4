"""A small PCD run shared by the resume tests, importable by a second Python process.

``python -c "from tests._fit_resume import main; main()" CKPT_DIR NUM_STEPS OUT.npz`` continues
the run in ``CKPT_DIR`` to ``NUM_STEPS`` updates and writes its parameters, chains and losses.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax

import ebm_ppl as ebm
from ebm_ppl.objectives import PersistentContrastiveDivergence


def gauss():
    mu = numpyro.param("mu", jnp.zeros(2))
    log_prec = numpyro.param("log_prec", jnp.zeros(2))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum(jnp.exp(log_prec) * (x - mu) ** 2))


def data():
    rng = np.random.default_rng(0)
    return (0.5 * rng.normal(size=(64, 2)) + 1.0).astype(np.float32)


OBJECTIVE = PersistentContrastiveDivergence(
    "mala", num_mcmc_steps=2, step_size=0.2, num_chains=16, diagnostics_window=10
)


def run(num_steps, checkpoint_dir=None, *, lr=0.05, data_array=None):
    return ebm.fit(
        gauss,
        data() if data_array is None else data_array,
        objective=OBJECTIVE,
        optimizer=optax.adam(lr),
        num_steps=num_steps,
        batch_size=16,
        rng_key=jax.random.PRNGKey(3),
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=50,
        log_every=25,
        progress=False,
    )


def flatten(result):
    out = {f"params/{k}": np.asarray(v) for k, v in result.params.items()}
    out["chains/x"] = np.asarray(result.obj_state.chains["x"])
    out["loss"] = np.asarray(result.history["loss"])
    out["step"] = np.asarray(result.history["step"])
    return out


def main():
    checkpoint_dir, num_steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    result = run(num_steps, checkpoint_dir)
    np.savez(out, **flatten(result), resumed_from=np.asarray(result.flags["resumed_from"]))
