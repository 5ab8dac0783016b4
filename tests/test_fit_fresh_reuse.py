"""A second ``fit`` of the same configuration in one process reuses the compiled update."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest

import ebm_ppl as ebm
from ebm_ppl.objectives import stateless

_SHIFT = 0.0  # a module global the model reads: changing it must not reuse a stale program


def _gaussian():
    mu = numpyro.param("mu", jnp.zeros(2))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum((x - mu - _SHIFT) ** 2))


def _nll(p, b, k):
    return jnp.mean(0.5 * jnp.sum((b["x"] - p["mu"] - _SHIFT) ** 2, -1)), {}


_OBJECTIVE = stateless(_nll)
_DATA = np.random.default_rng(0).normal(3.0, 1.0, (64, 2)).astype(np.float32)


@pytest.fixture
def traces():
    counts: collections.Counter = collections.Counter()

    def listen(name, duration, fun_name="", **kw):
        if name == "/jax/core/compile/jaxpr_trace_duration":
            counts[fun_name.rsplit("_", 1)[0]] += 1  # fit_setup_<environment>

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield counts
    jax.monitoring.unregister_event_duration_listener(listen)


def _fit(traces, data=_DATA, lr=0.1, seed=0):
    before = dict(traces)
    res = ebm.fit(
        _gaussian,
        data,
        objective=_OBJECTIVE,
        optimizer=optax.sgd(lr),
        num_steps=32,
        batch_size=8,
        rng_key=seed,
        log_every=16,
        progress=False,
    )
    chunk = traces["fit_chunk"] - before.get("fit_chunk", 0)
    setup = traces["fit_setup"] - before.get("fit_setup", 0)
    return np.asarray(res.params["mu"]), chunk, setup


def test_second_fit_reuses_compiled_update(traces, no_executable_store):
    global _SHIFT
    first, chunk, setup = _fit(traces)
    assert chunk == 1 and setup == 1
    # same model, objective, optimizer settings and data; another seed and a new optimizer
    # object: nothing is traced again, and the same seed gives the same bits
    again, chunk, setup = _fit(traces)
    assert (chunk, setup) == (0, 0)
    np.testing.assert_array_equal(again, first)
    other_seed, chunk, setup = _fit(traces, seed=1)
    assert (chunk, setup) == (0, 0)
    assert not np.array_equal(other_seed, first)
    # another learning rate, other data values, a changed global: traced afresh
    _, chunk, _ = _fit(traces, lr=0.2)
    assert chunk == 1
    _, chunk, _ = _fit(traces, data=_DATA + 1.0)
    assert chunk == 1
    try:
        _SHIFT = 1.0
        shifted, chunk, _ = _fit(traces)
    finally:
        _SHIFT = 0.0
    assert chunk == 1
    # SGD on this quadratic is linear: the shift moves mu by (1 - (1 - lr)^steps) of itself
    np.testing.assert_allclose(shifted, first - (1.0 - 0.9**32), atol=1e-5)
