"""Argument checks shared by the kernels (pure Python; the kernels import nothing above them)."""

from __future__ import annotations

import operator
from typing import Any

__all__ = ["as_shape"]


def as_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints (an int ``n`` is ``(n,)``).

    Raises:
        TypeError: for anything that is not an int or a sequence of ints.
        ValueError: for a negative entry.

    Examples:
        >>> as_shape(3), as_shape((2, 4))
        ((3,), (2, 4))
    """
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"{name} must have non-negative entries, got {out}")
    return out
