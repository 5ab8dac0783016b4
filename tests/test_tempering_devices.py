"""Parallel tempering gives the same chains on one device and sharded over two (a fresh
process with 2 simulated CPU devices: the flag must be set before JAX starts)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json
import numpy as np
import jax
import ebm_ppl as ebm
from ebm_ppl.models import ising

kw = dict(model_args=((3, 3),), model_kwargs={"beta": 0.7}, tempering=4, num_chains=8,
          num_warmup=40, num_samples=60, progress=False, rng_key=5)
a = ebm.sample(ising.model, chain_method="vectorized", **kw)
b = ebm.sample(ising.model, chain_method="sharded", devices=2, **kw)
print(json.dumps({
    "devices": [str(d) for d in jax.devices()],
    "equal_draws": bool(np.array_equal(a.posterior["s"].values, b.posterior["s"].values)),
    "equal_replicas": bool(np.array_equal(a.sample_stats["replica"].values,
                                          b.sample_stats["replica"].values)),
    "equal_betas": bool(np.array_equal(a.sample_stats["beta"].values,
                                       b.sample_stats["beta"].values)),
    "sharded_devices": sorted(set(b.posterior["device"].values.tolist())),
}))
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_sharded_tempering_equals_vectorized():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", WORKER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["devices"] == ["cpu:0", "cpu:1"]
    assert r["sharded_devices"] == ["cpu:0", "cpu:1"]
    # every chain carries its own replicas, schedule and adaptation: placement changes nothing
    assert r["equal_draws"] and r["equal_replicas"] and r["equal_betas"]
