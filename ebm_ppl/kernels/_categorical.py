"""Pieces shared by the kernels that move categorical units (states ``{0, ..., q-1}``).

A categorical site is held by kernels as ``int32`` states. The conditional logits of its
units, ``logits[i, k] = -(E(x_i = k) - E(x))`` (zero at the current state, shape
``site_shape + (q,)``), come from a ``logits_fn(energy_fn, position, num_states) -> (energy,
{site: logits})``: the energy of ``position`` and the logits of every categorical site in
``num_states``, computed together so that a kernel traces the energy once per step. The kernels
take it as a structural option: the model layer passes one that reads all logits from one
gradient with respect to the one-hot encoding when the energy is affine in it
(``ebm_ppl.energy.conditionals.categorical_value_and_logits``); the default here,
:func:`exact_value_and_logits`, is exact for any energy at ``q`` energy evaluations per unit.

Examples:
    >>> import jax.numpy as jnp
    >>> f = lambda pos: -jnp.sum(pos["c"][1:] == pos["c"][:-1]).astype(jnp.float32)
    >>> exact_logits(f, {"c": jnp.array([0, 0, 1])}, "c", 2).tolist()
    [[0.0, -1.0], [0.0, 0.0], [1.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LogitsFn", "check_num_states", "draw", "exact_logits", "exact_value_and_logits"]

Position = Mapping[str, jax.Array]
EnergyFn = Callable[..., jax.Array]
LogitsFn = Callable[[EnergyFn, Position, Mapping[str, int]], tuple[jax.Array, dict[str, jax.Array]]]


def check_num_states(num_states: Mapping[str, Any] | None) -> dict[str, int]:
    """``num_states`` as a dict site -> int ``q >= 2``.

    Raises:
        TypeError: not a dict of ints.
        ValueError: a ``q < 2``.

    Examples:
        >>> check_num_states({"c": 3})
        {'c': 3}
    """
    if num_states is None:
        return {}
    if not isinstance(num_states, Mapping):
        raise TypeError(f"num_states must be a dict site -> number of states, got {num_states!r}")
    out = {}
    for name, q in num_states.items():
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
            raise TypeError(f"num_states[{name!r}] must be an int, got {q!r}")
        if q < 2:
            raise ValueError(f"num_states[{name!r}] must be >= 2, got {q}")
        out[str(name)] = int(q)
    return out


def exact_logits(
    energy_fn: EnergyFn, position: Position, site: str, num_states: int, index: Any = None
) -> jax.Array:
    """``-(E(x_i = k) - E(x))`` for units ``index`` (flat; default all) and every state ``k``.

    ``q`` energies per unit, vmapped over units and states.

    Returns:
        shape ``site_shape + (q,)`` (``index=None``) or ``index.shape + (q,)``.
    """
    x = position[site]
    flat = jnp.ravel(x)
    full = index is None
    idx = jnp.arange(flat.shape[0]) if full else jnp.asarray(index)
    states = jnp.arange(num_states, dtype=flat.dtype)

    def one(i, k):
        return energy_fn({**position, site: flat.at[i].set(k).reshape(jnp.shape(x))})

    energies = jax.vmap(lambda i: jax.vmap(lambda k: one(i, k))(states))(idx)
    energies = energies.astype(jnp.result_type(float))  # an energy of integer states is an int
    e_0 = jnp.take_along_axis(energies, flat[idx].astype(jnp.int32)[:, None], axis=-1)
    logits = -(energies - e_0)
    return logits.reshape(jnp.shape(x) + (num_states,)) if full else logits


def exact_value_and_logits(
    energy_fn: EnergyFn, position: Position, num_states: Mapping[str, int]
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(E(position), {site: exact logits})`` with the energy traced once (one vmap).

    Every (site, unit, state) energy is one row of a single vmapped evaluation; ``E(x)`` is an
    extra row. Sites are concatenated by padding their units to a common flat index.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda pos: jnp.sum(pos["c"] == 1).astype(jnp.float32)
        >>> e, lg = exact_value_and_logits(f, {"c": jnp.array([0, 1])}, {"c": 2})
        >>> float(e), lg["c"].tolist()
        (1.0, [[0.0, -1.0], [1.0, 0.0]])
    """
    names = sorted(num_states)
    rows = [np.array([[-1, 0, 0]])]  # the unchanged position
    for s, name in enumerate(names):
        size = int(np.size(position[name]))
        q = int(num_states[name])
        units, states = np.meshgrid(np.arange(size), np.arange(q), indexing="ij")
        rows.append(np.stack([np.full(size * q, s), units.ravel(), states.ravel()], axis=1))
    table = np.concatenate(rows).astype(np.int32)

    def one(row):
        site_idx, unit, state = row[0], row[1], row[2]
        pos = dict(position)
        for s, name in enumerate(names):
            x = position[name]
            flat = jnp.ravel(x)
            # only the row's site changes; other sites' updates go out of bounds and are dropped
            target = jnp.where(site_idx == s, unit, flat.shape[0])
            pos[name] = (
                flat.at[target].set(state.astype(flat.dtype), mode="drop").reshape(jnp.shape(x))
            )
        return energy_fn(pos)

    energies = jax.vmap(one)(jnp.asarray(table)).astype(jnp.result_type(float))
    e_0 = energies[0]
    out, offset = {}, 1
    for name in names:
        size = int(np.size(position[name]))
        q = int(num_states[name])
        block = energies[offset : offset + size * q].reshape(jnp.shape(position[name]) + (q,))
        out[name] = -(block - e_0)
        offset += size * q
    return e_0, out


def draw(u: jax.Array, logits: jax.Array) -> jax.Array:
    """One state per unit from ``softmax(logits)`` by the inverse CDF: one uniform per unit.

    Args:
        u: uniforms on (0, 1), shape ``S``.
        logits: shape ``S + (q,)`` (``-inf`` allowed).

    Returns:
        ``int32`` states of shape ``S``.

    Examples:
        >>> import jax.numpy as jnp
        >>> draw(jnp.array([0.1, 0.9]), jnp.log(jnp.array([[0.5, 0.5], [0.5, 0.5]]))).tolist()
        [0, 1]
    """
    probs = jax.nn.softmax(logits, axis=-1)
    cdf = jnp.cumsum(probs, axis=-1)
    # counting the CDF values below u: rounding in the last entry cannot give state q
    k = jnp.sum(u[..., None] >= cdf[..., :-1], axis=-1)
    return k.astype(jnp.int32)
