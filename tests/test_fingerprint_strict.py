"""``fingerprint(strict=True)``: what ``fit`` decides program reuse on describes the computation."""

from __future__ import annotations

import optax
import pytest

from ebm_ppl.train.checkpoint import fingerprint


def _objective_class(scale):
    class Objective:  # the same name each time, as when a notebook cell is run again
        def __init__(self):
            self.weight = 1.0

        def loss(self, x):
            return scale * x

    return Objective


class _Slotted:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def test_strict_fingerprint_sees_a_redefined_method():
    first = _objective_class(1.0)()
    second = _objective_class(2.0)()  # same attributes, another loss
    assert fingerprint(first) == fingerprint(second)  # the checkpoint fingerprint: attributes
    assert fingerprint(first, strict=True) != fingerprint(second, strict=True)
    again = _objective_class(1.0)()
    assert fingerprint(first, strict=True) == fingerprint(again, strict=True)


def test_strict_fingerprint_refuses_what_it_cannot_describe():
    assert fingerprint(_Slotted(1)) == fingerprint(_Slotted(2))  # hashed by its type name
    with pytest.raises(TypeError, match="_Slotted"):
        fingerprint(_Slotted(1), strict=True)
    deep: list = []
    for _ in range(30):
        deep = [deep]
    with pytest.raises(TypeError, match="deeply"):
        fingerprint(deep, strict=True)


def test_strict_fingerprint_of_optimizers():
    assert fingerprint(optax.adam(1e-3), strict=True) == fingerprint(optax.adam(1e-3), strict=True)
    assert fingerprint(optax.adam(1e-3), strict=True) != fingerprint(optax.adam(2e-3), strict=True)
