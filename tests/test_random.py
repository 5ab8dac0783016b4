"""The fused Threefry random numbers: bit-identical to jax.random, and honest where they differ."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_ppl.kernels import _random

SHAPES = [(), (1,), (7,), (3, 4), (2, 3, 5)]


@pytest.mark.parametrize(
    "key", [jax.random.PRNGKey(0), jax.random.PRNGKey(2**31 + 5), jax.random.key(7)]
)
def test_bits_uniform_normal_equal_jax_random(key):
    for shape in SHAPES:
        assert (_random.bits(key, shape) == jax.random.bits(key, shape, jnp.uint32)).all()
        assert (_random.uniform(key, shape) == jax.random.uniform(key, shape)).all()
        lo_hi = dict(minval=-2.0, maxval=3.0)
        assert (
            _random.uniform(key, shape, **lo_hi) == jax.random.uniform(key, shape, **lo_hi)
        ).all()
        assert (_random.normal(key, shape) == jax.random.normal(key, shape)).all()


def test_equal_under_jit_and_vmap():
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    ours = jax.jit(jax.vmap(lambda k: _random.normal(k, (6, 2))))(keys)
    ref = jax.jit(jax.vmap(lambda k: jax.random.normal(k, (6, 2))))(keys)
    assert (ours == ref).all()


def test_threefry_known_answer():
    # Random123 known-answer vectors for Threefry-2x32-20.
    a, b = _random.threefry2x32(
        np.uint32(0xFFFFFFFF),
        np.uint32(0xFFFFFFFF),
        jnp.full(1, 0xFFFFFFFF, jnp.uint32),
        jnp.full(1, 0xFFFFFFFF, jnp.uint32),
    )
    assert (int(a[0]), int(b[0])) == (0x1CB996FC, 0xBB002BE7)


def test_other_implementations_and_dtypes_fall_back():
    key = jax.random.key(1, impl="rbg")
    assert (_random.uniform(key, (5,)) == jax.random.uniform(key, (5,))).all()
    k = jax.random.PRNGKey(0)
    assert _random.uniform(k, (3,), jnp.float16).dtype == jnp.float16
    assert (_random.paired_bits(key, 9) == jax.random.bits(key, (9,), jnp.uint32)).all()


def test_paired_bits_are_uniform_and_uncorrelated():
    # 2^18 words: each of the 32 bit positions is fair (binomial sd 2^-10 -> 5 sd = 0.005), and
    # the two halves (first and second Threefry output) are uncorrelated.
    n = 2**18
    w = np.asarray(_random.paired_bits(jax.random.PRNGKey(11), n))
    bit_means = ((w[:, None] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=0)
    assert np.abs(bit_means - 0.5).max() < 5 * 0.5 / np.sqrt(n)
    u = (w >> 8).astype(np.float64) / 2**24
    r = np.corrcoef(u[: n // 2], u[n // 2 :])[0, 1]
    assert abs(r) < 5 / np.sqrt(n / 2)
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)


@pytest.mark.parametrize("key", [jax.random.PRNGKey(4), jax.random.key(9)])
def test_split_and_fold_in_equal_jax_random(key):
    for num in (1, 2, 5):
        ours, ref = _random.split(key, num), jax.random.split(key, num)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        assert (jax.random.key_data(ours) == jax.random.key_data(ref)).all()
    for data in (0, 1, 123456, jnp.int32(17), jnp.uint32(2**31 + 1)):
        ours, ref = _random.fold_in(key, data), jax.random.fold_in(key, data)
        assert (jax.random.key_data(ours) == jax.random.key_data(ref)).all()
    step = jnp.arange(4)
    ours = jax.jit(jax.vmap(lambda i: _random.fold_in(key, i)))(step)
    ref = jax.jit(jax.vmap(lambda i: jax.random.fold_in(key, i)))(step)
    assert (jax.random.key_data(ours) == jax.random.key_data(ref)).all()
