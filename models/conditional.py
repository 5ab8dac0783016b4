"""Conditional EBMs for structured prediction: ``p(y | x) ∝ exp(-E(x, y))``.

A binary output vector ``y`` given a real input ``x``, with unary terms from a linear map of
``x`` and pairwise couplings between outputs (a fully connected conditional random field):

.. math::

    E(x, y) = -y^\\top (U x + a) - \\tfrac12 y^\\top J y, \\qquad J = J^\\top,\\ J_{ii} = 0.

``x`` is an observed site (``obs=``): :func:`ebm_ppl.fit` binds it from the data and trains
``p(y | x)`` by contrastive divergence with chains clamped to each example's ``x``;
``couplings=False`` gives independent logistic outputs (the unstructured baseline). Inference
of ``y`` (:func:`predict`): the posterior marginals by block Gibbs sampling (``"gibbs"``), or
the energy minimum by iterated conditional modes (``"icm"``, coordinate descent on ``E`` from
the mean-field start).

Examples:
    >>> import jax.numpy as jnp, ebm_ppl as ebm
    >>> em = ebm.EnergyModel(model, jnp.zeros(3), 2)
    >>> em.state_sites, em.data_sites, sorted(em.param_sites)
    (('y',), ('x',), ['J', 'U', 'a'])
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro

from ebm_ppl.energy import Bits, Flat
from ebm_ppl.energy import energy as declare_energy

__all__ = ["energy", "model", "predict"]

_METHODS = ("gibbs", "icm")


def _symmetric(J: Any) -> Any:
    J = 0.5 * (J + J.T)
    return J - jnp.diag(jnp.diag(J))


def energy(params: dict[str, Any], x: Any, y: Any) -> Any:
    """``E(x, y)`` (batched over leading axes); ``J`` symmetrized with a zero diagonal.

    Examples:
        >>> import jax.numpy as jnp
        >>> p = {"U": jnp.eye(2), "a": jnp.zeros(2), "J": jnp.array([[0.0, 1.0], [1.0, 0.0]])}
        >>> float(energy(p, jnp.ones(2), jnp.ones(2)))    # -(1 + 1) - 1
        -3.0
    """
    unary = jnp.einsum("...j,ij->...i", x, params["U"]) + params["a"]
    e = -jnp.sum(y * unary, axis=-1)
    if "J" in params:
        e = e - 0.5 * jnp.einsum("...i,ij,...j->...", y, _symmetric(params["J"]), y)
    return e


def model(x: Any, num_outputs: int, couplings: bool = True) -> None:
    """Conditional EBM program: data site ``"x"`` (observed), state site ``"y"`` (``Bits``).

    Args:
        x: one input ``(num_inputs,)`` (the value is replaced by the data when training).
        num_outputs: number of binary outputs.
        couplings: include the pairwise term ``J`` (else independent logistic outputs).

    Raises:
        ValueError: ``x`` not 1-D, or ``num_outputs < 1``.
    """
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"x must be one input of shape (num_inputs,), got {x.shape}")
    if isinstance(num_outputs, bool) or int(num_outputs) < 1:
        raise ValueError(f"num_outputs must be an integer >= 1, got {num_outputs!r}")
    d, k = x.shape[0], int(num_outputs)
    params = {
        "U": numpyro.param("U", jnp.zeros((k, d))),
        "a": numpyro.param("a", jnp.zeros(k)),
    }
    if couplings:
        params["J"] = numpyro.param("J", jnp.zeros((k, k)))
    xv = numpyro.sample("x", Flat((d,)), obs=x)
    y = numpyro.sample("y", Bits(k))
    declare_energy("E", energy(params, xv, y))


def predict(
    rng_key: Any,
    params: dict[str, Any],
    x: Any,
    *,
    method: str = "gibbs",
    num_sweeps: int = 100,
    num_burnin: int = 20,
) -> jax.Array:
    """Predict ``y`` for each input of ``x`` (``(n, num_inputs)`` -> ``(n, num_outputs)``).

    ``"gibbs"``: posterior marginals ``P(y_i = 1 | x)`` averaged over ``num_sweeps`` sequential
    Gibbs sweeps after ``num_burnin`` (threshold at 0.5 for the maximizer of the marginals);
    ``"icm"``: a local minimum of ``E(x, ·)`` by iterated conditional modes from
    ``y_i = [unary_i > 0]`` (0/1 values).

    Raises:
        ValueError: an unknown ``method`` or an ``x`` of the wrong shape.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> p = {"U": jnp.eye(2), "a": jnp.zeros(2), "J": jnp.array([[0.0, 4.0], [4.0, 0.0]])}
        >>> predict(jax.random.PRNGKey(0), p, jnp.array([[3.0, -1.0]]), method="icm").tolist()
        [[1.0, 1.0]]
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    x = jnp.asarray(x, jnp.result_type(float))
    k, d = jnp.shape(params["U"])
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"x must have shape (num_examples, {d}), got {x.shape}")
    J = _symmetric(params["J"]) if "J" in params else jnp.zeros((k, k), x.dtype)
    unary = x @ params["U"].T + params["a"]  # (n, k)

    def sweep(y, key, u):
        keys = jax.random.split(key, k)

        def unit(y, i):
            logit = u[i] + J[i] @ y
            if method == "icm":
                yi = (logit > 0).astype(y.dtype)
            else:
                yi = jax.random.bernoulli(keys[i], jax.nn.sigmoid(logit)).astype(y.dtype)
            return y.at[i].set(yi), jax.nn.sigmoid(logit)

        return jax.lax.scan(unit, y, jnp.arange(k))

    def one(key, u):
        y0 = (u > 0).astype(u.dtype)
        if method == "icm":
            y, _ = jax.lax.scan(
                lambda y, kk: (sweep(y, kk, u)[0], None), y0, jax.random.split(key, int(num_sweeps))
            )
            return y

        def body(y, kk):
            y, probs = sweep(y, kk, u)
            return y, probs

        keys = jax.random.split(key, int(num_burnin) + int(num_sweeps))
        _, probs = jax.lax.scan(body, y0, keys)
        return jnp.mean(probs[int(num_burnin) :], axis=0)

    return jax.jit(jax.vmap(one))(jax.random.split(rng_key, x.shape[0]), unary)
