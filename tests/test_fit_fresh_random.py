"""The fused Threefry hash is written with lax primitives: same bits as the jnp-operator
form it replaced, cheaper to trace."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.kernels import _random

_ROT = (13, 15, 26, 6, 17, 29, 16, 24)


def _threefry_jnp(k0, k1, x0, x1):
    """The hash as it was written before, with jax.numpy operators."""
    k0 = jnp.asarray(k0, jnp.uint32)
    k1 = jnp.asarray(k1, jnp.uint32)
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for r in range(20):
        x0 = x0 + x1
        rot = _ROT[r % 8]
        x1 = ((x1 << np.uint32(rot)) | (x1 >> np.uint32(32 - rot))) ^ x0
        if r % 4 == 3:
            i = r // 4 + 1
            x0 = x0 + ks[i % 3]
            x1 = x1 + ks[(i + 1) % 3] + np.uint32(i)
    return x0, x1


def test_threefry_bits_equal_jnp_form():
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**32, size=(4, 2), dtype=np.uint32)
    x0 = jnp.asarray(rng.integers(0, 2**32, size=(3, 257), dtype=np.uint32))
    x1 = jnp.asarray(rng.integers(0, 2**32, size=(3, 257), dtype=np.uint32))
    for k0, k1 in words:
        got = jax.jit(_random.threefry2x32)(k0, k1, x0, x1)
        want = jax.jit(_threefry_jnp)(k0, k1, x0, x1)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == jnp.uint32
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def _python_calls_to_trace(fn):
    """Python function calls made while tracing ``fn`` (deterministic, unlike a timing)."""
    x = jnp.zeros(8, jnp.uint32)
    count = [0]

    def profile(frame, event, arg):
        if event == "call":
            count[0] += 1

    # a new function each time: make_jaxpr caches traces of the same callable
    traced = lambda a, b: fn(np.uint32(1), np.uint32(2), a, b)  # noqa: E731
    sys.setprofile(profile)
    try:
        jax.make_jaxpr(traced)(x, x)
    finally:
        sys.setprofile(None)
    return count[0]


def test_threefry_traces_with_less_python_work_than_jnp_form():
    for fn in (_random.threefry2x32, _threefry_jnp):  # warm JAX's own caches first
        _python_calls_to_trace(fn)
    ours = _python_calls_to_trace(_random.threefry2x32)
    theirs = _python_calls_to_trace(_threefry_jnp)
    # measured 7602 against 15458: each jnp operator goes through its wrappers
    assert ours < 0.6 * theirs, (ours, theirs)
