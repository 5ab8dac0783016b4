"""Base measures for energy-based models, as NumPyro distributions.

The unnormalized density of an EBM is ``base(x) * exp(-E(x))``. The base measure fixes the state
space: :class:`Flat` is Lebesgue measure on R^shape, :class:`Spins` and :class:`Bits` are
counting measures on {-1, +1}^shape and {0, 1}^shape, :class:`Categorical` is the counting
measure on {0, ..., q-1}^shape.
"""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, ImproperUniform, constraints

__all__ = ["Bits", "Categorical", "Flat", "Spins"]


def _as_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    if isinstance(shape, (int,)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"{name} must have non-negative entries, got {out}")
    return out


class Flat(ImproperUniform):
    """Improper flat base measure on ``R^shape`` (log density 0 everywhere on its support).

    A thin :class:`numpyro.distributions.ImproperUniform` with ``batch_shape=()`` and
    ``event_shape=shape``: the whole array is one event, so an energy over it is a scalar.

    Args:
        shape: event shape of the state, an int or a tuple of ints (all ``>= 0``).
        support: a continuous NumPyro constraint (default ``constraints.real``); samplers work
            on its unconstrained image.

    Examples:
        >>> import jax.numpy as jnp
        >>> base = Flat((2, 3))
        >>> base.event_shape, float(base.log_prob(jnp.ones((2, 3))))
        ((2, 3), 0.0)
    """

    def __init__(self, shape: Any = (), *, support: constraints.Constraint = constraints.real):
        shape = _as_shape(shape)
        if support.is_discrete:
            raise ValueError(f"support must be continuous for Flat, got {support}")
        super().__init__(support, batch_shape=(), event_shape=shape)

    def __repr__(self) -> str:
        return f"Flat({self.event_shape})"


class _BinaryConstraint(constraints.Constraint):
    is_discrete = True
    event_dim = 0

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __call__(self, x):
        return (x == self.low) | (x == self.high)

    def feasible_like(self, prototype):
        return jnp.full(jnp.shape(prototype), self.high, dtype=jnp.result_type(float))

    def tree_flatten(self):
        return (), ((), {"low": self.low, "high": self.high})


spins_support = _BinaryConstraint(-1.0, 1.0)
bits_support = _BinaryConstraint(0.0, 1.0)


class _Binary(Distribution):
    """Counting measure on ``{low, high}^shape``; each unit is one batch element."""

    _low: float = 0.0
    _high: float = 1.0
    has_enumerate_support = True
    pytree_data_fields = ()
    pytree_aux_fields = ("_shape",)

    def __init__(self, shape: Any = (), *, validate_args: bool | None = None):
        self._shape = _as_shape(shape)
        super().__init__(batch_shape=self._shape, event_shape=(), validate_args=validate_args)

    @property
    def is_discrete(self) -> bool:  # numpyro reads this on the support and the distribution
        return True

    def sample(self, key, sample_shape=()):
        """Uniform random states, as floats in ``{low, high}``."""
        shape = tuple(sample_shape) + self.batch_shape
        bits = jax.random.bernoulli(key, 0.5, shape)
        return jnp.where(bits, self._high, self._low).astype(jnp.result_type(float))

    def log_prob(self, value):
        # Counting measure: density 1 on the support, 0 elsewhere.
        value = jnp.asarray(value)
        ok = (value == self._low) | (value == self._high)
        out = jnp.where(ok, 0.0, -jnp.inf)
        return jnp.broadcast_to(out, jax.lax.broadcast_shapes(out.shape, self.batch_shape))

    def enumerate_support(self, expand: bool = True):
        values = jnp.array([self._low, self._high], dtype=jnp.result_type(float))
        values = values.reshape((2,) + (1,) * len(self.batch_shape))
        if expand:
            values = jnp.broadcast_to(values, (2,) + self.batch_shape)
        return values

    @property
    def mean(self):
        return jnp.full(self.batch_shape, 0.5 * (self._low + self._high))

    @property
    def variance(self):
        return jnp.full(self.batch_shape, 0.25 * (self._high - self._low) ** 2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.batch_shape})"


class Spins(_Binary):
    """Counting measure on spin configurations ``{-1, +1}^shape``.

    ``batch_shape = shape`` and ``event_shape = ()`` (each spin is one batch element, no
    ``to_event``), so enumeration and per-unit conditionals see every unit. Values are floats in
    ``{-1., +1.}`` so energies are differentiable in them. NumPyro's own ``DiscreteGibbs`` assumes
    a support ``{0, ..., K-1}``; use :class:`Bits` (``s = 2x - 1`` in the energy) with it, or the
    library's Gibbs kernels, which handle both.

    Args:
        shape: lattice shape, an int or a tuple of ints.

    Examples:
        >>> import jax
        >>> s = Spins((4, 4)).sample(jax.random.PRNGKey(0))
        >>> s.shape, sorted(set(s.ravel().tolist())) == [-1.0, 1.0]
        ((4, 4), True)
    """

    _low = -1.0
    _high = 1.0
    support = spins_support


class Bits(_Binary):
    """Counting measure on binary states ``{0, 1}^shape``.

    ``batch_shape = shape``, ``event_shape = ()``, values are floats in ``{0., 1.}``.

    Args:
        shape: state shape, an int or a tuple of ints.

    Examples:
        >>> Bits(3).enumerate_support().shape
        (2, 3)
    """

    _low = 0.0
    _high = 1.0
    support = bits_support


class Categorical(Distribution):
    """Counting measure on categorical states ``{0, ..., num_states - 1}^shape``.

    ``batch_shape = shape`` and ``event_shape = ()``: each unit is one batch element, as for
    NumPyro's ``dist.Categorical``, so enumeration, NumPyro's discrete samplers and the library's
    categorical kernels see every unit. Values are integers (``int32``, NumPyro's dtype); an
    energy uses them as indices (``h[s]``, ``s[i] == s[j]``) or through
    :func:`ebm_ppl.one_hot` (a ``jax.nn.one_hot`` whose encoding the conditionals can
    differentiate). ``Categorical(shape, 2)`` holds the same states as :class:`Bits`.

    Args:
        shape: state shape, an int or a tuple of ints.
        num_states: number of states ``q >= 2`` of each unit.

    Raises:
        ValueError: ``num_states < 2``.
        TypeError: ``num_states`` not an int.

    Examples:
        >>> import jax
        >>> base = Categorical((2, 2), 3)
        >>> base.batch_shape, base.event_shape, base.enumerate_support(expand=False).ravel().tolist()
        ((2, 2), (), [0, 1, 2])
        >>> str(base.sample(jax.random.PRNGKey(0)).dtype)
        'int32'
    """

    has_enumerate_support = True
    pytree_data_fields = ()
    pytree_aux_fields = ("_shape", "num_states")

    def __init__(
        self, shape: Any = (), num_states: Any = None, *, validate_args: bool | None = None
    ):
        if num_states is None:
            raise TypeError(
                "Categorical needs num_states, the number of states q >= 2 of each unit"
            )
        if isinstance(num_states, bool):
            raise TypeError(f"num_states must be an int >= 2, got {num_states!r}")
        try:
            q = operator.index(num_states)
        except TypeError:
            raise TypeError(f"num_states must be an int >= 2, got {num_states!r}") from None
        if q < 2:
            raise ValueError(
                f"num_states must be >= 2 (a unit with one state is a constant), got {q}"
            )
        self._shape = _as_shape(shape)
        self.num_states = q
        super().__init__(batch_shape=self._shape, event_shape=(), validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return constraints.integer_interval(0, self.num_states - 1)

    @property
    def is_discrete(self) -> bool:
        return True

    def sample(self, key, sample_shape=()):
        """Uniform random states, ``int32`` in ``{0, ..., num_states - 1}``."""
        shape = tuple(sample_shape) + self.batch_shape
        return jax.random.randint(key, shape, 0, self.num_states, dtype=jnp.int32)

    def log_prob(self, value):
        # Counting measure: density 1 on the support, 0 elsewhere.
        value = jnp.asarray(value)
        ok = (value >= 0) & (value < self.num_states) & (value == jnp.floor(value))
        out = jnp.where(ok, 0.0, -jnp.inf)
        return jnp.broadcast_to(out, jax.lax.broadcast_shapes(out.shape, self.batch_shape))

    def enumerate_support(self, expand: bool = True):
        values = jnp.arange(self.num_states, dtype=jnp.int32)
        values = values.reshape((self.num_states,) + (1,) * len(self.batch_shape))
        if expand:
            values = jnp.broadcast_to(values, (self.num_states,) + self.batch_shape)
        return values

    @property
    def mean(self):
        return jnp.full(self.batch_shape, 0.5 * (self.num_states - 1))

    @property
    def variance(self):
        return jnp.full(self.batch_shape, (self.num_states**2 - 1) / 12.0)

    def __repr__(self) -> str:
        return f"Categorical({self.batch_shape}, num_states={self.num_states})"
