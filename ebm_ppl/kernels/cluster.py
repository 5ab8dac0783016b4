"""Swendsen–Wang cluster updates of ferromagnetic Potts and Ising models on periodic lattices.

One sweep (Swendsen & Wang 1987; the Edwards–Sokal joint measure) on an ``n x m`` torus with
``E = -β J Σ_<ij> δ(σ_i, σ_j) - β Σ_i h_i[σ_i]``:

1. every bond between equal neighbours is activated with probability ``p = 1 - exp(-β J)``
   (``β J >= 0``; unequal neighbours are never bonded);
2. the connected components of the active bonds are labelled (:func:`components`: min-label
   propagation with hooking and pointer jumping inside ``lax.while_loop``);
3. every cluster ``C`` gets a new state ``k``, drawn independently with probability
   ``∝ exp(β Σ_{i∈C} h_i[k])``: uniform without a field, the cluster's summed field weights with
   one (a Gumbel-max draw per cluster).

Both steps are exact conditional draws of the joint measure of spins and bonds, so the sweep
leaves the Potts distribution invariant. Near and below ``T_c`` it decorrelates the energy in a
few to tens of sweeps where single-site heat baths need thousands (critical slowing down,
dynamic exponent ``z ≈ 0.5`` instead of ``≈ 2``). It needs ``J >= 0`` (ferromagnetic: with
``J < 0`` the bond weights are not probabilities), nearest-neighbour bonds on a periodic
two-dimensional lattice, and a field that acts on single sites; anything else is not
supported. The Ising model is the ``q = 2`` case (``s = 2σ - 1``, ``J_Potts = 2 J``).

Per sweep: ``2 n m`` uniforms for the bonds, ``n m`` for the new states (``n m q`` Gumbels with
a field), and one pass of the labelling per iteration of the while loop (about ``log`` of the
largest cluster's chemical length, tens at ``L = 64`` at ``T_c``; under ``vmap`` every chain
runs as many iterations as the slowest).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import cluster
    >>> step = jax.jit(cluster.build_kernel(3))
    >>> st = cluster.init(jnp.zeros((8, 8), jnp.int32), 3, beta=1.0)
    >>> float(st.energy)                        # 128 satisfied bonds
    -128.0
    >>> st, info = step(jax.random.PRNGKey(0), st, 1.0)
    >>> st.s.shape, bool(info.is_accepted), int(info.num_clusters) >= 1
    ((8, 8), True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.kernels import _random

__all__ = [
    "ClusterInfo",
    "ClusterState",
    "build_ising_kernel",
    "build_kernel",
    "components",
    "init",
    "ising_energy",
    "ising_init",
    "potts_energy",
]


class ClusterState(NamedTuple):
    """State of one chain.

    Attributes:
        s: ``(n, m)`` lattice: ``int32`` states in ``{0, ..., q-1}`` (Potts) or ``±1`` spins
            (Ising, the dtype of the start).
        energy: ``E`` of the configuration (recomputed after every sweep).

    Examples:
        >>> import jax.numpy as jnp
        >>> ClusterState(jnp.zeros((2, 2), jnp.int32), jnp.zeros(())).s.shape
        (2, 2)
    """

    s: jax.Array
    energy: jax.Array


class ClusterInfo(NamedTuple):
    """Information about one sweep.

    Attributes:
        acceptance_rate: 1 (cluster updates are always accepted), 0 if the sweep was refused.
        is_accepted: ``True`` unless the sweep was refused (``β J < 0`` or a non-finite
            energy: the state is kept).
        is_divergent: ``True`` when refused.
        num_clusters: number of clusters of the sweep's bond configuration.
        num_iterations: iterations of the labelling loop (under ``vmap``, of the merged loop
            of all chains).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> st = init(jnp.zeros((4, 4), jnp.int32), 2, beta=0.5)
        >>> _, info = build_kernel(2)(jax.random.PRNGKey(0), st, 0.5)
        >>> int(info.num_clusters) <= 16
        True
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    num_clusters: jax.Array
    num_iterations: jax.Array


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"the cluster kernel needs a two-dimensional lattice, got shape {shape}")
    return int(shape[0]), int(shape[1])


def _check_num_states(num_states: Any) -> int:
    if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)):
        raise TypeError(f"num_states must be an int >= 2, got {num_states!r}")
    if num_states < 2:
        raise ValueError(f"num_states must be >= 2, got {num_states}")
    return int(num_states)


def _check_coupling(beta: Any, coupling: Any) -> None:
    """``β J >= 0`` when both are concrete (traced values are refused inside the sweep)."""
    try:
        value = np.asarray(beta, np.float64) * np.asarray(coupling, np.float64)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return
    if value.ndim == 0 and not value >= 0:
        raise ValueError(
            f"the Swendsen–Wang kernel needs a ferromagnetic coupling, beta * coupling >= 0; got "
            f"beta={float(np.asarray(beta))}, coupling={float(np.asarray(coupling))}"
        )


def _check_field(field: Any, shape: tuple[int, int], num_states: int, name: str) -> None:
    if field is None:
        return
    fs = tuple(np.shape(field))
    if fs not in ((num_states,), (*shape, num_states)):
        raise ValueError(
            f"{name} must have shape ({num_states},) or {(*shape, num_states)} (one value per "
            f"state, optionally per site), got {fs}"
        )


def components(right: Any, down: Any) -> tuple[jax.Array, jax.Array]:
    """Connected components of a bond configuration on the ``n x m`` torus.

    ``right[i, j]`` bonds ``(i, j)`` to ``(i, (j + 1) mod m)``, ``down[i, j]`` bonds ``(i, j)``
    to ``((i + 1) mod n, j)``. Every site's label is the smallest flat index ``i m + j`` of its
    component. Each iteration takes the minimum label over the active bonds, hooks the old
    label's site to that minimum (a scatter-min, so whole trees merge at once) and jumps
    pointers twice (``label = label[label]``); labels only decrease and always name a site of
    the same component, so the loop stops exactly at the component minima.

    Args:
        right, down: ``(n, m)`` booleans.

    Returns:
        ``(labels, num_iterations)``: ``int32`` ``(n, m)`` and a scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> right = jnp.zeros((2, 3), bool).at[0, 2].set(True)   # (0, 2) - (0, 0) across the edge
        >>> down = jnp.zeros((2, 3), bool).at[0, 1].set(True)    # (0, 1) - (1, 1)
        >>> components(right, down)[0].tolist()
        [[0, 1, 0], [3, 1, 5]]
    """
    right, down = jnp.asarray(right, bool), jnp.asarray(down, bool)
    _check_shape(right.shape)
    if down.shape != right.shape:
        raise ValueError(f"right and down must have one shape, got {right.shape}, {down.shape}")
    lab, it = _labels(right[None], down[None])
    return lab[0], it[0]


def _labels_flat(right: jax.Array, down: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Labels of ``B`` lattices ``(B, n, m)`` as one graph of ``B n m`` sites (one while loop).

    Plain gathers and scatters over one flat index space: under ``vmap`` the same operations
    become batched gathers, several times slower on CPU.
    """
    b, n, m = right.shape
    size = b * n * m
    left, up = jnp.roll(right, 1, axis=2), jnp.roll(down, 1, axis=1)
    sentinel = jnp.int32(size)

    def neighbour_min(lab):
        out = lab
        for bond, shift, axis in ((right, -1, 2), (left, 1, 2), (down, -1, 1), (up, 1, 1)):
            out = jnp.minimum(out, jnp.where(bond, jnp.roll(lab, shift, axis=axis), sentinel))
        return out

    def body(carry):
        lab, _, it = carry
        new = neighbour_min(lab).reshape(-1)
        flat = new.at[lab.reshape(-1)].min(new)
        flat = flat[flat]
        flat = flat[flat]
        new_lab = flat.reshape(b, n, m)
        return new_lab, jnp.any(new_lab != lab), it + 1

    lab0 = jnp.arange(size, dtype=jnp.int32).reshape(b, n, m)
    lab, _, it = jax.lax.while_loop(lambda c: c[1], body, (lab0, jnp.array(True), jnp.int32(0)))
    offset = jnp.arange(b, dtype=jnp.int32) * jnp.int32(n * m)
    return lab - offset[:, None, None], it


def _merge_vmapped(fn: Callable[..., Any]) -> Any:
    """``fn`` on arrays with a leading batch axis, vmapped by merging the batch axes.

    ``fn`` handles a batch of lattices as one flat index space (plain gathers and scatters);
    under ``vmap`` the same operations would become batched gathers, several times slower on
    CPU. The rule folds the vmapped axis into the leading one (at any depth of ``vmap``).
    """
    merged = jax.custom_batching.custom_vmap(fn)

    @merged.def_vmap
    def rule(axis_size: int, in_batched: Any, *args: Any) -> Any:
        args = tuple(
            x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
            for x, batched in zip(args, in_batched, strict=True)
        )
        outs = merged(*(x.reshape(-1, *x.shape[2:]) for x in args))
        outs = jax.tree.map(lambda o: o.reshape(axis_size, -1, *o.shape[1:]), outs)
        return outs, jax.tree.map(lambda _: True, outs)

    return merged


def _labels_and_iterations(right: jax.Array, down: jax.Array) -> tuple[jax.Array, jax.Array]:
    lab, it = _labels_flat(right, down)
    return lab, jnp.broadcast_to(it, right.shape[:1])


_labels = _merge_vmapped(_labels_and_iterations)


def _take_flat(values: jax.Array, index: jax.Array) -> jax.Array:
    """``values[b, index[b]]`` for ``(B, N, ...)`` values and ``(B, N)`` indices."""
    b, size = index.shape
    offset = (jnp.arange(b, dtype=index.dtype) * size)[:, None]
    return values.reshape(b * size, *values.shape[2:])[(index + offset).reshape(-1)].reshape(
        values.shape
    )


def _segment_sum_flat(data: jax.Array, index: jax.Array) -> jax.Array:
    """Per batch, ``out[b, k] = Σ_{i: index[b, i] = k} data[b, i]`` for ``(B, N, ...)`` data."""
    b, size = index.shape
    offset = (jnp.arange(b, dtype=index.dtype) * size)[:, None]
    out = jax.ops.segment_sum(
        data.reshape(b * size, *data.shape[2:]), (index + offset).reshape(-1), b * size
    )
    return out.reshape(data.shape)


_take = _merge_vmapped(_take_flat)
_segment_sum = _merge_vmapped(_segment_sum_flat)


def _agreements(s: jax.Array) -> jax.Array:
    return jnp.sum(s == jnp.roll(s, -1, axis=1)) + jnp.sum(s == jnp.roll(s, -1, axis=0))


def _site_field(field: Any, s: jax.Array, dtype: Any) -> jax.Array:
    """``Σ_i h_i[σ_i]`` for a field of shape ``(q,)`` or ``(n, m, q)``."""
    h = jnp.asarray(field, dtype)
    if h.ndim == 1:
        return jnp.sum(h[s])
    return jnp.sum(jnp.take_along_axis(h, s[..., None], axis=-1))


def potts_energy(s: Any, beta: Any, coupling: Any = 1.0, field: Any = None) -> jax.Array:
    """``-β J Σ_<ij> δ(σ_i, σ_j) - β Σ_i h_i[σ_i]`` on the ``n x m`` torus (each bond once).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(potts_energy(jnp.zeros((3, 3), jnp.int32), beta=0.5))   # 18 bonds
        -9.0
    """
    s = jnp.asarray(s, jnp.int32)
    dtype = jnp.result_type(float)
    e = -beta * coupling * _agreements(s).astype(dtype)
    if field is not None:
        e = e - beta * _site_field(field, s, dtype)
    return e


def ising_energy(s: Any, beta: Any, coupling: Any = 1.0, field: Any = 0.0) -> jax.Array:
    """``-β (J Σ_<ij> s_i s_j + h Σ_i s_i)`` on the ``n x m`` torus, ``s = ±1``.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(ising_energy(jnp.ones((3, 3)), beta=0.5))
        -9.0
    """
    s = jnp.asarray(s)
    bonds = jnp.sum(s * jnp.roll(s, -1, axis=1)) + jnp.sum(s * jnp.roll(s, -1, axis=0))
    return -beta * (coupling * bonds + field * jnp.sum(s))


def init(
    s: Any, num_states: int, *, beta: Any, coupling: Any = 1.0, field: Any = None
) -> ClusterState:
    """Potts state of an ``(n, m)`` lattice of states in ``{0, ..., q-1}``, with its energy.

    Raises:
        ValueError: a lattice that is not two-dimensional, ``num_states < 2``, concrete
            ``beta * coupling < 0`` or a field not of shape ``(q,)`` or ``(n, m, q)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> init(jnp.zeros((4, 4), jnp.int32), 3, beta=1.0).energy.tolist()
        -32.0
    """
    s = jnp.asarray(s).astype(jnp.int32)
    q = _check_num_states(num_states)
    _check_field(field, _check_shape(s.shape), q, "field")
    _check_coupling(beta, coupling)
    return ClusterState(s, jnp.asarray(potts_energy(s, beta, coupling, field)))


def ising_init(s: Any, *, beta: Any, coupling: Any = 1.0, field: Any = 0.0) -> ClusterState:
    """Ising state of an ``(n, m)`` lattice of ``±1`` spins, with its energy.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(ising_init(-jnp.ones((4, 4)), beta=1.0, field=0.5).energy)
        -24.0
    """
    s = jnp.asarray(s)
    _check_shape(s.shape)
    _check_coupling(beta, coupling)
    return ClusterState(s, jnp.asarray(ising_energy(s, beta, coupling, field)))


def _sweep(
    rng_key: Any, sigma: jax.Array, bond_weight: Any, log_field: Any, num_states: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One Swendsen–Wang sweep of ``σ`` with ``β J = bond_weight`` and ``β h = log_field``."""
    dtype = jnp.result_type(float)
    n, m = sigma.shape
    k_bonds, k_states = _random.split(rng_key)
    u = _random.uniform(k_bonds, (2, n, m), dtype)
    p = -jnp.expm1(-jnp.asarray(bond_weight, dtype))
    right = (sigma == jnp.roll(sigma, -1, axis=1)) & (u[0] < p)
    down = (sigma == jnp.roll(sigma, -1, axis=0)) & (u[1] < p)
    labels, iterations = components(right, down)
    flat = labels.reshape(1, -1)
    if log_field is None:
        # a uniform state per site, read at each cluster's root
        v = _random.uniform(k_states, (1, n * m), dtype)
        root_state = jnp.minimum((v * num_states).astype(jnp.int32), num_states - 1)
    else:
        h = jnp.broadcast_to(jnp.asarray(log_field, dtype), (n, m, num_states))
        summed = _segment_sum(h.reshape(1, n * m, num_states), flat)
        gumbel = jax.random.gumbel(k_states, (1, n * m, num_states), dtype)
        root_state = jnp.argmax(summed + gumbel, axis=-1).astype(jnp.int32)
    new = _take(root_state, flat).reshape(n, m)
    num_clusters = jnp.sum(flat == jnp.arange(n * m, dtype=flat.dtype))
    return new, num_clusters, iterations


def _refusable(
    state: ClusterState, new_s: jax.Array, new_e: jax.Array, bond_weight: Any, extra: tuple
) -> tuple[ClusterState, ClusterInfo]:
    ok = jnp.isfinite(new_e) & (jnp.asarray(bond_weight) >= 0)
    new_state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), ClusterState(new_s, new_e), state)
    dtype = jnp.result_type(new_e)
    return new_state, ClusterInfo(ok.astype(dtype), ok, ~ok, *extra)


def build_kernel(num_states: int) -> Callable[..., tuple[ClusterState, ClusterInfo]]:
    """One Swendsen–Wang sweep of the ``q``-state Potts model on an ``n x m`` torus.

    ``kernel(rng_key, state, beta, coupling=1.0, field=None) -> (ClusterState, ClusterInfo)``
    with ``state`` from :func:`init`. ``beta``, ``coupling`` (``J``) and ``field`` (``h``, shape
    ``(q,)`` or ``(n, m, q)``: each cluster's new state is drawn from its summed field
    weights) are dynamic arguments; vmap the kernel over chains and jit it once per lattice
    shape. ``β J < 0`` is a ``ValueError`` when the values are concrete; traced, the sweep is
    refused (state kept, ``is_divergent``).

    Args:
        num_states: ``q >= 2`` (static).

    Returns:
        the kernel.

    Raises:
        ValueError, TypeError: ``num_states`` not an int ``>= 2``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> step = build_kernel(4)
        >>> starts = jnp.zeros((5, 6, 6), jnp.int32)                     # 5 chains
        >>> st = jax.vmap(lambda s: init(s, 4, beta=0.9))(starts)
        >>> keys = jax.random.split(jax.random.PRNGKey(0), 5)
        >>> st, info = jax.jit(jax.vmap(lambda k, s: step(k, s, 0.9)))(keys, st)
        >>> st.s.shape, bool(jnp.all(st.energy == jax.vmap(lambda s: potts_energy(s, 0.9))(st.s)))
        ((5, 6, 6), True)
    """
    q = _check_num_states(num_states)

    def kernel(rng_key, state: ClusterState, beta, coupling=1.0, field=None):
        _check_field(field, _check_shape(state.s.shape), q, "field")
        _check_coupling(beta, coupling)
        bond_weight = beta * coupling
        log_field = None if field is None else beta * jnp.asarray(field)
        new, clusters, its = _sweep(rng_key, state.s, bond_weight, log_field, q)
        new_e = potts_energy(new, beta, coupling, field)
        return _refusable(state, new, new_e, bond_weight, (clusters, its))

    return kernel


def build_ising_kernel() -> Callable[..., tuple[ClusterState, ClusterInfo]]:
    """One Swendsen–Wang sweep of the Ising model ``E = -β (J Σ s_i s_j + h Σ s_i)``, ``s = ±1``.

    The ``q = 2`` Potts sweep on ``σ = (s + 1) / 2`` with bond weight ``2 β J`` (bonds are
    activated with ``p = 1 - exp(-2 β J)``) and state weights ``exp(∓ β h)`` per site.
    ``kernel(rng_key, state, beta, coupling=1.0, field=0.0)`` with ``state`` from
    :func:`ising_init`; ``field`` is a scalar or an ``(n, m)`` array.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> step = jax.jit(build_ising_kernel())
        >>> st, info = step(jax.random.PRNGKey(0), ising_init(jnp.ones((4, 4)), beta=0.3), 0.3)
        >>> sorted(set(st.s.reshape(-1).tolist())) <= [-1.0, 1.0], st.s.dtype.name
        (True, 'float32')
    """

    def kernel(rng_key, state: ClusterState, beta, coupling=1.0, field=0.0):
        s = state.s
        _check_shape(s.shape)
        if np.ndim(field) not in (0, 2) or (np.ndim(field) == 2 and np.shape(field) != s.shape):
            raise ValueError(
                f"field must be a scalar or have the lattice's shape {s.shape}, got "
                f"{np.shape(field)}"
            )
        _check_coupling(beta, coupling)
        bond_weight = 2.0 * beta * coupling
        if isinstance(field, (int, float)) and field == 0:
            log_field = None  # uniform cluster states: no Gumbel draws
        else:
            bh = beta * jnp.asarray(field, jnp.result_type(float))
            log_field = jnp.stack(jnp.broadcast_arrays(-bh, bh), axis=-1)
        sigma = (s > 0).astype(jnp.int32)
        new, clusters, its = _sweep(rng_key, sigma, bond_weight, log_field, 2)
        new_s = (2 * new - 1).astype(s.dtype)
        new_e = ising_energy(new_s, beta, coupling, field)
        return _refusable(state, new_s, new_e, bond_weight, (clusters, its))

    return kernel
