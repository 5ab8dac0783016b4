"""A flat-vector view of an energy model's state, and the model-or-program argument.

Score matching and noise-contrastive estimation work on one vector per example: the state
sites of a batch are raveled into ``(batch, d)`` and unraveled again inside the energy. Data
sites present in the batch (a conditional EBM's inputs) ride along unchanged. Grid quadrature
and the AIS base use the same view on the unconstrained space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions.transforms import biject_to

from ebm_ppl.energy.model import EnergyModel

__all__ = ["StateView", "as_energy_model"]


def as_energy_model(
    model: Any, model_args: tuple = (), model_kwargs: Mapping[str, Any] | None = None
) -> EnergyModel:
    """Return ``model`` if it is an :class:`EnergyModel`, else compile the NumPyro program.

    Args:
        model: an :class:`EnergyModel` (its arguments are bound) or a NumPyro EBM program.
        model_args, model_kwargs: arguments for a program; must be empty for an
            ``EnergyModel``.

    Raises:
        TypeError: if ``model`` is neither.
        ValueError: for arguments given with an ``EnergyModel``.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     ebm.energy("E", jnp.sum(numpyro.sample("x", ebm.Flat(2)) ** 2))
        >>> as_energy_model(m).state_sites
        ('x',)
    """
    if isinstance(model, EnergyModel):
        if tuple(model_args) or model_kwargs:
            raise ValueError(
                "model_args/model_kwargs must be empty when model is an EnergyModel "
                "(its arguments are bound)"
            )
        return model
    if callable(model):
        return EnergyModel(model, *tuple(model_args), **dict(model_kwargs or {}))
    raise TypeError(f"model must be a NumPyro model or an EnergyModel, got {type(model).__name__}")


class StateView:
    """Ravel the state sites of an energy model into one vector per example.

    Args:
        model: an :class:`EnergyModel` (or a NumPyro EBM program).
        who: name of the objective, for error messages.
        continuous_only: raise if the model has a discrete state site.
        unconstrained: work on the unconstrained space of constrained continuous sites (the
            energy then includes the log-Jacobian, as in ``EnergyModel.potential_fn``).

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> view = StateView(m, who="demo")
        >>> x, rest = view.split({"x": jnp.ones((5, 2))})
        >>> x.shape, float(view.energy_fn({})(x[0], {}))
        ((5, 2), 1.0)
    """

    def __init__(
        self,
        model: Any,
        *,
        who: str,
        continuous_only: bool = False,
        unconstrained: bool = False,
    ):
        self.model = as_energy_model(model)
        self.who = who
        sites = self.model.sites
        if continuous_only and self.model.discrete_sites:
            name = self.model.discrete_sites[0]
            raise ValueError(
                f"{who} needs continuous state sites, but site {name!r} is discrete "
                f"(support {sites[name].support}); use a contrastive objective (CD/PCD) or NCE"
            )
        self.unconstrained = unconstrained
        self.names = self.model.state_sites
        shapes = {}
        for name in self.names:
            info = sites[name]
            shape = tuple(info.shape)
            if unconstrained and not info.is_discrete:
                shape = tuple(biject_to(info.support).inverse_shape(shape))
            shapes[name] = shape
        self.shapes = shapes
        self.sizes = {n: math.prod(s) for n, s in shapes.items()}
        self.dim = sum(self.sizes.values())

    def ravel(self, values: Mapping[str, Any]) -> jax.Array:
        """Concatenate one example's state values into a ``(d,)`` vector."""
        return jnp.concatenate([jnp.reshape(values[n], (-1,)) for n in self.names])

    def unravel(self, x: jax.Array) -> dict[str, jax.Array]:
        """Split a ``(d,)`` vector back into the state sites (their shapes)."""
        out, start = {}, 0
        for n in self.names:
            size = self.sizes[n]
            out[n] = jnp.reshape(x[start : start + size], self.shapes[n])
            start += size
        return out

    def split(self, batch: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(x, rest)``: state sites raveled to ``(batch, d)``, other entries as given.

        Raises:
            ValueError: if ``batch`` misses a state site or a site has the wrong shape.
        """
        if not isinstance(batch, Mapping):
            raise TypeError(f"batch must be a dict site -> array, got {type(batch).__name__}")
        missing = [n for n in self.names if n not in batch]
        if missing:
            raise ValueError(
                f"{self.who}: batch is missing state site(s) {missing}; got keys {sorted(batch)}"
            )
        sizes = set()
        flats = []
        sites = self.model.sites
        for n in self.names:
            v = jnp.asarray(batch[n])
            shape = tuple(sites[n].shape)
            if v.shape[1:] != shape:
                raise ValueError(
                    f"{self.who}: batch[{n!r}] must have shape (batch, *{shape}), got {v.shape}"
                )
            sizes.add(v.shape[0])
            if self.unconstrained:
                v = jax.vmap(lambda a, n=n: self.model.unconstrain({n: a})[n])(v)
            flats.append(jnp.reshape(v, (v.shape[0], -1)))
        if len(sizes) != 1:
            raise ValueError(f"{self.who}: state sites in batch have different batch sizes {sizes}")
        rest = {k: jnp.asarray(v) for k, v in batch.items() if k not in self.names}
        return jnp.concatenate(flats, axis=1).astype(jnp.result_type(float)), rest

    def energy_fn(self, params: Mapping[str, Any]) -> Callable[[jax.Array, dict], jax.Array]:
        """``(x, rest) -> energy`` of one example with state vector ``x`` of shape ``(d,)``."""
        if self.unconstrained:
            potential = self.model.potential_fn(params)
            return lambda x, rest: potential({**rest, **self.unravel(x)})
        return lambda x, rest: self.model.energy(params, {**rest, **self.unravel(x)})

    def batch_energy_fn(self, params: Mapping[str, Any]) -> Callable[[jax.Array, dict], jax.Array]:
        """``(x (batch, d), rest) -> energies (batch,)``."""
        return jax.vmap(self.energy_fn(params))
