"""Deep belief networks: a stack of RBMs trained greedily, layer by layer (Hinton et al. 2006).

A DBN with layers ``v = h_0, h_1, ..., h_L`` is a directed sigmoid belief net below an
undirected top RBM:

.. math::

    p(h_0, \\dots, h_L) = p_{\\text{RBM}}(h_{L-1}, h_L) \\prod_{l=0}^{L-2} p(h_l \\mid h_{l+1}),
    \\qquad p(h_l = 1 \\mid h_{l+1}) = \\sigma(b_l + W_l h_{l+1}).

Greedy training (:func:`fit_greedy`) fits the first RBM to the data with
:func:`ebm_ppl.fit` (persistent contrastive divergence), then each next RBM to samples of the
previous one's hidden layer given the data. A DBN is a list of RBM parameter dicts
``[{"W": (n_0, n_1), "b": (n_0,), "c": (n_1,)}, ...]``: ``W_l``/``b_l`` are generative, the
hidden biases ``c_l`` of the lower RBMs serve the recognition pass ``q(h_{l+1} | h_l) =
σ(c_l + h_lᵀW_l)``.

* :func:`generate`: block Gibbs in the top RBM, then one downward pass.
* :func:`lower_bound`: the variational lower bound on ``log p(v)`` with the factorial
  recognition posterior (and its importance-weighted version), ``log Z`` of the top RBM exact
  (small layer) or by AIS.
* :func:`model`: the same joint as a NumPyro program (sites ``"v"``, ``"h1"``, ...), for
  :func:`ebm_ppl.sample` and the rest of the library.

Examples:
    >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
    >>> layers = init_layers(jax.random.PRNGKey(0), (6, 4, 2))
    >>> [l["W"].shape for l in layers]
    [(6, 4), (4, 2)]
    >>> ebm.EnergyModel(model, (6, 4, 2)).state_sites
    ('v', 'h1', 'h2')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from ebm_ppl.models import rbm

from ebm_ppl.energy import Bits
from ebm_ppl.energy import energy as declare_energy
from ebm_ppl.objectives import PersistentContrastiveDivergence
from ebm_ppl.partition.base import log_partition
from ebm_ppl.train.fit import fit

__all__ = [
    "DBNBound",
    "check_layers",
    "fit_greedy",
    "generate",
    "init_layers",
    "layer_sizes",
    "lower_bound",
    "model",
    "program_params",
    "upward",
]

#: top RBMs with a layer this small get an exact ``log Z``; larger ones AIS.
EXACT_TOP_UNITS = 20


def _check_sizes(sizes: Any, argument: str = "sizes") -> tuple[int, ...]:
    sizes = tuple(sizes) if not isinstance(sizes, int) else (sizes,)
    if len(sizes) < 2 or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes
    ):
        raise ValueError(
            f"{argument} must be at least two integers >= 1 (visible, hidden...), got {sizes!r}"
        )
    return tuple(int(s) for s in sizes)


def check_layers(layers: Any, argument: str = "layers") -> tuple[int, ...]:
    """Check a DBN's stack of RBM parameter dicts and return its layer sizes.

    Raises:
        ValueError: an empty stack, a missing ``W``/``b``/``c``, or consecutive layers whose
            sizes do not match (the message names the layer).

    Examples:
        >>> import jax.numpy as jnp
        >>> l0 = {"W": jnp.zeros((4, 3)), "b": jnp.zeros(4), "c": jnp.zeros(3)}
        >>> l1 = {"W": jnp.zeros((2, 2)), "b": jnp.zeros(2), "c": jnp.zeros(2)}
        >>> check_layers([l0, l1])
        Traceback (most recent call last):
        ...
        ValueError: layers[1]['W'] has 2 rows but layers[0] has 3 hidden units: consecutive layers must match
    """
    if isinstance(layers, dict) or not isinstance(layers, Sequence) or len(layers) == 0:
        raise ValueError(f"{argument} must be a non-empty list of RBM parameter dicts")
    sizes: list[int] = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not {"W", "b", "c"} <= set(layer):
            raise ValueError(f"{argument}[{i}] must be a dict with 'W', 'b' and 'c'")
        W = jnp.shape(layer["W"])
        if len(W) != 2:
            raise ValueError(f"{argument}[{i}]['W'] must be a matrix, got shape {W}")
        if jnp.shape(layer["b"]) != (W[0],) or jnp.shape(layer["c"]) != (W[1],):
            raise ValueError(
                f"{argument}[{i}]: 'b' must have shape ({W[0]},) and 'c' ({W[1]},), got "
                f"{jnp.shape(layer['b'])} and {jnp.shape(layer['c'])}"
            )
        if i == 0:
            sizes.append(W[0])
        elif W[0] != sizes[-1]:
            raise ValueError(
                f"{argument}[{i}]['W'] has {W[0]} rows but {argument}[{i - 1}] has {sizes[-1]} "
                "hidden units: consecutive layers must match"
            )
        sizes.append(W[1])
    return tuple(sizes)


def layer_sizes(layers: Sequence[dict[str, Any]]) -> tuple[int, ...]:
    """``(n_0, n_1, ..., n_L)`` of a checked stack."""
    return check_layers(layers)


def init_layers(rng_key: Any, sizes: Sequence[int], scale: float = 0.01) -> list[dict[str, Any]]:
    """A stack of RBMs with ``W ~ scale·N(0, 1)`` and zero biases.

    Examples:
        >>> import jax
        >>> [l["c"].shape for l in init_layers(jax.random.PRNGKey(0), (5, 3, 2))]
        [(3,), (2,)]
    """
    sizes = _check_sizes(sizes)
    keys = jax.random.split(rng_key, len(sizes) - 1)
    return [
        {
            "W": scale * jax.random.normal(k, (sizes[i], sizes[i + 1])),
            "b": jnp.zeros(sizes[i]),
            "c": jnp.zeros(sizes[i + 1]),
        }
        for i, k in enumerate(keys)
    ]


def fit_greedy(
    rng_key: Any,
    data: Any,
    hidden: Sequence[int],
    *,
    num_steps: int | Sequence[int] = 2000,
    batch_size: int = 20,
    learning_rate: float = 0.05,
    num_chains: int = 100,
    num_mcmc_steps: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Greedy layer-wise training: one :func:`ebm_ppl.fit` (PCD, block Gibbs) per RBM.

    Layer ``l + 1`` is trained on binary samples ``h_{l+1} ~ p(h_{l+1} | h_l)`` of the data
    passed up through the trained layers. Each RBM starts from
    :func:`ebm_ppl.models.rbm.init_params` (visible biases at the data log-odds) and uses SGD
    with momentum 0.5 and a learning rate decayed linearly to 1/50 of ``learning_rate``.

    Args:
        rng_key: PRNG key.
        data: ``(num_examples, n_0)`` binary data.
        hidden: sizes ``(n_1, ..., n_L)`` of the hidden layers.
        num_steps: updates per layer (an int, or one per layer).
        batch_size, learning_rate, num_chains, num_mcmc_steps, progress: as in
            :func:`ebm_ppl.fit` and :class:`ebm_ppl.objectives.PersistentContrastiveDivergence`.

    Returns:
        the stack: a list of ``L`` RBM parameter dicts.

    Raises:
        ValueError: bad ``hidden``, ``num_steps`` or ``data`` (named).
    """
    data = jnp.asarray(data, jnp.result_type(float))
    if data.ndim != 2:
        raise ValueError(f"data must have shape (num_examples, num_visible), got {data.shape}")
    sizes = _check_sizes((data.shape[1], *tuple(hidden)), "hidden")
    steps = (num_steps,) * (len(sizes) - 1) if isinstance(num_steps, int) else tuple(num_steps)
    if len(steps) != len(sizes) - 1:
        raise ValueError(
            f"num_steps must be an int or one per layer ({len(sizes) - 1}), got {num_steps!r}"
        )
    layers: list[dict[str, Any]] = []
    x = data
    for i, (nh, n) in enumerate(zip(sizes[1:], steps, strict=True)):
        k_init, k_fit, k_up, rng_key = jax.random.split(rng_key, 4)
        schedule = optax.linear_schedule(learning_rate, learning_rate / 50, n)
        result = fit(
            rbm.model,
            x,
            model_args=(x.shape[1], nh),
            data_site="v",
            init_params=rbm.init_params(k_init, x, nh),
            objective=PersistentContrastiveDivergence(
                "gibbs", num_mcmc_steps=num_mcmc_steps, num_chains=num_chains
            ),
            optimizer=optax.sgd(schedule, momentum=0.5),
            num_steps=int(n),
            batch_size=batch_size,
            rng_key=k_fit,
            log_every=max(1, min(500, int(n))),
            progress=progress,
        )
        p = {k: jnp.asarray(result.params[k]) for k in ("W", "b", "c")}
        layers.append(p)
        if i < len(sizes) - 2:
            x = rbm.sample_hidden(k_up, p, x)
    return layers


def upward(layers: Sequence[dict[str, Any]], v: Any) -> list[jax.Array]:
    """Recognition probabilities ``q(h_l = 1 | h_{l-1})`` passed up with probabilities (mean field).

    Returns:
        ``[q(h_1), ..., q(h_L)]``, each ``(..., n_l)``.
    """
    check_layers(layers)
    out, x = [], jnp.asarray(v)
    for layer in layers:
        x = jax.nn.sigmoid(layer["c"] + x @ layer["W"])
        out.append(x)
    return out


def generate(
    rng_key: Any, layers: Sequence[dict[str, Any]], num_samples: int, num_gibbs: int = 200
) -> jax.Array:
    """Samples of ``v``: ``num_gibbs`` block-Gibbs sweeps in the top RBM from uniform random
    states, then one downward pass through the directed layers.

    Returns:
        ``(num_samples, n_0)``: ``P(v = 1 | h_1)`` of each sample (the last downward step's
        probabilities, smoother to look at than binary draws).

    Examples:
        >>> import jax
        >>> layers = init_layers(jax.random.PRNGKey(0), (6, 4, 3))
        >>> generate(jax.random.PRNGKey(1), layers, 5, num_gibbs=3).shape
        (5, 6)
    """
    sizes = check_layers(layers)
    top = layers[-1]
    k0, k_run, k_down = jax.random.split(rng_key, 3)
    h = jax.random.bernoulli(k0, 0.5, (int(num_samples), sizes[-2])).astype(top["W"].dtype)

    def sweep(x, k):
        k1, k2 = jax.random.split(k)
        return rbm.sample_visible(k2, top, rbm.sample_hidden(k1, top, x)), None

    h, _ = jax.lax.scan(sweep, h, jax.random.split(k_run, int(num_gibbs)))
    for layer, k in zip(layers[-2::-1], jax.random.split(k_down, len(layers)), strict=False):
        p = jax.nn.sigmoid(layer["b"] + h @ layer["W"].T)
        h = jax.random.bernoulli(k, p).astype(p.dtype)
    return (
        p
        if len(layers) > 1
        else jax.nn.sigmoid(top["b"] + rbm.sample_hidden(k_down, top, h) @ top["W"].T)
    )


class DBNBound(NamedTuple):
    """Lower bounds on the log-likelihood of each example.

    Attributes:
        elbo: ``(num_examples,)`` variational bound ``E_q[log p(v, h) - log q(h | v)]`` (a Monte
            Carlo average over ``num_samples`` draws of the recognition posterior).
        iw_bound: ``(num_examples,)`` importance-weighted bound
            ``E[log (1/K) Σ_k p(v, h_k) / q(h_k | v)]`` with the same draws (tighter).
        mean: mean of ``elbo``; ``iw_mean`` mean of ``iw_bound``.
        stderr: standard error of ``mean`` over examples.
        log_z: the top RBM's :class:`ebm_ppl.LogZEstimate`.
    """

    elbo: jax.Array
    iw_bound: jax.Array
    mean: float
    iw_mean: float
    stderr: float
    log_z: Any


def _bernoulli_logp(x, logits):
    return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


def lower_bound(
    rng_key: Any,
    layers: Sequence[dict[str, Any]],
    v: Any,
    *,
    num_samples: int = 100,
    log_z: Any = None,
    ais_options: dict[str, Any] | None = None,
) -> DBNBound:
    """Variational lower bound on ``log p(v)`` of a DBN (Salakhutdinov & Murray 2008).

    With ``q(h_1, ..., h_{L-1} | v) = Π_l q(h_l | h_{l-1})`` the factorial recognition pass,

    .. math::

        \\log p(v) \\ge \\mathbb E_q\\Big[\\sum_{l<L-1} \\log p(h_l \\mid h_{l+1})
            - F_{\\text{top}}(h_{L-1}) - \\log q(h_{1:L-1} \\mid v)\\Big] - \\log Z_{\\text{top}},

    ``F_top`` the top RBM's free energy (its top layer summed out exactly). For a one-layer
    stack the bound is the exact log-likelihood. ``log Z_top`` is exact when the top RBM has a
    layer of at most :data:`EXACT_TOP_UNITS` units, else AIS (``ais_options`` for
    :func:`ebm_ppl.log_partition`); give ``log_z`` to reuse one.

    Args:
        rng_key: PRNG key.
        layers: the stack.
        v: ``(num_examples, n_0)`` binary data.
        num_samples: recognition draws per example.
        log_z: ``log Z`` of the top RBM (float or :class:`ebm_ppl.LogZEstimate`).
        ais_options: options for AIS.

    Returns:
        :class:`DBNBound`.

    Raises:
        ValueError: a stack whose sizes do not match, or ``v`` not ``(num_examples, n_0)``.

    Examples:
        >>> import jax, jax.numpy as jnp, math
        >>> layers = init_layers(jax.random.PRNGKey(0), (4, 3, 2), scale=0.0)
        >>> b = lower_bound(jax.random.PRNGKey(1), layers, jnp.ones((2, 4)), num_samples=4)
        >>> round(b.mean, 4) == round(-4 * math.log(2), 4)    # all weights zero: uniform v
        True
    """
    sizes = check_layers(layers)
    v = jnp.asarray(v, jnp.result_type(float))
    if v.ndim != 2 or v.shape[1] != sizes[0]:
        raise ValueError(f"v must have shape (num_examples, {sizes[0]}), got {v.shape}")
    top = layers[-1]
    if log_z is None:
        nv, nh = sizes[-2], sizes[-1]
        if min(nv, nh) <= EXACT_TOP_UNITS:
            log_z = log_partition(rbm.model, top, method="exact", model_args=(nv, nh))
        else:
            log_z = log_partition(
                rbm.model,
                top,
                method="ais",
                rng_key=rng_key,
                model_args=(nv, nh),
                **dict(ais_options or {}),
            )
    lz = float(getattr(log_z, "log_z", log_z))
    k = int(num_samples)

    def one(key, x):
        def draw(key):
            hs, log_q, h = [x], 0.0, x
            for layer, kk in zip(layers[:-1], jax.random.split(key, len(layers)), strict=False):
                logits = layer["c"] + h @ layer["W"]
                h = jax.random.bernoulli(kk, jax.nn.sigmoid(logits)).astype(x.dtype)
                log_q = log_q + _bernoulli_logp(h, logits)
                hs.append(h)
            log_p = -rbm.free_energy(top, hs[-1])
            for l_, layer in enumerate(layers[:-1]):
                log_p = log_p + _bernoulli_logp(hs[l_], layer["b"] + hs[l_ + 1] @ layer["W"].T)
            return log_p - log_q

        w = jax.vmap(draw)(jax.random.split(key, k)) - lz
        return jnp.mean(w), jax.scipy.special.logsumexp(w) - math.log(k)

    elbo, iw = jax.jit(jax.vmap(one))(jax.random.split(rng_key, v.shape[0]), v)
    n = v.shape[0]
    return DBNBound(
        elbo,
        iw,
        float(jnp.mean(elbo)),
        float(jnp.mean(iw)),
        float(jnp.std(elbo) / math.sqrt(n)),
        log_z,
    )


def program_params(layers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Parameters of :func:`model` from a stack: ``W{l}``, ``b{l}`` for every layer and the top
    RBM's hidden bias ``c`` (the recognition biases of the lower layers are not part of the
    generative joint).

    Examples:
        >>> import jax
        >>> sorted(program_params(init_layers(jax.random.PRNGKey(0), (3, 2, 2))))
        ['W0', 'W1', 'b0', 'b1', 'c']
    """
    check_layers(layers)
    out = {}
    for i, layer in enumerate(layers):
        out[f"W{i}"], out[f"b{i}"] = layer["W"], layer["b"]
    out["c"] = layers[-1]["c"]
    return out


def model(sizes: Sequence[int]) -> None:
    """The DBN joint ``p(v, h_1, ..., h_L)`` as a NumPyro EBM program.

    Sites ``"v"``, ``"h1"``, ..., ``"hL"`` (``Bits``); params ``W{l}``, ``b{l}`` and ``c``
    (:func:`program_params`). Energy: the top RBM's ``E(h_{L-1}, h_L)`` plus
    ``-log p(h_l | h_{l+1})`` for each directed layer; the program is normalized up to the top
    RBM's ``Z``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(model, (3, 2))          # one layer: an RBM
        >>> p = program_params(init_layers(jax.random.PRNGKey(0), (3, 2)))
        >>> v, h = jnp.ones(3), jnp.ones(2)
        >>> bool(jnp.allclose(em.energy(p, {"v": v, "h1": h}),
        ...                   rbm.energy({"W": p["W0"], "b": p["b0"], "c": p["c"]}, v, h)))
        True
    """
    sizes = _check_sizes(sizes)
    L = len(sizes) - 1
    units = [numpyro.sample("v", Bits(sizes[0]))]
    units += [numpyro.sample(f"h{i}", Bits(sizes[i])) for i in range(1, L + 1)]
    weights = [
        numpyro.param(f"W{i}", lambda k, i=i: 0.01 * jax.random.normal(k, (sizes[i], sizes[i + 1])))
        for i in range(L)
    ]
    biases = [numpyro.param(f"b{i}", jnp.zeros(sizes[i])) for i in range(L)]
    c = numpyro.param("c", jnp.zeros(sizes[L]))
    top = {"W": weights[-1], "b": biases[-1], "c": c}
    total = rbm.energy(top, units[L - 1], units[L])
    for i in range(L - 1):
        total = total - _bernoulli_logp(units[i], biases[i] + units[i + 1] @ weights[i].T)
    declare_energy("E", total)
