"""Neural energies: a multilayer perceptron ``E_θ(x)`` over a flat continuous state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro

from ebm_ppl.energy import EnergyModel, Flat
from ebm_ppl.energy import energy as _energy

__all__ = ["init_params", "mlp_energy"]

_ACTIVATIONS = {
    "swish": jax.nn.swish,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
}


def _check(dim: Any, hidden: Any, activation: str, quadratic: Any) -> tuple[int, tuple[int, ...]]:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty tuple of integers >= 1, got {hidden!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if not float(quadratic) >= 0:
        raise ValueError(f"quadratic must be >= 0, got {quadratic!r}")
    return dim, hidden


def _glorot(shape: tuple[int, int]):
    fan_in, fan_out = shape

    def init(rng_key):
        limit = jnp.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(rng_key, shape, minval=-limit, maxval=limit)

    return init


def mlp_energy(
    dim: int = 2,
    hidden: Sequence[int] = (128, 128),
    *,
    activation: str = "swish",
    quadratic: float = 0.0,
    site: str = "x",
) -> None:
    """NumPyro EBM: ``E(x) = MLP_θ(x) + quadratic·‖x‖²`` over ``x ∈ R^dim`` (flat base measure).

    Weights are ``numpyro.param`` sites ``W0, b0, W1, b1, ...`` (Glorot-uniform weights, zero
    biases, drawn from the key given to ``EnergyModel.init_params``). The activation is smooth
    (swish by default), so score matching, which differentiates the energy twice in ``x``, sees
    a well-defined Hessian. ``quadratic > 0`` adds a fixed confining term that keeps
    ``exp(−E)`` normalizable however the network extrapolates.

    Args:
        dim: state dimension.
        hidden: widths of the hidden layers.
        activation: one of ``"swish"``, ``"softplus"``, ``"tanh"``, ``"elu"``, ``"gelu"``.
        quadratic: weight of the fixed ``‖x‖²`` term (``>= 0``).
        site: name of the state site.

    Raises:
        ValueError: for a bad ``dim``, ``hidden``, ``activation`` or ``quadratic``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(mlp_energy, 2, (16,))
        >>> params = em.init_params(jax.random.PRNGKey(0))
        >>> sorted(params), params["W0"].shape
        (['W0', 'W1', 'b0', 'b1'], (2, 16))
        >>> em.energy(params, {"x": jnp.zeros(2)}).shape
        ()
    """
    dim, hidden = _check(dim, hidden, activation, quadratic)
    act = _ACTIVATIONS[activation]
    x = numpyro.sample(site, Flat((dim,)))
    h = x
    widths = (dim, *hidden, 1)
    for i in range(len(widths) - 1):
        w = numpyro.param(f"W{i}", _glorot((widths[i], widths[i + 1])))
        b = numpyro.param(f"b{i}", jnp.zeros(widths[i + 1]))
        h = h @ w + b
        if i < len(widths) - 2:
            h = act(h)
    _energy("E", h[..., 0] + quadratic * jnp.sum(x**2, axis=-1))


def init_params(
    rng_key: jax.Array, dim: int = 2, hidden: Sequence[int] = (128, 128), **kwargs: Any
):
    """Initial parameters of :func:`mlp_energy` (``EnergyModel(mlp_energy, ...).init_params``).

    Examples:
        >>> import jax
        >>> p = init_params(jax.random.PRNGKey(0), 3, (8, 8))
        >>> [p[k].shape for k in ("W0", "W1", "W2")]
        [(3, 8), (8, 8), (8, 1)]
    """
    return EnergyModel(mlp_energy, dim, hidden, **kwargs).init_params(rng_key)
