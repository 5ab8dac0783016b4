"""Two-layer deep Boltzmann machine (Salakhutdinov & Hinton 2009).

.. math::

    E(v, h_1, h_2) = -b^\\top v - c_1^\\top h_1 - c_2^\\top h_2 - v^\\top W_1 h_1
                     - h_1^\\top W_2 h_2.

All connections are undirected. Given ``h1``, the layers ``v`` and ``h2`` are independent
Bernoullis, so the program declares two Gibbs blocks (``v`` and ``h2`` together, then ``h1``)
and summing ``v`` and ``h2`` out is closed form:

.. math::

    -\\log \\sum_{v, h_2} e^{-E} = -c_1^\\top h_1 - \\sum_i \\operatorname{softplus}(b_i + (W_1 h_1)_i)
        - \\sum_k \\operatorname{softplus}(c_{2k} + (h_1^\\top W_2)_k).

Hence, for a middle layer of at most :data:`MAX_ENUMERATED_UNITS` units, ``log Z``, exact
samples and the exact log-likelihood (:func:`log_partition`, :func:`exact_samples`,
:func:`free_energy`) enumerate ``h1``; they check AIS (``ebm.log_partition(method="ais")``,
forward and reverse) on models small enough to enumerate.

Training (:func:`pretrain`, then :func:`ebm_ppl.fit` with
:class:`ebm_ppl.objectives.MeanFieldPCD`): the positive phase is the mean-field posterior
``q(h1, h2 | v)`` at its fixed point, the negative phase persistent chains of layer-wise block
Gibbs. :func:`lower_bound` is the variational bound ``log p(v) ≥ -F_q(v) - log Z``.

Examples:
    >>> import ebm_ppl as ebm
    >>> em = ebm.EnergyModel(model, 6, 4, 3)
    >>> em.state_sites, sorted(em.param_sites)
    (('v', 'h1', 'h2'), ['W1', 'W2', 'b', 'c1', 'c2'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from ebm_ppl.models import dbn

from ebm_ppl.energy import Bits, EnergyModel
from ebm_ppl.energy import energy as declare_energy
from ebm_ppl.objectives.variational import mean_field_free_energy

__all__ = [
    "MAX_ENUMERATED_UNITS",
    "energy",
    "exact_samples",
    "free_energy",
    "from_stack",
    "log_partition",
    "lower_bound",
    "mean_field_bound",
    "model",
    "pretrain",
]

#: largest middle layer the exact functions enumerate (2^20 states).
MAX_ENUMERATED_UNITS = 20
_CHUNK = 1 << 12


def energy(params: dict[str, Any], v: Any, h1: Any, h2: Any) -> Any:
    """``E(v, h1, h2)`` (batched over leading axes).

    Examples:
        >>> import jax.numpy as jnp
        >>> p = {"W1": jnp.ones((2, 1)), "W2": jnp.ones((1, 1)), "b": jnp.zeros(2),
        ...      "c1": jnp.zeros(1), "c2": jnp.zeros(1)}
        >>> float(energy(p, jnp.ones(2), jnp.ones(1), jnp.ones(1)))
        -3.0
    """
    return (
        -(v @ params["b"])
        - h1 @ params["c1"]
        - h2 @ params["c2"]
        - jnp.einsum("...i,ij,...j->...", v, params["W1"], h1)
        - jnp.einsum("...i,ij,...j->...", h1, params["W2"], h2)
    )


def model(num_visible: int, num_hidden1: int, num_hidden2: int) -> None:
    """DBM program: sites ``"v"``, ``"h1"``, ``"h2"`` (``Bits``), params ``W1``, ``W2``,
    ``b``, ``c1``, ``c2``; Gibbs blocks ``{v, h2}`` and ``{h1}``.

    Examples:
        >>> import ebm_ppl as ebm
        >>> int(ebm.EnergyModel(model, 4, 3, 2).plan["h2"].blocks)
        0
    """
    sizes = dbn._check_sizes((num_visible, num_hidden1, num_hidden2), "layer sizes")
    nv, n1, n2 = sizes
    params = {
        "W1": numpyro.param("W1", lambda k: 0.01 * jax.random.normal(k, (nv, n1))),
        "W2": numpyro.param("W2", lambda k: 0.01 * jax.random.normal(k, (n1, n2))),
        "b": numpyro.param("b", jnp.zeros(nv)),
        "c1": numpyro.param("c1", jnp.zeros(n1)),
        "c2": numpyro.param("c2", jnp.zeros(n2)),
    }
    v = numpyro.sample("v", Bits(nv), infer={"blocks": np.int32(0)})
    h1 = numpyro.sample("h1", Bits(n1), infer={"blocks": np.int32(1)})
    h2 = numpyro.sample("h2", Bits(n2), infer={"blocks": np.int32(0)})
    declare_energy("E", energy(params, v, h1, h2))


def _check_middle(params: dict[str, Any]) -> int:
    n1 = int(jnp.shape(params["W1"])[1])
    if n1 > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"params has {n1} units in h1; enumerating more than {MAX_ENUMERATED_UNITS} is too "
            "large (use ebm.log_partition(method='ais'))"
        )
    return n1


def _h1_chunks(n1: int, dtype: Any) -> jax.Array:
    idx = jnp.arange(2**n1, dtype=jnp.uint32)
    states = ((idx[:, None] >> jnp.arange(n1, dtype=jnp.uint32)) & 1).astype(dtype)
    chunk = min(_CHUNK, 2**n1)
    return states.reshape(-1, chunk, n1)


def _h1_log_weight(params: dict[str, Any], h1: Any, v: Any = None) -> Any:
    """``log Σ_{h2} (Σ_v) exp(-E)`` as a function of ``h1`` (with ``v`` fixed when given)."""
    top = jnp.sum(jax.nn.softplus(params["c2"] + h1 @ params["W2"]), axis=-1)
    if v is None:
        return (
            h1 @ params["c1"]
            + top
            + jnp.sum(jax.nn.softplus(params["b"] + h1 @ params["W1"].T), -1)
        )
    return h1 @ params["c1"] + top + (v @ params["W1"]) @ h1.T


def log_partition(params: dict[str, Any]) -> Any:
    """Exact ``log Z``, enumerating ``h1`` and summing ``v`` and ``h2`` in closed form.

    Raises:
        ValueError: for more than :data:`MAX_ENUMERATED_UNITS` units in ``h1``.

    Examples:
        >>> import jax.numpy as jnp, math
        >>> p = {"W1": jnp.zeros((3, 2)), "W2": jnp.zeros((2, 2)), "b": jnp.zeros(3),
        ...      "c1": jnp.zeros(2), "c2": jnp.zeros(2)}
        >>> round(float(log_partition(p)), 5) == round(7 * math.log(2), 5)
        True
    """
    n1 = _check_middle(params)
    chunks = _h1_chunks(n1, jnp.result_type(params["W1"].dtype, float))
    lse = jax.lax.map(lambda h: jax.scipy.special.logsumexp(_h1_log_weight(params, h)), chunks)
    return jax.scipy.special.logsumexp(lse)


def free_energy(params: dict[str, Any], v: Any) -> Any:
    """Exact ``F(v) = -log Σ_{h1,h2} exp(-E(v, h1, h2))`` for ``v`` of shape ``(n, D)``.

    Examples:
        >>> import jax.numpy as jnp, math
        >>> p = {"W1": jnp.zeros((3, 2)), "W2": jnp.zeros((2, 2)), "b": jnp.zeros(3),
        ...      "c1": jnp.zeros(2), "c2": jnp.zeros(2)}
        >>> round(float(free_energy(p, jnp.ones((1, 3)))[0]), 5) == round(-4 * math.log(2), 5)
        True
    """
    n1 = _check_middle(params)
    v = jnp.asarray(v, jnp.result_type(params["W1"].dtype, float))
    chunks = _h1_chunks(n1, v.dtype)
    lse = jax.lax.map(
        lambda h: jax.scipy.special.logsumexp(_h1_log_weight(params, h, v), axis=-1), chunks
    )  # (num_chunks, n)
    return -(v @ params["b"]) - jax.scipy.special.logsumexp(lse, axis=0)


def exact_samples(rng_key: Any, params: dict[str, Any], num_samples: int) -> dict[str, Any]:
    """Exact joint draws: ``h1`` from its enumerated marginal, then ``v`` and ``h2`` given it.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> p = {"W1": jnp.zeros((3, 2)), "W2": jnp.zeros((2, 2)), "b": jnp.zeros(3),
        ...      "c1": jnp.zeros(2), "c2": jnp.zeros(2)}
        >>> {k: x.shape for k, x in exact_samples(jax.random.PRNGKey(0), p, 5).items()}
        {'v': (5, 3), 'h1': (5, 2), 'h2': (5, 2)}
    """
    n1 = _check_middle(params)
    dtype = jnp.result_type(params["W1"].dtype, float)
    states = _h1_chunks(n1, dtype).reshape(-1, n1)
    k1, kv, k2 = jax.random.split(rng_key, 3)
    h1 = states[jax.random.categorical(k1, _h1_log_weight(params, states), shape=(num_samples,))]
    v = jax.random.bernoulli(kv, jax.nn.sigmoid(params["b"] + h1 @ params["W1"].T)).astype(dtype)
    h2 = jax.random.bernoulli(k2, jax.nn.sigmoid(params["c2"] + h1 @ params["W2"])).astype(dtype)
    return {"v": v, "h1": h1, "h2": h2}


def _exact_log_partition(params, num_visible, num_hidden1, num_hidden2):
    """Hook read by ``ebm_ppl.log_partition(method="exact")``."""
    return log_partition(params)


def _exact_sample(rng_key, params, num, num_visible, num_hidden1, num_hidden2):
    """Hook read by reverse AIS: exact joint draws."""
    return exact_samples(rng_key, params, num)


model.exact_log_partition = _exact_log_partition  # type: ignore[attr-defined]
model.exact_sample = _exact_sample  # type: ignore[attr-defined]


def mean_field_bound(
    params: dict[str, Any], v: Any, *, num_steps: int = 30, damping: float = 0.5
) -> jax.Array:
    """Mean-field upper bound ``F_q(v) ≥ F(v)`` per example (``(n, D)`` -> ``(n,)``).

    :func:`ebm_ppl.objectives.variational.mean_field_free_energy` (the positive phase of
    :class:`~ebm_ppl.objectives.MeanFieldPCD`), vmapped.
    """
    W1 = jnp.shape(params["W1"])
    em = EnergyModel(model, W1[0], W1[1], int(jnp.shape(params["W2"])[1]))
    fn = lambda x: mean_field_free_energy(  # noqa: E731
        em, params, {"v": x}, num_steps=num_steps, damping=damping
    )
    return jax.jit(jax.vmap(fn))(jnp.asarray(v, jnp.result_type(float)))


def lower_bound(
    params: dict[str, Any],
    v: Any,
    log_z: Any,
    *,
    num_steps: int = 30,
    damping: float = 0.5,
) -> jax.Array:
    """Variational lower bound ``-F_q(v) - log Z`` on ``log p(v)`` per example.

    ``log_z`` a float or :class:`ebm_ppl.LogZEstimate` (an AIS estimate makes the bound
    stochastic: AIS is unbiased in ``Z``, so its ``log Z`` is low in expectation).

    Examples:
        >>> import jax.numpy as jnp, math
        >>> p = {"W1": jnp.zeros((3, 2)), "W2": jnp.zeros((2, 2)), "b": jnp.zeros(3),
        ...      "c1": jnp.zeros(2), "c2": jnp.zeros(2)}
        >>> lb = lower_bound(p, jnp.ones((1, 3)), log_partition(p))
        >>> round(float(lb[0]), 5) == round(-3 * math.log(2), 5)
        True
    """
    lz = float(getattr(log_z, "log_z", log_z))
    return -mean_field_bound(params, v, num_steps=num_steps, damping=damping) - lz


def from_stack(layers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """DBM parameters from two greedily trained RBMs ``[v–h1, h1–h2]``.

    ``W1``, ``W2`` and the outer biases are taken as they are; ``h1``, which is the hidden
    layer of the first RBM and the visible layer of the second, gets the average of its two
    biases (both RBMs explain ``h1`` alone; in the DBM it hears from both sides). This is the
    plain stacking start; Salakhutdinov & Hinton's doubled-weight RBMs are not used.

    Raises:
        ValueError: a stack that is not two RBMs whose sizes match (names ``layers``).
    """
    sizes = dbn.check_layers(layers)
    if len(sizes) != 3:
        raise ValueError(f"layers must be two RBMs (v–h1, h1–h2), got {len(sizes) - 1}")
    l0, l1 = layers
    return {
        "W1": jnp.asarray(l0["W"]),
        "W2": jnp.asarray(l1["W"]),
        "b": jnp.asarray(l0["b"]),
        "c1": 0.5 * (jnp.asarray(l0["c"]) + jnp.asarray(l1["b"])),
        "c2": jnp.asarray(l1["c"]),
    }


def pretrain(rng_key: Any, data: Any, num_hidden1: int, num_hidden2: int, **fit_options: Any):
    """Greedy layer-wise start: :func:`ebm_ppl.models.dbn.fit_greedy` then :func:`from_stack`.

    ``fit_options`` go to :func:`~ebm_ppl.models.dbn.fit_greedy` (``num_steps``,
    ``batch_size``, ``learning_rate``, ...).
    """
    return from_stack(dbn.fit_greedy(rng_key, data, (num_hidden1, num_hidden2), **fit_options))
