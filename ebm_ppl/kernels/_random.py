"""JAX's default random numbers, computed by a fused Threefry-2x32 (same bits, fewer passes).

On CPU, JAX lowers its Threefry-2x32 hash as a rolled loop of five iterations, so every array
of counters makes several round trips through memory. The functions here compute the same
hash fully unrolled in ``jax.numpy``, which XLA fuses into one elementwise loop: the output is
*bit for bit* what :func:`jax.random.bits`, :func:`jax.random.uniform` and
:func:`jax.random.normal` return for the same key (with JAX's default ``threefry2x32``
implementation and ``jax_threefry_partitionable``, the default since JAX 0.5), at about
three to four times the throughput on CPU. Anything else (other PRNG implementations, other
dtypes, arrays of ``2^32`` or more numbers) is passed on to :mod:`jax.random`, so these are
drop-in replacements. Samplers whose cost is one random number per unit (block Gibbs on
Ising models and RBMs) use them.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import _random
    >>> key = jax.random.PRNGKey(3)
    >>> bool(jnp.all(_random.uniform(key, (5,)) == jax.random.uniform(key, (5,))))
    True
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["as_key", "bits", "fold_in", "normal", "paired_bits", "split", "uniform"]

_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return lax.bitwise_or(
        lax.shift_left(x, np.uint32(r)), lax.shift_right_logical(x, np.uint32(32 - r))
    )


def threefry2x32(k0: Any, k1: Any, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash with 20 rounds (Salmon et al. 2011), unrolled.

    Written with :mod:`jax.lax` primitives, not ``jax.numpy`` operators: each ``jnp`` operator
    is a small jitted function whose tracing costs far more than binding one primitive, and the
    unrolled hash has about 140 of them (the same operations, so the same bits).

    Args:
        k0, k1: the two uint32 key words (scalars).
        x0, x1: uint32 counter arrays of one shape.

    Returns:
        two uint32 arrays of that shape, equal to JAX's ``threefry2x32_p``.

    Examples:
        >>> import jax.numpy as jnp, numpy as np
        >>> a, b = threefry2x32(np.uint32(0), np.uint32(0), jnp.zeros(1, jnp.uint32),
        ...                     jnp.zeros(1, jnp.uint32))
        >>> hex(int(a[0])), hex(int(b[0]))     # Random123 known-answer test, zero key and counter
        ('0x6b200159', '0x99ba4efe')
    """
    k0 = jnp.asarray(k0, jnp.uint32)
    k1 = jnp.asarray(k1, jnp.uint32)
    x0 = jnp.asarray(x0, jnp.uint32)
    x1 = jnp.asarray(x1, jnp.uint32)
    ks = (k0, k1, lax.bitwise_xor(lax.bitwise_xor(k0, k1), np.uint32(0x1BD11BDA)))
    # key words broadcast once, not in each of the 17 additions that use them
    kb = tuple(lax.broadcast_in_dim(k, x0.shape, ()) for k in ks)
    x0 = lax.add(x0, kb[0])
    x1 = lax.add(x1, kb[1])
    for r in range(20):
        x0 = lax.add(x0, x1)
        x1 = lax.bitwise_xor(_rotl(x1, _ROTATIONS[r % 8]), x0)
        if r % 4 == 3:
            i = r // 4 + 1
            x0 = lax.add(x0, kb[i % 3])
            x1 = lax.add(lax.add(x1, kb[(i + 1) % 3]), np.uint32(i))
    return x0, x1


def _hash(words: jax.Array, counters: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Both hash outputs at 64-bit counters ``(0, counters)``: JAX's layout below ``2^32``."""
    return threefry2x32(words[0], words[1], jnp.zeros_like(counters), counters)


def _is_typed(key: Any) -> bool:
    dtype = getattr(key, "dtype", None)
    return dtype is not None and bool(jnp.issubdtype(dtype, jax.dtypes.prng_key))


def _key_words(key: Any) -> jax.Array | None:
    """The two uint32 key words of one key, or ``None`` when the fused path does not apply."""
    config: Any = jax.config
    if not config.jax_threefry_partitionable:
        return None
    if _is_typed(key):
        if key.shape != () or "threefry" not in str(jax.random.key_impl(key)):
            return None
        return jax.random.key_data(key)
    if config.jax_default_prng_impl != "threefry2x32":
        return None
    key = jnp.asarray(key)
    if key.dtype != jnp.uint32 or key.shape != (2,):
        return None
    return key


def _rewrap(key: Any, data: jax.Array) -> jax.Array:
    """New key data in the form of ``key`` (typed keys stay typed)."""
    if _is_typed(key):
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
    return data


def split(key: Any, num: int = 2) -> jax.Array:
    """``num`` new keys, identical to ``jax.random.split(key, num)``.

    JAX's ``split`` (and ``fold_in``) run the hash as a rolled loop on CPU, a small ``while``
    loop per call; inside a training step's scan those loops cost more than the arithmetic.

    Args:
        key: a PRNG key.
        num: number of keys.

    Returns:
        keys of shape ``(num,)`` (typed) or ``(num, 2)`` (raw), like :func:`jax.random.split`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> key = jax.random.PRNGKey(5)
        >>> bool(jnp.all(split(key, 3) == jax.random.split(key, 3)))
        True
    """
    words = _key_words(key)
    num = int(num)
    if words is None:
        return jax.random.split(key, num)
    return _rewrap(key, jnp.stack(_hash(words, jax.lax.iota(jnp.uint32, num)), axis=-1))


def fold_in(key: Any, data: Any) -> jax.Array:
    """A key folded with an integer, identical to ``jax.random.fold_in(key, data)``.

    Args:
        key: a PRNG key.
        data: a 32-bit integer scalar (e.g. a step counter).

    Returns:
        a key of the same kind as ``key``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> key = jax.random.PRNGKey(5)
        >>> bool(jnp.all(fold_in(key, 7) == jax.random.fold_in(key, 7)))
        True
    """
    words = _key_words(key)
    data = jnp.asarray(data)
    if words is None or data.shape != () or data.dtype.itemsize > 4:
        return jax.random.fold_in(key, data)
    # split(key, n)[i] is fold_in(key, i): the same counter layout.
    return _rewrap(key, jnp.stack(_hash(words, data.astype(jnp.uint32)), axis=-1))


def _shape(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)


def bits(key: Any, shape: Any = ()) -> jax.Array:
    """uint32 random bits, identical to ``jax.random.bits(key, shape, jnp.uint32)``.

    Args:
        key: a PRNG key (typed or raw ``uint32[2]``).
        shape: output shape.

    Returns:
        uint32 array of ``shape``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> key = jax.random.key(0)
        >>> bool(jnp.all(bits(key, (2, 3)) == jax.random.bits(key, (2, 3), jnp.uint32)))
        True
    """
    shape = _shape(shape)
    words = _key_words(key)
    size = math.prod(shape)
    if words is None or size >= 2**32:
        return jax.random.bits(key, shape, jnp.uint32)
    # JAX's partitionable layout: counters (hi, lo) of the flat index; the two outputs xor-ed.
    a, b = _hash(words, jax.lax.iota(jnp.uint32, size).reshape(shape))
    return a ^ b


def paired_bits(key: Any, shape: Any) -> jax.Array:
    """uint32 words of ``shape`` using *both* outputs of each Threefry-2x32 call.

    Half the hashing of :func:`bits` (which, like JAX, xors the two outputs into one word).
    The two outputs fill the two halves of the first axis of even length (a concatenation,
    which XLA materializes once instead of recomputing the hash in every fused consumer of a
    cheap-looking elementwise producer). Shapes without an even axis take the flat layout. The
    stream differs from :func:`jax.random.bits`; it is Threefry-2x32-20 output all the same.

    Args:
        key: a PRNG key (typed or raw ``uint32[2]``); other implementations fall back to
            ``jax.random.bits``.
        shape: output shape.

    Returns:
        uint32 array of ``shape``.

    Examples:
        >>> import jax
        >>> paired_bits(jax.random.PRNGKey(0), (4, 3)).shape
        (4, 3)
    """
    shape = _shape(shape)
    words = _key_words(key)
    size = math.prod(shape)
    if words is None or size >= 2**32:
        return jax.random.bits(key, shape, jnp.uint32)
    even = [i for i, n in enumerate(shape) if n % 2 == 0]
    axis, half = (even[0], list(shape)) if even else (0, [(size + 1) // 2])
    half[axis] //= 2 if even else 1
    a, b = _hash(words, jax.lax.iota(jnp.uint32, math.prod(half)).reshape(half))
    out = jnp.concatenate([a, b], axis=axis)
    return out if even else out[:size].reshape(shape)


def uniform(
    key: Any, shape: Any = (), dtype: Any = jnp.float32, minval: Any = 0.0, maxval: Any = 1.0
) -> jax.Array:
    """Uniforms on ``[minval, maxval)``, identical to :func:`jax.random.uniform`.

    Args:
        key: a PRNG key.
        shape: output shape.
        dtype: float dtype (float32 takes the fused path).
        minval, maxval: bounds (scalars or broadcastable arrays).

    Returns:
        array of ``shape`` and ``dtype``.

    Examples:
        >>> import jax
        >>> u = uniform(jax.random.PRNGKey(0), (1000,))
        >>> bool((u >= 0).all() and (u < 1).all())
        True
    """
    dtype = jnp.dtype(dtype)
    if dtype != jnp.float32 or _key_words(key) is None:
        return jax.random.uniform(key, shape, dtype, minval, maxval)
    return _uniform_f32(key, _shape(shape), minval, maxval)


# Jitted like jax.random.uniform itself, so that eager calls round (fuse) the same way.
@partial(jax.jit, static_argnums=1)
def _uniform_f32(key: Any, shape: tuple[int, ...], minval: Any, maxval: Any) -> jax.Array:
    dtype = jnp.dtype(jnp.float32)
    minval = jnp.asarray(minval, dtype)
    maxval = jnp.asarray(maxval, dtype)
    # 23 random mantissa bits under the exponent of 1.0 give [1, 2); shift to [0, 1).
    float_bits = (bits(key, shape) >> np.uint32(9)) | np.uint32(0x3F800000)
    floats = jax.lax.bitcast_convert_type(float_bits, dtype) - jnp.asarray(1.0, dtype)
    return jnp.maximum(minval, floats * (maxval - minval) + minval)


def normal(key: Any, shape: Any = (), dtype: Any = jnp.float32) -> jax.Array:
    """Standard normals, identical to :func:`jax.random.normal` (real dtypes).

    Args:
        key: a PRNG key.
        shape: output shape.
        dtype: float dtype (float32 takes the fused path).

    Returns:
        array of ``shape`` and ``dtype``.

    Examples:
        >>> import jax
        >>> z = normal(jax.random.PRNGKey(0), (20000,))
        >>> abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1) < 0.03
        True
    """
    dtype = jnp.dtype(dtype)
    if dtype != jnp.float32 or _key_words(key) is None:
        return jax.random.normal(key, shape, dtype)
    return _normal_f32(key, _shape(shape))


@partial(jax.jit, static_argnums=1)
def _normal_f32(key: Any, shape: tuple[int, ...]) -> jax.Array:
    dtype = np.dtype(np.float32)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    u = _uniform_f32(key, shape, lo, np.array(1.0, dtype))
    return jnp.asarray(np.sqrt(2), dtype) * jax.lax.erf_inv(u)


def as_key(rng_key: Any, name: str = "rng_key", *, default: int | None = None) -> jax.Array:
    """A PRNG key from what the public entry points accept: a key or an int seed.

    Every ``rng_key`` argument of ``sample``, ``fit``, ``log_partition``, ``log_likelihood``
    and the objectives' ``init`` goes through this one function.

    Args:
        rng_key: a key (``jax.random.PRNGKey(seed)``, raw ``uint32[2]``, or a typed
            ``jax.random.key(seed)``), an int seed, or ``None``.
        name: the argument's name, for error messages.
        default: seed used when ``rng_key`` is ``None``; ``None`` makes the key required.

    Returns:
        the key (an int ``n`` becomes ``jax.random.PRNGKey(n)``; keys pass through unchanged,
        traced ones included).

    Raises:
        TypeError: for anything else (bools, floats, batches of keys, a missing key).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> bool(jnp.all(as_key(3) == jax.random.PRNGKey(3)))
        True
        >>> key = jax.random.key(1)
        >>> as_key(key) is key, bool(jnp.all(as_key(None, default=0) == jax.random.PRNGKey(0)))
        (True, True)
    """
    if rng_key is None:
        if default is None:
            raise TypeError(f"{name} is required: a PRNG key (jax.random.PRNGKey(seed)) or an int")
        return jax.random.PRNGKey(default)
    if isinstance(rng_key, (int, np.integer)) and not isinstance(rng_key, (bool, np.bool_)):
        return jax.random.PRNGKey(int(rng_key))
    if isinstance(rng_key, np.ndarray):
        rng_key = jnp.asarray(rng_key)
    if isinstance(rng_key, jax.Array):
        if _is_typed(rng_key) and rng_key.shape == ():
            return rng_key
        if rng_key.dtype == jnp.uint32 and rng_key.shape == (2,):
            return rng_key
    raise TypeError(
        f"{name} must be a PRNG key (jax.random.PRNGKey(seed) or jax.random.key(seed)) or an "
        f"int seed, got {rng_key!r}"
    )
