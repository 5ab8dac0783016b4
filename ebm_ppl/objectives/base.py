"""The objective contract shared by every learning rule (after Optax's ``GradientTransformation``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

__all__ = ["Objective", "ObjectiveSpec", "stateless"]

Batch = dict[str, jax.Array]


class Objective(NamedTuple):
    """A pair of pure functions defining a training loss.

    Attributes:
        init: ``init(rng_key, params, batch) -> obj_state``; ``batch`` is a dict data site ->
            array with a leading batch axis (``fit`` passes the first batch, or data moments for
            objectives that ask for them).
        loss: ``loss(params, obj_state, batch, rng_key) -> (scalar, (obj_state, metrics))``; the
            scalar is a batch mean, differentiated in ``params``; ``metrics`` is a dict of scalars.

    Examples:
        >>> import jax.numpy as jnp
        >>> obj = stateless(lambda params, batch, key: (jnp.mean(batch["x"] * params["w"]), {}))
        >>> loss, (state, metrics) = obj.loss({"w": 2.0}, obj.init(None, {}, {}), {"x": jnp.ones(3)}, None)
        >>> float(loss)
        2.0
    """

    init: Callable[..., Any]
    loss: Callable[..., tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]


@runtime_checkable
class ObjectiveSpec(Protocol):
    """What :func:`ebm_ppl.fit` accepts: a configuration that builds an :class:`Objective` for a model.

    ``build(model)`` receives the :class:`ebm_ppl.EnergyModel` (with the data site(s) bound as
    ``fit`` decided) and returns the pure pair.

    Examples:
        >>> class MeanEnergy:
        ...     def build(self, model, **context):
        ...         return stateless(lambda p, b, k: (model.batch_energy(p, b).mean(), {}))
        >>> isinstance(MeanEnergy(), ObjectiveSpec)
        True
    """

    def build(self, model: Any, **context: Any) -> Objective: ...


def stateless(loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]) -> Objective:
    """Lift ``loss_fn(params, batch, rng_key) -> (loss, metrics)`` to an :class:`Objective`.

    Examples:
        >>> obj = stateless(lambda p, b, k: (p["w"] ** 2, {}))
        >>> obj.init(None, {"w": 1.0}, {})
        ()
    """

    def init(rng_key, params, batch):
        del rng_key, params, batch
        return ()

    def loss(params, obj_state, batch, rng_key):
        value, metrics = loss_fn(params, batch, rng_key)
        return value, (obj_state, metrics)

    return Objective(init, loss)
