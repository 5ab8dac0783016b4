"""``energy(name, value)``: the one way an energy enters a NumPyro program."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.primitives import _PYRO_STACK

__all__ = ["energy"]


def _plate_batch_shape() -> tuple[tuple[int, ...], bool]:
    """Batch shape implied by the enclosing plates, and whether enumeration is active."""
    sizes: dict[int, int] = {}
    enumerating = False
    for handler in _PYRO_STACK:
        if isinstance(handler, numpyro.plate):
            sizes[handler.dim] = handler.subsample_size
        elif "enum" in type(handler).__name__.lower():
            enumerating = True
    if not sizes:
        return (), enumerating
    ndim = -min(sizes)
    return tuple(sizes.get(d, 1) for d in range(-ndim, 0)), enumerating


def energy(name: str, value) -> None:
    """Add an energy term ``value`` to the model: exactly ``numpyro.factor(name, -value)``.

    The unnormalized density of the program is multiplied by ``exp(-value)``. Sign convention
    everywhere in ``ebm_ppl``: energy = potential = ``-log`` unnormalized density.

    Args:
        name: site name of the factor.
        value: real array whose shape equals the batch shape of the enclosing plates (a scalar
            outside any plate). Integer or boolean values are promoted to float.

    Raises:
        ValueError: if ``value`` is complex or its shape is not the plates' batch shape.

    Examples:
        >>> import jax.numpy as jnp, numpyro
        >>> from numpyro import handlers
        >>> from ebm_ppl import Flat, energy
        >>> def model():
        ...     x = numpyro.sample("x", Flat((2,)))
        ...     energy("E", 0.5 * jnp.sum(x**2))
        >>> tr = handlers.trace(handlers.substitute(model, data={"x": jnp.ones(2)})).get_trace()
        >>> float(-tr["E"]["fn"].log_prob(tr["E"]["value"]))
        1.0
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    arr = value if hasattr(value, "dtype") else np.asarray(value)
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise ValueError(f"value of energy {name!r} must be real, got dtype {arr.dtype}")
    if not (jnp.issubdtype(arr.dtype, jnp.floating)):
        if jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == bool:
            value = jnp.asarray(value, dtype=jnp.result_type(float))
        else:
            raise ValueError(
                f"value of energy {name!r} must be a real array, got dtype {arr.dtype}"
            )
    shape = tuple(jnp.shape(value))
    expected, enumerating = _plate_batch_shape()
    padded = (1,) * (len(expected) - len(shape)) + shape if len(shape) <= len(expected) else shape
    ok = padded == expected
    if not ok and enumerating and len(shape) > len(expected):
        # Parallel enumeration adds dimensions to the left of every plate.
        ok = shape[len(shape) - len(expected) :] == expected if expected else True
    if not ok:
        where = (
            f"the enclosing plates' batch shape {expected}" if expected else "a scalar (no plates)"
        )
        raise ValueError(
            f"value of energy {name!r} must have shape {where}, got shape {shape}; "
            "reduce over event dimensions (e.g. jnp.sum(..., axis=-1)) or declare a plate"
        )
    numpyro.factor(name, -value)
