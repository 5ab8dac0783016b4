"""Run in a fresh process with 4 simulated CPU devices; print one JSON line of results.

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set by the caller (it has to be
in place before JAX initialises its backend).
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

import ebm_ppl as ebm
from ebm_ppl.diagnostics import mixing_report
from ebm_ppl.infer.chains import map_chains

NUM_CHAINS = 256
CONFIG = dict(kernel="mala", num_chains=NUM_CHAINS, num_samples=100, progress=False)


def quartic():
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", 0.5 * jnp.sum(x**2) + 0.1 * jnp.sum(x**4))


def main():
    out = {"devices": [str(d) for d in jax.devices()]}
    key = jax.random.PRNGKey(3)

    # 1. 256 MALA chains with per-chain warmup: sharded over 4 devices vs vectorized on one.
    sharded = ebm.sample(quartic, chain_method="sharded", num_warmup=50, rng_key=key, **CONFIG)
    vector = ebm.sample(quartic, chain_method="vectorized", num_warmup=50, rng_key=key, **CONFIG)
    xs, xv = sharded.posterior["x"].values, vector.posterior["x"].values
    out["equal_draws"] = bool(np.array_equal(xs, xv))
    out["max_abs_diff"] = float(np.max(np.abs(xs - xv)))
    out["equal_step_size"] = bool(
        np.array_equal(
            sharded.sample_stats["step_size"].values, vector.sample_stats["step_size"].values
        )
    )
    out["step_size_spread"] = float(np.ptp(sharded.sample_stats["step_size"].values[:, -1]))
    out["sharded_device_coord"] = sharded.posterior["device"].values.tolist()
    out["vector_device_coord"] = sorted(set(vector.posterior["device"].values.tolist()))
    out["chain_method"] = sharded.posterior.attrs["chain_method"]
    good = mixing_report(sharded)
    out["good_bad_groups"] = good.bad_groups
    out["good_num_chains"] = good.groups["num_chains"].tolist()
    out["good_group_index"] = good.groups.index.tolist()

    # 2. Planted bad group: the chains of the last device start far away, no warmup.
    rng = np.random.default_rng(0)
    init = rng.normal(size=(NUM_CHAINS, 2)).astype(np.float32)
    init[3 * NUM_CHAINS // 4 :] = 6.0
    planted = ebm.sample(
        quartic,
        chain_method="sharded",
        num_warmup=0,
        rng_key=key,
        init_values={"x": init},
        **CONFIG,
    )
    bad = mixing_report(planted)
    out["planted_bad_groups"] = bad.bad_groups
    out["planted_ok"] = bad.ok
    out["planted_worst"] = bad.groups["max_abs_z"].tolist()
    out["planted_threshold"] = bad.z_threshold
    out["report_text_has_bad"] = "BAD device" in str(bad)

    # 3. A chain count the device count does not divide: padded, same values as vectorized.
    def walk(k, x0, scale):
        def body(x, kk):
            x = x - 0.1 * x + scale * jax.random.normal(kk, x.shape)
            return x, x

        return jax.lax.scan(body, x0, jax.random.split(k, 20))[1]

    keys = jax.random.split(key, 6)
    x0 = jnp.arange(12.0).reshape(6, 2)
    a = map_chains(walk, "sharded", in_axes=(0, 0, None))(keys, x0, 0.3)
    b = map_chains(walk, "vectorized", in_axes=(0, 0, None))(keys, x0, 0.3)
    out["padded_shape"] = list(a.shape)
    out["padded_equal"] = bool(np.array_equal(np.asarray(a), np.asarray(b)))

    # 4. Errors.
    errors = {}
    try:
        ebm.sample(quartic, kernel="mala", devices=8, progress=False)
    except ValueError as e:
        errors["devices"] = str(e)
    try:
        ebm.sample(quartic, kernel="mala", num_chains=8, chain_method="parallel", progress=False)
    except ValueError as e:
        errors["parallel"] = str(e)
    out["errors"] = errors
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
