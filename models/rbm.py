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

Categorical–Bernoulli (``visible="categorical", num_states=q``; ``v_i ∈ {0, …, q-1}``, one-hot
``x_i``; ``W`` of shape ``(D, q, H)``, ``b`` of shape ``(D, q)``):

.. math::

    E(v, h) = -\\sum_i b_{i v_i} - c^\\top h - \\sum_{ij} W_{i v_i j} h_j, \\qquad
    F(v) = -\\sum_i b_{i v_i} - \\sum_j \\operatorname{softplus}(c_j + \\sum_i W_{i v_i j}).

Sites ``"v"`` (``Bits``, ``Flat`` or ``Categorical``) and ``"h"`` (``Bits``); with ``marginalize_hidden=True``
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

from ebm_ppl.energy.base import Bits, Categorical, Flat
from ebm_ppl.energy.conditionals import one_hot
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

_VISIBLE = ("bernoulli", "gaussian", "categorical")


def _check_visible(visible: str) -> None:
    if visible not in _VISIBLE:
        raise ValueError(f"visible must be one of {_VISIBLE}, got {visible!r}")


def _scaled(params: dict[str, Any], v: Any, visible: str) -> Any:
    return v / params["sigma"] if visible == "gaussian" else v


def _encode(params: dict[str, Any], v: Any) -> Any:
    """One-hot ``(..., D, q)`` of categorical visible states (``q`` from ``b``)."""
    return one_hot(v, params["b"].shape[-1], dtype=jnp.result_type(params["b"].dtype, float))


def _visible_energy(params: dict[str, Any], v: Any, visible: str) -> Any:
    if visible == "gaussian":
        return jnp.sum((v - params["b"]) ** 2 / (2.0 * params["sigma"] ** 2), axis=-1)
    if visible == "categorical":
        return -jnp.sum(_encode(params, v) * params["b"], axis=(-2, -1))
    return -(v @ params["b"])


def _hidden_input(params: dict[str, Any], v: Any, visible: str) -> Any:
    """``(v/σ)ᵀW`` (or ``Σ_i W[i, v_i]`` for categorical units), shape ``(..., H)``."""
    if visible == "categorical":
        return jnp.einsum("...ik,ikj->...j", _encode(params, v), params["W"])
    return _scaled(params, v, visible) @ params["W"]


def energy(params: dict[str, Any], v: Any, h: Any, visible: str = "bernoulli") -> Any:
    """Joint energy ``E(v, h)`` (batched over leading axes).

    Examples:
        >>> import jax.numpy as jnp
        >>> p = {"W": jnp.ones((2, 1)), "b": jnp.zeros(2), "c": jnp.zeros(1)}
        >>> float(energy(p, jnp.ones(2), jnp.ones(1)))
        -2.0
    """
    _check_visible(visible)
    return (
        _visible_energy(params, v, visible)
        - h @ params["c"]
        - jnp.sum(_hidden_input(params, v, visible) * h, axis=-1)
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
    return _visible_energy(params, v, visible) - jnp.sum(
        jax.nn.softplus(params["c"] + _hidden_input(params, v, visible)), axis=-1
    )


def sample_hidden(rng_key: Any, params: dict[str, Any], v: Any, visible: str = "bernoulli") -> Any:
    """Draw ``h ~ p(h | v)``: independent bits with logits ``c + (v/σ)ᵀW``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> p = {"W": jnp.zeros((2, 3)), "b": jnp.zeros(2), "c": jnp.full(3, 50.0)}
        >>> sample_hidden(jax.random.PRNGKey(0), p, jnp.ones(2)).tolist()
        [1.0, 1.0, 1.0]
    """
    logits = params["c"] + _hidden_input(params, v, visible)
    return jax.random.bernoulli(rng_key, jax.nn.sigmoid(logits)).astype(logits.dtype)


def sample_visible(rng_key: Any, params: dict[str, Any], h: Any, visible: str = "bernoulli") -> Any:
    """Draw ``v ~ p(v | h)``: Bernoulli with logits ``b + Wh``, ``N(b + σ⊙Wh, σ²)``, or
    categorical with logits ``b_i + W_i h`` (``int32`` states).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> p = {"W": jnp.zeros((2, 1)), "b": jnp.full(2, -50.0), "c": jnp.zeros(1)}
        >>> sample_visible(jax.random.PRNGKey(0), p, jnp.ones(1)).tolist()
        [0.0, 0.0]
    """
    _check_visible(visible)
    if visible == "categorical":
        logits = params["b"] + jnp.einsum("ikj,...j->...ik", params["W"], h)
        return jax.random.categorical(rng_key, logits).astype(jnp.int32)
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
    if visible == "categorical":
        return _categorical_log_partition(params)
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


def _categorical_log_partition(params: dict[str, Any]) -> Any:
    """Categorical visible units: the smaller of ``2^H`` and ``q^D`` states enumerated."""
    W, b, c = params["W"], params["b"], params["c"]
    nv, q, nh = W.shape
    dtype = jnp.result_type(W.dtype, float)
    if nh <= MAX_ENUMERATED_UNITS and nh <= nv * math.log2(q):
        hs = _all_states(nh, dtype)
        act = b + jnp.einsum("ikj,sj->sik", W, hs)  # (2^H, D, q)
        terms = hs @ c + jnp.sum(jax.scipy.special.logsumexp(act, axis=-1), axis=-1)
        return jax.scipy.special.logsumexp(terms)
    if nv * math.log2(q) > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"num_hidden={nh} and num_visible={nv} (q={q}) are too large to enumerate "
            f"(> 2^{MAX_ENUMERATED_UNITS} states)"
        )
    index = jnp.arange(q**nv, dtype=jnp.int32)
    vs = (index[:, None] // q ** jnp.arange(nv, dtype=jnp.int32)) % q
    return jax.scipy.special.logsumexp(-free_energy(params, vs, "categorical"))


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
    num_visible: int,
    num_hidden: int,
    visible: str = "bernoulli",
    marginalize_hidden: bool = False,
    num_states: int | None = None,
) -> None:
    """RBM: sites ``"v"`` and ``"h"`` (or only ``"v"``), params ``"W"``, ``"b"``, ``"c"``
    (and ``"sigma"`` for Gaussian visible units).

    Args:
        num_visible: visible units ``D``.
        num_hidden: hidden units ``H``.
        visible: ``"bernoulli"`` (``Bits``), ``"gaussian"`` (``Flat``, with ``σ`` > 0) or
            ``"categorical"`` (``Categorical(D, q)``; ``W`` ``(D, q, H)``, ``b`` ``(D, q)``).
        marginalize_hidden: declare only ``"v"`` with the free energy ``F(v)``.
        num_states: ``q >= 2`` for categorical visible units (only then).

    Raises:
        ValueError: unknown ``visible``, sizes < 1, or ``num_states`` missing or < 2 for
            categorical units (given for others).

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
    q = _check_num_states(visible, num_states)
    wshape = (nv, q, nh) if q else (nv, nh)
    params = {
        "W": numpyro.param("W", lambda key: 0.01 * jax.random.normal(key, wshape)),
        "b": numpyro.param("b", jnp.zeros((nv, q) if q else nv)),
        "c": numpyro.param("c", jnp.zeros(nh)),
    }
    if q:
        base: Any = Categorical(nv, q)
    elif visible == "gaussian":
        params["sigma"] = numpyro.param("sigma", jnp.ones(nv), constraint=constraints.positive)
        base = Flat((nv,))
    else:
        base = Bits(nv)
    # Summing h out couples the visible units: then they are no longer one block.
    v_infer = {} if marginalize_hidden else {"blocks": np.int32(0)}
    v = numpyro.sample("v", base, infer=v_infer)
    if marginalize_hidden:
        declare_energy("E", free_energy(params, v, visible))
        return
    h = numpyro.sample("h", Bits(nh), infer={"blocks": np.int32(1)})
    declare_energy("E", energy(params, v, h, visible))


def _check_num_states(visible: str, num_states: Any) -> int:
    """``q`` for categorical visible units, 0 otherwise."""
    if visible != "categorical":
        if num_states is not None:
            raise ValueError(
                f"num_states applies to visible='categorical' only, got num_states={num_states!r} "
                f"with visible={visible!r}"
            )
        return 0
    if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)):
        raise ValueError(f"visible='categorical' needs num_states, an int >= 2, got {num_states!r}")
    if num_states < 2:
        raise ValueError(f"num_states must be >= 2, got {num_states}")
    return int(num_states)


def _exact_log_partition(
    params: dict[str, Any],
    num_visible: int,
    num_hidden: int,
    visible: str = "bernoulli",
    marginalize_hidden: bool = False,
    num_states: int | None = None,
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
    num_states: int | None = None,
) -> dict[str, Any]:
    """Hook read by ``log_partition(method="ais", reverse=True)``: exact joint draws ``(v, h)``."""
    if visible != "bernoulli" or marginalize_hidden:
        raise ValueError("exact samples are implemented for the Bernoulli joint (v, h) model")
    return exact_samples(rng_key, params, num)


model.exact_sample = _exact_sample  # type: ignore[attr-defined]


def init_params(
    rng_key: Any,
    data: Any,
    num_hidden: int,
    visible: str = "bernoulli",
    scale: float = 0.01,
    num_states: int | None = None,
) -> dict[str, Any]:
    """Initial parameters from data (Hinton's practical guide).

    Bernoulli: visible biases at the data log-odds ``log(p / (1 - p))`` (``p`` clipped to
    ``[1e-3, 1 - 1e-3]``); Gaussian: ``b`` the data mean and ``σ`` the data standard deviation;
    categorical: ``b_ik`` the log frequency of state ``k`` at unit ``i`` (one pseudo-count
    added). ``W ~ scale·N(0, 1)``, ``c = 0``.

    Args:
        rng_key: PRNG key for ``W``.
        data: ``(num_examples, num_visible)`` training data.
        num_hidden: hidden units.
        visible: ``"bernoulli"``, ``"gaussian"`` or ``"categorical"``.
        scale: standard deviation of ``W``.
        num_states: ``q`` for categorical units.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> data = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
        >>> p = init_params(jax.random.PRNGKey(0), data, 3)
        >>> p["W"].shape, round(float(p["b"][0]), 4)   # log(0.75 / 0.25)
        ((2, 3), 1.0986)
    """
    _check_visible(visible)
    q = _check_num_states(visible, num_states)
    if q:
        arr = np.asarray(data)
        if arr.ndim != 2:
            raise ValueError(f"data must have shape (num_examples, num_visible), got {arr.shape}")
        if not np.all((arr >= 0) & (arr < q) & (arr == np.floor(arr))):
            raise ValueError(f"data must hold states in {{0, ..., {q - 1}}}")
        counts = (arr[..., None] == np.arange(q)).sum(axis=0) + 1.0
        return {
            "W": scale * jax.random.normal(rng_key, (arr.shape[1], q, int(num_hidden))),
            "b": jnp.asarray(
                np.log(counts / counts.sum(axis=-1, keepdims=True)), jnp.result_type(float)
            ),
            "c": jnp.zeros(int(num_hidden)),
        }
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
