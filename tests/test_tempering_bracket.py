"""Stepping-stone ``log Z`` from a parallel-tempering run, bracketed by AIS: forward AIS is a
lower bound on ``log Z`` in expectation, reverse AIS (started from exact draws) an upper bound.
On the 4x4 Ising torus below its critical temperature all three are checked against the exact
value from enumerating the 2^16 states."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ebm_ppl.models import ising

import ebm_ppl as ebm

SHAPE = (4, 4)
BETA = 1.0 / 1.5  # T = 1.5 < T_c = 2.269


def _states_and_log_z():
    spins = np.array(list(itertools.product([-1.0, 1.0], repeat=16))).reshape(-1, *SHAPE)
    h = -np.sum(spins * np.roll(spins, 1, axis=1) + spins * np.roll(spins, 1, axis=2), (1, 2))
    e = BETA * h
    log_w = -(e - e.min())
    log_z = float(np.log(np.sum(np.exp(log_w))) - e.min())
    p = np.exp(log_w - np.log(np.sum(np.exp(log_w))))
    return spins, p, log_z


@pytest.mark.slow
def test_stepping_stone_log_z_lies_in_the_ais_bracket():
    spins, p, log_z = _states_and_log_z()
    kw = dict(model_args=(SHAPE,), model_kwargs={"beta": BETA})
    pt = ebm.log_partition(
        ising.model,
        method="pt",
        num_chains=16,
        num_temperatures=8,
        num_warmup=300,
        num_samples=1500,
        rng_key=2,
        **kw,
    )
    forward = ebm.log_partition(
        ising.model, method="ais", num_chains=128, num_temperatures=300, rng_key=3, **kw
    )
    draws = spins[np.random.default_rng(4).choice(len(p), size=128, p=p)]
    reverse = ebm.log_partition(
        ising.model,
        method="ais",
        num_chains=128,
        num_temperatures=300,
        reverse=True,
        samples={"s": draws},
        rng_key=5,
        **kw,
    )
    z = 3.0  # each interval below is an estimate +- 3 standard errors
    lower = forward.log_z - z * forward.stderr
    upper = reverse.log_z + z * reverse.stderr
    assert lower <= log_z <= upper, (forward, reverse, log_z)
    assert lower <= pt.log_z + z * pt.stderr and pt.log_z - z * pt.stderr <= upper, (
        pt,
        forward,
        reverse,
    )
    assert abs(pt.log_z - log_z) < z * pt.stderr, (pt.log_z, pt.stderr, log_z)
