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
:class:`ebm_ppl.objectives.MeanFieldPCD`). Pre-training follows Salakhutdinov & Hinton
(2009): the first RBM is trained with its visible layer doubled (:func:`doubled_rbm`, tied
weights, so ``h1`` hears ``2 W1ᵀv``), the top RBM with its hidden layer doubled (``h1`` hears
``2 W2 h2``), and in the composed DBM ``h1`` hears ``W1ᵀv + W2 h2``: each side's input is
halved, which undoes the double counting of plain stacking. The positive phase is the mean-field posterior
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
import optax
from ebm_ppl.models import dbn, rbm

from ebm_ppl.energy import Bits, EnergyModel
from ebm_ppl.energy import energy as declare_energy
from ebm_ppl.objectives import PersistentContrastiveDivergence
from ebm_ppl.objectives.variational import mean_field_free_energy
from ebm_ppl.train.fit import fit

__all__ = [
    "MAX_ENUMERATED_UNITS",
    "PRETRAIN_METHODS",
    "doubled_rbm",
    "energy",
    "exact_samples",
    "fit_doubled",
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
#: pre-training methods of :func:`pretrain`.
PRETRAIN_METHODS = ("doubled", "stack")
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
    biases (both RBMs explain ``h1`` alone; in the DBM it hears from both sides). For plain
    RBMs (``pretrain(method="stack")``) this double counts the input to ``h1``; for RBMs
    trained by :func:`fit_doubled` it is Salakhutdinov & Hinton's composition (each side's
    input to ``h1`` halved from the doubled input it had in its RBM).

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


def doubled_rbm(num_visible: int, num_hidden: int, doubled: str = "visible") -> None:
    """RBM with one layer doubled, weights tied (Salakhutdinov & Hinton 2009's pre-training
    modules).

    ``doubled="visible"`` (the bottom module): sites ``"v"``, ``"v2"`` (two copies of the
    visible layer) and ``"h"``,

    .. math:: E = -b^\\top (v + v_2) - c^\\top h - (v + v_2)^\\top W h,

    trained with both copies set to the data, so ``p(h_j = 1 | v) = σ(c_j + 2 (W^\\top v)_j)``
    while ``p(v_i = 1 | h) = σ(b_i + (W h)_i)``. ``doubled="hidden"`` (the top module): sites
    ``"v"``, ``"h"``, ``"h2"`` with ``E = -b^\\top v - c^\\top (h + h_2) - v^\\top W (h + h_2)``, so
    ``v`` hears ``W (h + h_2)``, twice ``W h`` when the copies agree. Params ``W``, ``b``,
    ``c``; Gibbs blocks: the visible copies, then the hidden copies.

    Raises:
        ValueError: sizes < 1 or ``doubled`` not ``"visible"``/``"hidden"``.

    Examples:
        >>> import jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(doubled_rbm, 3, 2, "visible")
        >>> p = {"W": jnp.ones((3, 2)), "b": jnp.zeros(3), "c": jnp.zeros(2)}
        >>> v = jnp.array([1.0, 0.0, 1.0])
        >>> em.conditional_logits(p, {"v": v, "v2": v, "h": jnp.zeros(2)}, "h").tolist()
        [4.0, 4.0]
    """
    nv, nh = dbn._check_sizes((num_visible, num_hidden), "layer sizes")
    if doubled not in ("visible", "hidden"):
        raise ValueError(f"doubled must be 'visible' or 'hidden', got {doubled!r}")
    params = {
        "W": numpyro.param("W", lambda k: 0.01 * jax.random.normal(k, (nv, nh))),
        "b": numpyro.param("b", jnp.zeros(nv)),
        "c": numpyro.param("c", jnp.zeros(nh)),
    }
    v = numpyro.sample("v", Bits(nv), infer={"blocks": np.int32(0)})
    if doubled == "visible":
        v = v + numpyro.sample("v2", Bits(nv), infer={"blocks": np.int32(0)})
    h = numpyro.sample("h", Bits(nh), infer={"blocks": np.int32(1)})
    if doubled == "hidden":
        h = h + numpyro.sample("h2", Bits(nh), infer={"blocks": np.int32(1)})
    declare_energy(
        "E",
        -(v @ params["b"]) - h @ params["c"] - jnp.einsum("...i,ij,...j->...", v, params["W"], h),
    )


def fit_doubled(
    rng_key: Any,
    data: Any,
    num_hidden1: int,
    num_hidden2: int,
    *,
    num_steps: int | Sequence[int] = 2000,
    batch_size: int = 20,
    learning_rate: float = 0.05,
    num_chains: int = 100,
    num_mcmc_steps: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Salakhutdinov & Hinton's greedy pre-training of a two-layer DBM: two modified RBMs.

    The bottom RBM (:func:`doubled_rbm`, visible layer doubled) is fitted to the data with both
    visible copies clamped to it; the top RBM (hidden layer doubled) to binary samples of
    ``h1 ~ p(h1 | v) = σ(c + 2 W1ᵀv)`` of the data. Each by :func:`ebm_ppl.fit` with PCD and
    block Gibbs, visible biases started at the data log-odds, SGD with momentum 0.5 and a
    learning rate decayed linearly to 1/50 of ``learning_rate`` (as
    :func:`ebm_ppl.models.dbn.fit_greedy`).

    Args:
        rng_key: PRNG key.
        data: ``(num_examples, num_visible)`` binary data.
        num_hidden1, num_hidden2: layer sizes.
        num_steps: updates per RBM (an int or two).
        batch_size, learning_rate, num_chains, num_mcmc_steps, progress: as in
            :func:`ebm_ppl.models.dbn.fit_greedy`.

    Returns:
        ``[{"W": W1, "b", "c"}, {"W": W2, "b", "c"}]``, the two RBMs' parameters; compose them
        with :func:`from_stack`.

    Raises:
        ValueError: bad ``data``, sizes or ``num_steps`` (named).
    """
    data = jnp.asarray(data, jnp.result_type(float))
    if data.ndim != 2:
        raise ValueError(f"data must have shape (num_examples, num_visible), got {data.shape}")
    sizes = dbn._check_sizes((data.shape[1], num_hidden1, num_hidden2), "num_hidden1, num_hidden2")
    steps = (num_steps,) * 2 if isinstance(num_steps, int) else tuple(num_steps)
    if len(steps) != 2 or any(isinstance(n, bool) or int(n) < 1 for n in steps):
        raise ValueError(f"num_steps must be an int >= 1 or two of them, got {num_steps!r}")
    layers: list[dict[str, Any]] = []
    x = data
    for i, doubled in enumerate(("visible", "hidden")):
        k_init, k_fit, k_up, rng_key = jax.random.split(rng_key, 4)
        n = int(steps[i])
        nv, nh = sizes[i], sizes[i + 1]
        schedule = optax.linear_schedule(learning_rate, learning_rate / 50, n)
        bound = {"v": x, "v2": x} if doubled == "visible" else {"v": x}
        init = rbm.init_params(k_init, x, nh)
        result = fit(
            doubled_rbm,
            bound,
            model_args=(nv, nh, doubled),
            init_params={k: init[k] for k in ("W", "b", "c")},
            objective=PersistentContrastiveDivergence(
                "gibbs", num_mcmc_steps=num_mcmc_steps, num_chains=num_chains
            ),
            optimizer=optax.sgd(schedule, momentum=0.5),
            num_steps=n,
            batch_size=batch_size,
            rng_key=k_fit,
            log_every=max(1, min(500, n)),
            progress=progress,
        )
        p = {k: jnp.asarray(result.params[k]) for k in ("W", "b", "c")}
        layers.append(p)
        if i == 0:
            # the top module is trained on what the bottom one's doubled input produces
            x = jax.random.bernoulli(k_up, jax.nn.sigmoid(p["c"] + 2.0 * x @ p["W"])).astype(
                x.dtype
            )
    return layers


def pretrain(
    rng_key: Any,
    data: Any,
    num_hidden1: int,
    num_hidden2: int,
    *,
    method: str = "doubled",
    **fit_options: Any,
) -> dict[str, Any]:
    """Greedy layer-wise start of a DBM: two RBMs trained one after the other, then composed
    by :func:`from_stack`.

    ``method="doubled"`` (default): Salakhutdinov & Hinton's modified RBMs
    (:func:`fit_doubled`); ``method="stack"``: two plain RBMs
    (:func:`ebm_ppl.models.dbn.fit_greedy`), which double count the input to ``h1`` once
    composed. ``fit_options`` go to the fitting function (``num_steps``, ``batch_size``,
    ``learning_rate``, ...).

    Raises:
        ValueError: an unknown ``method``.
    """
    if method not in PRETRAIN_METHODS:
        raise ValueError(f"method must be one of {PRETRAIN_METHODS}, got {method!r}")
    if method == "doubled":
        return from_stack(fit_doubled(rng_key, data, num_hidden1, num_hidden2, **fit_options))
    return from_stack(dbn.fit_greedy(rng_key, data, (num_hidden1, num_hidden2), **fit_options))
