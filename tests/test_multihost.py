"""Two CPU processes on loopback under ``jax.distributed``: gathered draws equal one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import ebm_ppl as ebm
from tests._multihost_common import CONFIG, quartic

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.subprocess
def test_two_processes_gather_single_process_draws(tmp_path):
    port = _free_port()
    out = tmp_path / "gathered.npz"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests._multihost_worker", str(i), "2", str(port), str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    # The single-process reference runs meanwhile, in this process.
    ref = ebm.sample(quartic, rng_key=jax.random.PRNGKey(3), **CONFIG)
    logs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        logs.append(stderr[-3000:])
        assert p.returncode == 0, "\n---\n".join(logs)
    got = np.load(out)
    assert int(got["num_processes"]) == 2
    assert got["x"].shape == ref.posterior["x"].shape == (8, 100, 2)
    np.testing.assert_array_equal(got["x"], ref.posterior["x"].values)
    np.testing.assert_array_equal(got["step_size"], ref.sample_stats["step_size"].values)
    # chains 0-3 ran in process 0, chains 4-7 in process 1, each on its own device
    devices = got["device"].tolist()
    assert [d.split("/")[0] for d in devices] == ["p0"] * 4 + ["p1"] * 4
    assert len(set(devices[:4])) == 1 and len(set(devices[4:])) == 1 and devices[0] != devices[4]
    assert int(got["num_groups"]) == 2
    # 7 chains: blocks of 4 and 3, gathered in chain order with dtypes kept
    np.testing.assert_array_equal(got["uneven"], np.arange(7, dtype=np.float32))
    np.testing.assert_array_equal(got["uneven_bool"], np.arange(7) > 2)
    assert got["uneven_local"].tolist() == [0, 4]
