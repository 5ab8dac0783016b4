"""``fingerprint(strict=True)``: what ``fit`` decides program reuse on describes the computation."""

from __future__ import annotations

import hashlib
import types

import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest

import ebm_ppl as ebm
from ebm_ppl.objectives import stateless
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


def _last_column(x):
    return x[..., 0]  # Ellipsis among the function's constants


def _first_column(x):
    return x[..., 1]


def _named_activation(name):
    return name in {"swish", "gelu"}  # a frozenset constant


def _other_names(name):
    return name in {"swish", "tanh"}


def test_strict_fingerprint_of_ellipsis_slices_and_set_constants():
    # common constants of JAX code: fingerprintable, and a changed one is another fingerprint
    assert fingerprint(_last_column, strict=True) != fingerprint(_first_column, strict=True)
    assert fingerprint(_named_activation, strict=True) != fingerprint(_other_names, strict=True)
    assert fingerprint(slice(1, 2), strict=True) != fingerprint(slice(1, 3), strict=True)
    assert fingerprint({1, 2}, strict=True) == fingerprint({2, 1}, strict=True)
    # Ellipsis hashes as it always did without strict (saved checkpoint fingerprints stay valid)
    before = hashlib.sha256(b"opaque:builtins.ellipsis;").hexdigest()[:16]
    assert fingerprint(Ellipsis) == fingerprint(Ellipsis, strict=True) == before


def test_strict_fingerprint_of_optimizers():
    assert fingerprint(optax.adam(1e-3), strict=True) == fingerprint(optax.adam(1e-3), strict=True)
    assert fingerprint(optax.adam(1e-3), strict=True) != fingerprint(optax.adam(2e-3), strict=True)


def _shifter(offset):
    class Shifter:  # redefined with another method body, same name and attributes
        def __init__(self):
            self.tag = "shift"

        def __call__(self, mu):
            return mu + offset

    return Shifter()


def test_fit_does_not_reuse_a_program_across_a_redefined_class():
    # the model closes over the object itself: only its class's code tells the two apart
    first = _fit_shifted(_shifter(0.0))
    again = _fit_shifted(_shifter(0.0))
    shifted = _fit_shifted(_shifter(1.0))
    np.testing.assert_array_equal(again, first)
    # SGD on this quadratic is linear: the shift moves mu by (1 - (1 - lr)^steps) of itself
    np.testing.assert_allclose(shifted, first - (1.0 - 0.9**32), atol=1e-5)


_CFG = types.ModuleType("user_settings")  # a user's settings module, read as _CFG.SHIFT
_CFG.SHIFT = 0.0
_OFFSET = 0.0  # read by a method of an object the model closes over


class _Offsetter:
    def shift(self, mu):
        return mu + _OFFSET


def _fit_shifted(shift_fn):
    data = np.random.default_rng(0).normal(3.0, 1.0, (64, 2)).astype(np.float32)

    def model():
        mu = numpyro.param("mu", jnp.zeros(2))
        x = numpyro.sample("x", ebm.Flat(2))
        ebm.energy("E", 0.5 * jnp.sum((x - shift_fn(mu)) ** 2))

    nll = stateless(
        lambda p, b, k: (jnp.mean(0.5 * jnp.sum((b["x"] - shift_fn(p["mu"])) ** 2, -1)), {})
    )
    res = ebm.fit(
        model,
        data,
        objective=nll,
        optimizer=optax.sgd(0.1),
        num_steps=32,
        batch_size=8,
        rng_key=0,
        log_every=16,
        progress=False,
    )
    return np.asarray(res.params["mu"])


def _module_shift(mu):
    return mu + _CFG.SHIFT


def test_fit_sees_a_changed_module_attribute_and_a_global_read_by_a_method():
    global _OFFSET
    move = 1.0 - 0.9**32  # SGD on this quadratic is linear in the shift
    first = _fit_shifted(_module_shift)
    try:
        _CFG.SHIFT = 1.0
        np.testing.assert_allclose(_fit_shifted(_module_shift), first - move, atol=1e-5)
    finally:
        _CFG.SHIFT = 0.0
    offsetter = _Offsetter()
    base = _fit_shifted(offsetter.shift)
    np.testing.assert_allclose(base, first, atol=1e-6)
    try:
        _OFFSET = 1.0
        np.testing.assert_allclose(_fit_shifted(offsetter.shift), first - move, atol=1e-5)
    finally:
        _OFFSET = 0.0
