"""Chains sharded over devices: equality with vectorized chains, device attribution, errors.

The multi-device checks run in a fresh Python process with 4 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before JAX starts).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpyro
import pytest

import ebm_ppl as ebm
from ebm_ppl.infer import chains

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-m", "tests._sharding_worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_sharded_draws_equal_vectorized(four_devices):
    r = four_devices
    assert r["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert r["chain_method"] == "sharded"
    assert r["equal_draws"], f"max |sharded - vectorized| = {r['max_abs_diff']}"
    # adaptation is per chain (the step sizes differ between chains) and identical per chain
    assert r["equal_step_size"]
    assert r["step_size_spread"] > 0


@pytest.mark.subprocess
def test_chains_attributed_to_devices(four_devices):
    r = four_devices
    assert r["sharded_device_coord"] == [f"cpu:{c // 64}" for c in range(256)]
    assert r["vector_device_coord"] == ["cpu:0"]
    assert r["good_group_index"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert r["good_num_chains"] == [64, 64, 64, 64]
    assert r["good_bad_groups"] == []  # no false alarm on exchangeable groups


@pytest.mark.subprocess
def test_planted_bad_device_is_named(four_devices):
    r = four_devices
    assert r["planted_bad_groups"] == ["cpu:3"]
    assert not r["planted_ok"]
    assert r["report_text_has_bad"]
    assert max(r["planted_worst"]) == r["planted_worst"][3] > r["planted_threshold"]


@pytest.mark.subprocess
def test_chain_count_not_divisible_is_padded(four_devices):
    r = four_devices
    assert r["padded_shape"] == [6, 20, 2]
    assert r["padded_equal"]


@pytest.mark.subprocess
def test_device_errors_on_four_devices(four_devices):
    errors = four_devices["errors"]
    assert "devices=8" in errors["devices"] and "4 local device" in errors["devices"]
    assert "chain_method='parallel'" in errors["parallel"]


def _gauss():
    x = numpyro.sample("x", ebm.Flat((2,)))
    ebm.energy("E", 0.5 * jnp.sum(x**2))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(chain_method="pmap"), ValueError, "chain_method must be one of"),
        (dict(devices=2), ValueError, "devices=2 but this process has 1"),
        (dict(devices=0), ValueError, "devices=0"),
        (dict(devices="cpu"), TypeError, "devices must be None, an int or a sequence"),
        (dict(devices=[]), ValueError, "devices must not be empty"),
        (dict(devices=["cpu:0"]), TypeError, "devices must hold jax.Device"),
    ],
)
def test_bad_chain_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ebm.sample(_gauss, kernel="mala", num_chains=4, progress=False, **kwargs)


def test_placement_single_process():
    p = chains.place_chains(5, "auto")
    assert (p.chain_method, p.num_local, p.start, p.process_count) == ("vectorized", 5, 0, 1)
    assert chains.chain_device_labels(p) == ["cpu:0"] * 5
    with pytest.raises(ValueError, match="in_axes entries must be 0"):
        chains.map_chains(lambda x: x, "vectorized", in_axes=1)(jnp.zeros(3))
