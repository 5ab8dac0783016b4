"""Fully visible Boltzmann machine on bits.

.. math::

    E(x) = -\\tfrac12 x^\\top \\tilde W x - b^\\top x, \\qquad
    \\tilde W = \\operatorname{triu}(W, 1) + \\operatorname{triu}(W, 1)^\\top,

so any learned ``W`` gives a valid symmetric, zero-diagonal coupling (and ``E`` stays affine in
each unit: conditionals ``P(x_i = 1 | rest) = σ((W̃x)_i + b_i)`` come from one gradient). Every
unit interacts with every other, so the declared Gibbs blocks are single units (a
systematic-scan sweep).

Examples:
    >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
    >>> from ebm_ppl.models import boltzmann
    >>> em = ebm.EnergyModel(boltzmann.model, 3)
    >>> sorted(em.init_params(jax.random.PRNGKey(0)))
    ['W', 'b']
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from ebm_ppl.energy.base import Bits
from ebm_ppl.energy.declare import energy as declare_energy

__all__ = ["conditional_logits", "energy", "init_params", "model", "symmetrize"]


def symmetrize(W: Any) -> Any:
    """``triu(W, 1) + triu(W, 1)ᵀ``: the effective coupling matrix.

    Examples:
        >>> import jax.numpy as jnp
        >>> symmetrize(jnp.array([[5.0, 1.0], [7.0, 5.0]])).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    upper = jnp.triu(W, 1)
    return upper + upper.T


def energy(params: dict[str, Any], x: Any) -> Any:
    """``-½ xᵀ W̃ x - bᵀ x`` for one state ``x`` (or a batch ``(..., N)``).

    Examples:
        >>> import jax.numpy as jnp
        >>> p = {"W": jnp.ones((2, 2)), "b": jnp.zeros(2)}
        >>> float(energy(p, jnp.ones(2)))
        -1.0
    """
    Wt = symmetrize(params["W"])
    return -0.5 * jnp.einsum("...i,ij,...j->...", x, Wt, x) - x @ params["b"]


def conditional_logits(params: dict[str, Any], x: Any) -> Any:
    """``logit P(x_i = 1 | rest) = (W̃x)_i + b_i``.

    Examples:
        >>> import jax.numpy as jnp
        >>> p = {"W": jnp.ones((2, 2)), "b": jnp.zeros(2)}
        >>> conditional_logits(p, jnp.array([1.0, 0.0])).tolist()
        [0.0, 1.0]
    """
    return x @ symmetrize(params["W"]) + params["b"]


def _check_W(W: Any, num_units: int) -> None:
    try:
        Wc = np.asarray(W, dtype=np.float64)
    except Exception:  # noqa: BLE001  (traced values are not checkable)
        return
    if Wc.shape != (num_units, num_units):
        raise ValueError(f"W must have shape ({num_units}, {num_units}), got {Wc.shape}")
    if not np.allclose(Wc, Wc.T) or np.any(np.diag(Wc) != 0):
        raise ValueError("W must be symmetric with a zero diagonal")


def model(num_units: int, W: Any = None, b: Any = None) -> None:
    """Boltzmann machine: site ``"x"`` on ``Bits(num_units)``, params ``"W"``, ``"b"``.

    Args:
        num_units: number of units ``N``.
        W: optional fixed ``(N, N)`` coupling matrix (symmetric, zero diagonal); default a
            learnable param ``"W"`` initialised at ``0.01·N(0, 1)``.
        b: optional fixed ``(N,)`` biases; default a learnable param ``"b"`` at 0.

    Raises:
        ValueError: if a fixed ``W`` is not ``(N, N)`` symmetric with a zero diagonal.

    Examples:
        >>> import jax.numpy as jnp, ebm_ppl as ebm
        >>> model(2, W=jnp.array([[0.0, 1.0], [2.0, 0.0]]))
        Traceback (most recent call last):
        ...
        ValueError: W must be symmetric with a zero diagonal
    """
    n = int(num_units)
    if n < 1:
        raise ValueError(f"num_units must be >= 1, got {num_units}")
    if W is not None:
        _check_W(W, n)
    else:
        W = numpyro.param("W", lambda key: 0.01 * jax.random.normal(key, (n, n)))
    if b is None:
        b = numpyro.param("b", jnp.zeros(n))
    x = numpyro.sample("x", Bits(n), infer={"blocks": np.arange(n)})
    declare_energy("E", energy({"W": W, "b": b}, x))


def init_params(rng_key: Any, num_units: int, scale: float = 0.01) -> dict[str, Any]:
    """Random symmetric zero-diagonal ``W`` (entries ``scale·N(0,1)``) and zero ``b``.

    Examples:
        >>> import jax
        >>> p = init_params(jax.random.PRNGKey(0), 3)
        >>> bool((p["W"] == p["W"].T).all()), float(p["W"][0, 0])
        (True, 0.0)
    """
    W = symmetrize(scale * jax.random.normal(rng_key, (num_units, num_units)))
    return {"W": W, "b": jnp.zeros(num_units)}
