"""A parameter started from a Python float (weakly typed) does not make ``fit`` compile again."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from numpyro.distributions import constraints

import ebm_ppl as ebm
from ebm_ppl.objectives import stateless


def _scale_model():
    sigma = numpyro.param("sigma", 1.0, constraint=constraints.positive)  # a Python float
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum(x**2) / sigma**2)


def _nll(p, b, k):
    s = p["sigma"]
    return jnp.mean(0.5 * jnp.sum(b["x"] ** 2, -1) / s**2 + 2.0 * jnp.log(s)), {}


def test_python_float_parameter_traces_the_chunk_once(no_executable_store):
    traces: collections.Counter = collections.Counter()

    def listen(name, duration, fun_name="", **kw):
        if name == "/jax/core/compile/jaxpr_trace_duration":
            traces[fun_name.rsplit("_", 1)[0]] += 1  # fit_chunk_<environment>

    data = np.random.default_rng(1).normal(0.0, 2.0, (256, 2)).astype(np.float32)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        res = ebm.fit(
            _scale_model,
            data,
            objective=stateless(_nll),
            optimizer=optax.adam(0.05),
            num_steps=400,
            batch_size=32,
            rng_key=0,
            log_every=100,  # four chunks of the same length
            progress=False,
        )
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert traces["fit_chunk"] == 1, dict(traces)
    # and it learns: the maximum-likelihood scale is the data's RMS per coordinate
    rms = float(np.sqrt(np.mean(data**2)))
    assert abs(float(res.params["sigma"]) - rms) < 0.1 * rms
