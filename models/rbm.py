"""Restricted Boltzmann machines with Bernoulli or Gaussian visible units.

Bernoulli–Bernoulli:

.. math::

    E(v, h) = -b^\\top v - c^\\top h - v^\\top W h, \\qquad
    F(v) = -b^\\top v - \\sum_j \\operatorname{softplus}(c_j + (v^\\top W)_j).

Gaussian–Bernoulli (``visible="gaussian"``, param ``"sigma"`` > 0):

.. math::

    E(v, h) = \\sum_i \\frac{(v_i - b_i)^2}{2\\sigma_i^2} - c^\\top h
              - \\sum_{ij} \\frac{v_i}{\\sigma_i} W_{ij} h_j, \\qquad
    p(v \\mid h) = \\mathcal N(b + \\sigma \\odot W h, \\operatorname{diag} \\sigma^2).

Sites ``"v"`` (``Bits`` or ``Flat``) and ``"h"`` (``Bits``); with ``marginalize_hidden=True``
only ``"v"``, whose energy is the free energy ``F(v)``. The two layers are declared as Gibbs
blocks (``infer={"blocks": 0}`` on ``"v"``, ``1`` on ``"h"``). :func:`log_partition` sums the
smaller layer out in closed form; :func:`ebm_ppl.log_partition` (``method="exact"``) uses it
through the model's ``exact_log_partition`` attribute when the visible units are Gaussian.

Examples:
    >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
    >>> from ebm_ppl.models import rbm
    >>> em = ebm.EnergyModel(rbm.model, 6, 3)
    >>> em.state_sites, sorted(em.param_sites)
    (('v', 'h'), ['W', 'b', 'c'])
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions import constraints

from ebm_ppl.energy.base import Bits, Flat
from ebm_ppl.energy.declare import energy as declare_energy

__all__ = [
    "MAX_ENUMERATED_UNITS",
    "energy",
    "exact_samples",
    "free_energy",
    "init_params",
    "log_partition",
    "model",
    "sample_hidden",
    "sample_visible",
]

#: Largest layer :func:`log_partition` enumerates (2^24 states).
MAX_ENUMERATED_UNITS = 24

_VISIBLE = ("bernoulli", "gaussian")


def _check_visible(visible: str) -> None:
    if visible not in _VISIBLE:
        raise ValueError(f"visible must be one of {_VISIBLE}, got {visible!r}")


def _scaled(params: dict[str, Any], v: Any, visible: str) -> Any:
    return v / params["sigma"] if visible == "gaussian" else v


def _visible_energy(params: dict[str, Any], v: Any, visible: str) -> Any:
    if visible == "gaussian":
        return jnp.sum((v - params["b"]) ** 2 / (2.0 * params["sigma"] ** 2), axis=-1)
    return -(v @ params["b"])


def energy(params: dict[str, Any], v: Any, h: Any, visible: str = "bernoulli") -> Any:
    """Joint energy ``E(v, h)`` (batched over leading axes).

    Examples:
        >>> import jax.numpy as jnp
        >>> p = {"W": jnp.ones((2, 1)), "b": jnp.zeros(2), "c": jnp.zeros(1)}
        >>> float(energy(p, jnp.ones(2), jnp.ones(1)))
        -2.0
    """
    _check_visible(visible)
    x = _scaled(params, v, visible)
    return (
        _visible_energy(params, v, visible)
        - h @ params["c"]
        - jnp.einsum("...i,ij,...j->...", x, params["W"], h)
    )


def free_energy(params: dict[str, Any], v: Any, visible: str = "bernoulli") -> Any:
    """Free energy ``F(v) = -log Σ_h exp(-E(v, h))`` (batched over leading axes).

    Examples:
        >>> import jax.numpy as jnp
        >>> p = {"W": jnp.zeros((2, 1)), "b": jnp.zeros(2), "c": jnp.zeros(1)}
        >>> round(float(free_energy(p, jnp.ones(2))), 6)   # -log 2
        -0.693147
    """
    _check_visible(visible)
    x = _scaled(params, v, visible)
    return _visible_energy(params, v, visible) - jnp.sum(
        jax.nn.softplus(params["c"] + x @ params["W"]), axis=-1
    )


def sample_hidden(rng_key: Any, params: dict[str, Any], v: Any, visible: str = "bernoulli") -> Any:
    """Draw ``h ~ p(h | v)``: independent bits with logits ``c + (v/σ)ᵀW``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> p = {"W": jnp.zeros((2, 3)), "b": jnp.zeros(2), "c": jnp.full(3, 50.0)}
        >>> sample_hidden(jax.random.PRNGKey(0), p, jnp.ones(2)).tolist()
        [1.0, 1.0, 1.0]
    """
    logits = params["c"] + _scaled(params, v, visible) @ params["W"]
    return jax.random.bernoulli(rng_key, jax.nn.sigmoid(logits)).astype(logits.dtype)


def sample_visible(rng_key: Any, params: dict[str, Any], h: Any, visible: str = "bernoulli") -> Any:
    """Draw ``v ~ p(v | h)``: Bernoulli with logits ``b + Wh``, or ``N(b + σ⊙Wh, σ²)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> p = {"W": jnp.zeros((2, 1)), "b": jnp.full(2, -50.0), "c": jnp.zeros(1)}
        >>> sample_visible(jax.random.PRNGKey(0), p, jnp.ones(1)).tolist()
        [0.0, 0.0]
    """
    _check_visible(visible)
    act = h @ params["W"].T
    if visible == "gaussian":
        sigma = params["sigma"]
        mean = params["b"] + sigma * act
        return mean + sigma * jax.random.normal(rng_key, jnp.shape(mean), mean.dtype)
    logits = params["b"] + act
    return jax.random.bernoulli(rng_key, jax.nn.sigmoid(logits)).astype(logits.dtype)


def _all_states(n: int, dtype: Any) -> Any:
    idx = jnp.arange(2**n, dtype=jnp.uint32)
    return ((idx[:, None] >> jnp.arange(n, dtype=jnp.uint32)) & 1).astype(dtype)


def log_partition(params: dict[str, Any], visible: str = "bernoulli") -> Any:
    """Exact ``log Z``, summing one layer in closed form and enumerating the other.

    Bernoulli: enumerate the smaller layer, ``logsumexp_h[cᵀh + Σ_i softplus(b_i + (Wh)_i)]``
    (or the same with the roles of the layers exchanged). Gaussian: enumerate ``h``,
    ``(D/2) ln 2π + Σ ln σ_i + logsumexp_h[cᵀh + (b/σ)ᵀWh + ½‖Wh‖²]``.

    Raises:
        ValueError: if the enumerated layer has more than :data:`MAX_ENUMERATED_UNITS` units.

    Examples:
        >>> import jax.numpy as jnp, math
        >>> p = {"W": jnp.zeros((3, 2)), "b": jnp.zeros(3), "c": jnp.zeros(2)}
        >>> round(float(log_partition(p)), 6) == round(5 * math.log(2), 6)
        True
    """
    _check_visible(visible)
    W, b, c = params["W"], params["b"], params["c"]
    nv, nh = W.shape
    dtype = jnp.result_type(W.dtype, float)
    if visible == "gaussian" or nh <= nv:
        if nh > MAX_ENUMERATED_UNITS:
            raise ValueError(
                f"num_hidden={nh} is too large to enumerate (> {MAX_ENUMERATED_UNITS})"
            )
        hs = _all_states(nh, dtype)
        act = hs @ W.T  # (2^nh, nv)
        if visible == "gaussian":
            sigma = params["sigma"]
            terms = hs @ c + act @ (b / sigma) + 0.5 * jnp.sum(act**2, axis=-1)
            return (
                0.5 * nv * math.log(2 * math.pi)
                + jnp.sum(jnp.log(sigma))
                + jax.scipy.special.logsumexp(terms)
            )
        terms = hs @ c + jnp.sum(jax.nn.softplus(b + act), axis=-1)
        return jax.scipy.special.logsumexp(terms)
    if nv > MAX_ENUMERATED_UNITS:
        raise ValueError(f"num_visible={nv} is too large to enumerate (> {MAX_ENUMERATED_UNITS})")
    vs = _all_states(nv, dtype)
    terms = vs @ b + jnp.sum(jax.nn.softplus(c + vs @ W), axis=-1)
    return jax.scipy.special.logsumexp(terms)


def exact_samples(rng_key: Any, params: dict[str, Any], num_samples: int) -> dict[str, Any]:
    """Exact joint samples ``(v, h)`` of a Bernoulli RBM, enumerating the hidden layer.

    ``p(h) ∝ exp(cᵀh + Σ_i softplus(b_i + (Wh)_i))`` over all ``2^H`` hidden states, then
    ``v ~ p(v | h)``. Used to start reverse AIS (``log_partition(method="ais", reverse=True)``).

    Args:
        rng_key: PRNG key.
        params: ``{"W": (D, H), "b": (D,), "c": (H,)}``.
        num_samples: number of draws.

    Returns:
        ``{"v": (num_samples, D), "h": (num_samples, H)}``.

    Raises:
        ValueError: for more than :data:`MAX_ENUMERATED_UNITS` hidden units.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> p = {"W": jnp.zeros((3, 2)), "b": jnp.zeros(3), "c": jnp.zeros(2)}
        >>> s = exact_samples(jax.random.PRNGKey(0), p, 4)
        >>> s["v"].shape, s["h"].shape
        ((4, 3), (4, 2))
    """
    W, b, c = (jnp.asarray(params[k]) for k in ("W", "b", "c"))
    nh = W.shape[1]
    if nh > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"params has {nh} hidden units; enumerating more than {MAX_ENUMERATED_UNITS} is too "
            "large"
        )
    hs = _all_states(nh, W.dtype)
    log_p = hs @ c + jnp.sum(jax.nn.softplus(b + hs @ W.T), axis=-1)
    k_h, k_v = jax.random.split(rng_key)
    h = hs[jax.random.categorical(k_h, log_p, shape=(num_samples,))]
    v = jax.random.bernoulli(k_v, jax.nn.sigmoid(b + h @ W.T)).astype(W.dtype)
    return {"v": v, "h": h}


def model(
    num_visible: int, num_hidden: int, visible: str = "bernoulli", marginalize_hidden: bool = False
) -> None:
    """RBM: sites ``"v"`` and ``"h"`` (or only ``"v"``), params ``"W"``, ``"b"``, ``"c"``
    (and ``"sigma"`` for Gaussian visible units).

    Args:
        num_visible: visible units ``D``.
        num_hidden: hidden units ``H``.
        visible: ``"bernoulli"`` (``Bits``) or ``"gaussian"`` (``Flat``, with ``σ`` > 0).
        marginalize_hidden: declare only ``"v"`` with the free energy ``F(v)``.

    Examples:
        >>> import ebm_ppl as ebm
        >>> ebm.EnergyModel(model, 4, 2, marginalize_hidden=True).state_sites
        ('v',)
    """
    _check_visible(visible)
    nv, nh = int(num_visible), int(num_hidden)
    if nv < 1 or nh < 1:
        raise ValueError(
            f"num_visible and num_hidden must be >= 1, got {num_visible}, {num_hidden}"
        )
    params = {
        "W": numpyro.param("W", lambda key: 0.01 * jax.random.normal(key, (nv, nh))),
        "b": numpyro.param("b", jnp.zeros(nv)),
        "c": numpyro.param("c", jnp.zeros(nh)),
    }
    if visible == "gaussian":
        params["sigma"] = numpyro.param("sigma", jnp.ones(nv), constraint=constraints.positive)
        base = Flat((nv,))
    else:
        base = Bits(nv)
    v = numpyro.sample("v", base, infer={"blocks": np.int32(0)})
    if marginalize_hidden:
        declare_energy("E", free_energy(params, v, visible))
        return
    h = numpyro.sample("h", Bits(nh), infer={"blocks": np.int32(1)})
    declare_energy("E", energy(params, v, h, visible))


def _exact_log_partition(
    params: dict[str, Any],
    num_visible: int,
    num_hidden: int,
    visible: str = "bernoulli",
    marginalize_hidden: bool = False,
) -> Any:
    """Hook read by ``ebm_ppl.log_partition(method="exact")``: closed-form ``log Z``."""
    return log_partition(params, visible)


model.exact_log_partition = _exact_log_partition  # type: ignore[attr-defined]


def _exact_sample(
    rng_key: Any,
    params: dict[str, Any],
    num: int,
    num_visible: int,
    num_hidden: int,
    visible: str = "bernoulli",
    marginalize_hidden: bool = False,
) -> dict[str, Any]:
    """Hook read by ``log_partition(method="ais", reverse=True)``: exact joint draws ``(v, h)``."""
    if visible != "bernoulli" or marginalize_hidden:
        raise ValueError("exact samples are implemented for the Bernoulli joint (v, h) model")
    return exact_samples(rng_key, params, num)


model.exact_sample = _exact_sample  # type: ignore[attr-defined]


def init_params(
    rng_key: Any, data: Any, num_hidden: int, visible: str = "bernoulli", scale: float = 0.01
) -> dict[str, Any]:
    """Initial parameters from data (Hinton's practical guide).

    Bernoulli: visible biases at the data log-odds ``log(p / (1 - p))`` (``p`` clipped to
    ``[1e-3, 1 - 1e-3]``); Gaussian: ``b`` the data mean and ``σ`` the data standard deviation.
    ``W ~ scale·N(0, 1)``, ``c = 0``.

    Args:
        rng_key: PRNG key for ``W``.
        data: ``(num_examples, num_visible)`` training data.
        num_hidden: hidden units.
        visible: ``"bernoulli"`` or ``"gaussian"``.
        scale: standard deviation of ``W``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> data = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
        >>> p = init_params(jax.random.PRNGKey(0), data, 3)
        >>> p["W"].shape, round(float(p["b"][0]), 4)   # log(0.75 / 0.25)
        ((2, 3), 1.0986)
    """
    _check_visible(visible)
    data = jnp.asarray(data, dtype=jnp.result_type(float))
    if data.ndim != 2:
        raise ValueError(f"data must have shape (num_examples, num_visible), got {data.shape}")
    nv = data.shape[1]
    out = {
        "W": scale * jax.random.normal(rng_key, (nv, int(num_hidden))),
        "c": jnp.zeros(int(num_hidden)),
    }
    if visible == "gaussian":
        out["b"] = jnp.mean(data, axis=0)
        out["sigma"] = jnp.maximum(jnp.std(data, axis=0), 1e-3)
    else:
        p = jnp.clip(jnp.mean(data, axis=0), 1e-3, 1.0 - 1e-3)
        out["b"] = jnp.log(p) - jnp.log1p(-p)
    return out
