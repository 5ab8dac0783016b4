"""Checkerboard Gibbs sampling of a nearest-neighbour Ising model in the compact layout.

The generic block Gibbs kernel (:mod:`ebm_ppl.kernels.gibbs`) computes the logit of every unit
of an ``L x L`` lattice for each colour and keeps half of them. Here each colour class is
stored on its own, as an ``(L, L/2)`` array, and a colour's update reads only the other
colour's array: no logit is computed and discarded.

Layout (``L`` even, periodic): row ``i`` has parity ``p = i mod 2``; the black units (colour 0,
``(i + j)`` even) are ``black[i, k] = s[i, 2k + p]`` and the white ones
``white[i, k] = s[i, 2k + 1 - p]``. The four neighbours of ``black[i, k]`` are
``white[i-1, k]``, ``white[i+1, k]``, ``white[i, k]`` and ``white[i, k-1]`` (even rows) or
``white[i, k+1]`` (odd rows); symmetrically for the white units. Every bond joins a black and a
white unit, so ``E = -β (J Σ_i black_i n_i + h Σ_i s_i)`` with ``n`` the black units'
neighbour sums.

Storage: :func:`init` keeps the spins as ``int8`` by default (neighbour sums in ``int8``,
logits in float32: a quarter of float32's memory traffic); float spins give the same chain.

Random numbers: one uniform per spin per sweep, drawn exactly as the generic kernel draws them
for the full lattice (the same key, the same words, 24-bit or 16-bit uniforms) and split into
the two colours, so for the same key this kernel moves the spins exactly as
``gibbs.build_kernel(colours={"s": lattice_colouring((L, L))}, levels={"s": (-1, 1)})`` does on
``models.ising``'s energy (``J = 1``, ``h = 0``: the logits are then bit-identical too).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import lattice
    >>> state = lattice.init(jnp.ones((4, 4)), beta=0.4)
    >>> float(state.energy)                     # 32 bonds, all satisfied
    -12.8
    >>> step = lattice.build_kernel()
    >>> state, info = jax.jit(step)(jax.random.PRNGKey(0), state, 0.4)
    >>> lattice.from_compact(state.black, state.white).shape
    (4, 4)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_ppl.kernels import _random
from ebm_ppl.kernels.gibbs import GibbsInfo, _uniforms

__all__ = [
    "LatticeState",
    "PottsState",
    "build_kernel",
    "build_potts_kernel",
    "energy",
    "from_compact",
    "init",
    "potts_energy",
    "potts_init",
    "to_compact",
]


class LatticeState(NamedTuple):
    """State of one chain in the compact layout.

    Attributes:
        black: ``(L, L/2)`` spins of colour 0 (``(i + j)`` even).
        white: ``(L, L/2)`` spins of colour 1.
        energy: ``E`` of the configuration (tracked by exact changes during a sweep).
    """

    black: jax.Array
    white: jax.Array
    energy: jax.Array


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] % 2 or shape[0] < 2:
        raise ValueError(f"the compact layout needs an L x L lattice with L even, got {shape}")


def _even_rows(n: int) -> jax.Array:
    return (jnp.arange(n) % 2 == 0)[:, None]


def to_compact(s: Any) -> tuple[jax.Array, jax.Array]:
    """Split an ``(L, L)`` lattice into its ``(L, L/2)`` black and white arrays.

    Examples:
        >>> import jax.numpy as jnp
        >>> b, w = to_compact(jnp.arange(16.0).reshape(4, 4))
        >>> b.tolist()[:2], w.tolist()[:2]
        ([[0.0, 2.0], [5.0, 7.0]], [[1.0, 3.0], [4.0, 6.0]])
    """
    s = jnp.asarray(s)
    _check_shape(s.shape)
    pairs = s.reshape(s.shape[0], s.shape[1] // 2, 2)
    even = _even_rows(s.shape[0])
    return (
        jnp.where(even, pairs[..., 0], pairs[..., 1]),
        jnp.where(even, pairs[..., 1], pairs[..., 0]),
    )


def from_compact(black: Any, white: Any) -> jax.Array:
    """The ``(L, L)`` lattice of the two compact arrays (inverse of :func:`to_compact`).

    Leading batch axes (chains, draws) are kept: ``(..., L, L/2)`` arrays give ``(..., L, L)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> s = jnp.arange(16.0).reshape(4, 4)
        >>> bool((from_compact(*to_compact(s)) == s).all())
        True
        >>> b, w = jax.vmap(to_compact)(jnp.stack([s, -s]))
        >>> from_compact(b, w).shape
        (2, 4, 4)
    """
    black, white = jnp.asarray(black), jnp.asarray(white)
    even = _even_rows(black.shape[-2])
    first = jnp.where(even, black, white)
    second = jnp.where(even, white, black)
    full = jnp.stack([first, second], axis=-1)
    return full.reshape(*black.shape[:-1], 2 * black.shape[-1])


def _neighbour_sum(other: jax.Array, side: int) -> jax.Array:
    """Neighbour sums of one colour from the other colour's array.

    ``side = -1`` for black (the extra horizontal neighbour is ``k - 1`` on even rows, ``k + 1``
    on odd ones), ``+1`` for white (the reverse).
    """
    vertical = jnp.roll(other, 1, axis=0) + jnp.roll(other, -1, axis=0)
    left, right = jnp.roll(other, 1, axis=1), jnp.roll(other, -1, axis=1)
    even = _even_rows(other.shape[0])
    extra = jnp.where(even, left, right) if side < 0 else jnp.where(even, right, left)
    return vertical + other + extra


def energy(black: Any, white: Any, beta: Any, coupling: Any = 1.0, field: Any = 0.0) -> jax.Array:
    """``β(-J Σ_<ij> s_i s_j - h Σ_i s_i)`` on the torus, from the compact arrays.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(energy(*to_compact(jnp.ones((4, 4))), beta=1.0))
        -32.0
    """
    black, white = jnp.asarray(black), jnp.asarray(white)
    # integer spins (int8) summed in int32: exact, no int8 overflow
    acc = jnp.int32 if jnp.issubdtype(black.dtype, jnp.integer) else jnp.result_type(float)
    black, white = black.astype(acc), white.astype(acc)
    bonds = jnp.sum(black * _neighbour_sum(white, -1))
    return beta * (-coupling * bonds - field * (jnp.sum(black) + jnp.sum(white)))


def init(
    s: Any, *, beta: Any, coupling: Any = 1.0, field: Any = 0.0, dtype: Any = jnp.int8
) -> LatticeState:
    """Compact state of an ``(L, L)`` ±1 lattice (``L`` even) with its energy.

    Args:
        s: ``(L, L)`` spins in ``{-1, +1}``.
        beta, coupling, field: ``β``, ``J``, ``h`` of the energy.
        dtype: storage of the spins: ``int8`` (default: a quarter of float32's memory
            traffic, about twice the sweeps per second at ``L = 1024`` on CPU; energies
            summed exactly in int32) or a float dtype. The kernel keeps the state's dtype.

    Raises:
        ValueError: a lattice that is not square with an even side.

    Examples:
        >>> import jax.numpy as jnp
        >>> st = init(jnp.ones((4, 4)), beta=1.0)
        >>> st.black.shape, st.black.dtype.name
        ((4, 2), 'int8')
    """
    black, white = (a.astype(dtype) for a in to_compact(s))
    return LatticeState(black, white, jnp.asarray(energy(black, white, beta, coupling, field)))


def build_kernel(*, uniform_bits: int = 32) -> Callable[..., tuple[LatticeState, GibbsInfo]]:
    """One checkerboard sweep ``kernel(rng_key, state, beta, coupling=1.0, field=0.0)``.

    ``beta``, ``coupling`` (``J``) and ``field`` (``h``) are dynamic arguments. The black
    units are redrawn first, then the white ones given the new black units, each from
    ``P(s = +1 | rest) = σ(2β(J n + h))`` with ``n`` its neighbour sum. The spins keep the
    state's dtype (``int8`` from :func:`init` by default, or a float dtype).

    Args:
        uniform_bits: ``32`` (24-bit uniforms, one random word per spin) or ``16`` (two
            uniforms per random word; update probabilities resolved to 2^-16), as in
            :func:`ebm_ppl.kernels.gibbs.build_kernel`.

    Returns:
        ``kernel(rng_key, state, beta, coupling=1.0, field=0.0) -> (LatticeState, GibbsInfo)``.

    Raises:
        ValueError: ``uniform_bits`` not 16 or 32.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> step = build_kernel(uniform_bits=16)
        >>> state, info = step(jax.random.PRNGKey(1), init(jnp.ones((4, 4)), beta=0.1), 0.1)
        >>> bool(info.is_accepted)
        True
    """
    if uniform_bits not in (16, 32):
        raise ValueError(f"uniform_bits must be 16 or 32, got {uniform_bits!r}")

    def kernel(rng_key, state: LatticeState, beta, coupling=1.0, field=0.0):
        black, white = state.black, state.white
        n, half = black.shape
        # The generic kernel's draw for the whole lattice (same key split), split by colour.
        rng_key, _ = _random.split(rng_key)
        key = _random.split(rng_key, 1)[0]
        u_black, u_white = to_compact(
            _uniforms(key, (n, 2 * half), jnp.result_type(float), uniform_bits)
        )

        ftype = jnp.result_type(float)

        def update(mine, other, u, side):
            # neighbour sums in the spins' own dtype (|n| <= 4 fits int8: a quarter of the
            # float32 memory traffic), the logit in float
            n = _neighbour_sum(other, side)
            logit = (2.0 * beta) * (coupling * n.astype(ftype) + field)
            new = jnp.where(u < jax.nn.sigmoid(logit), 1, -1).astype(mine.dtype)
            # E(flip) - E(x) = x * logit for the units that flipped
            change = jnp.sum(jnp.where(new != mine, mine.astype(ftype) * logit, 0.0))
            return new, change

        black, change_b = update(black, white, u_black, -1)
        white, change_w = update(white, black, u_white, 1)
        e = state.energy + (change_b + change_w)
        finite = jnp.isfinite(e)
        new_state = jax.tree.map(
            lambda a, b: jnp.where(finite, a, b), LatticeState(black, white, e), state
        )
        dtype = jnp.result_type(e)
        return new_state, GibbsInfo(finite.astype(dtype), finite, ~finite)

    return kernel


# ----------------------------------------------------------------------------- Potts model
class PottsState(NamedTuple):
    """State of one Potts chain in the compact layout.

    Attributes:
        black: ``(L, L/2)`` ``int32`` states in ``{0, ..., q-1}`` of colour 0.
        white: ``(L, L/2)`` ``int32`` states of colour 1.
        energy: ``E = -β J Σ_<ij> δ(σ_i, σ_j) - β Σ_i h[σ_i]`` (tracked by exact changes).
    """

    black: jax.Array
    white: jax.Array
    energy: jax.Array


def _neighbours(other: jax.Array, side: int) -> tuple[jax.Array, ...]:
    """The four neighbours' entries of one colour's units, read from the other colour's array."""
    left, right = jnp.roll(other, 1, axis=1), jnp.roll(other, -1, axis=1)
    even = _even_rows(other.shape[0])
    extra = jnp.where(even, left, right) if side < 0 else jnp.where(even, right, left)
    return jnp.roll(other, 1, axis=0), jnp.roll(other, -1, axis=0), other, extra


def _state_counts(other: jax.Array, side: int, num_states: int, dtype: Any) -> jax.Array:
    """``(L, L/2, q)`` number of neighbours in each state."""
    states = jnp.arange(num_states, dtype=other.dtype)
    count = jnp.zeros(other.shape + (num_states,), dtype)
    for nb in _neighbours(other, side):
        count = count + (nb[..., None] == states).astype(dtype)
    return count


def potts_energy(
    black: Any, white: Any, num_states: int, beta: Any, coupling: Any = 1.0, field: Any = None
) -> jax.Array:
    """``-β J Σ_<ij> δ(σ_i, σ_j) - β Σ_i h[σ_i]`` on the torus, from the compact arrays.

    Args:
        black, white: ``(L, L/2)`` integer states.
        num_states: ``q``.
        beta, coupling: ``β``, ``J``.
        field: ``h`` of shape ``(q,)``, or ``None``.

    Returns:
        scalar (``float32`` unless x64 is enabled).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(potts_energy(*to_compact(jnp.zeros((4, 4), jnp.int32)), 3, beta=1.0))
        -32.0
    """
    black, white = jnp.asarray(black), jnp.asarray(white)
    dtype = jnp.result_type(float)
    counts = _state_counts(white, -1, num_states, dtype)
    agree = jnp.sum(jnp.take_along_axis(counts, black.astype(jnp.int32)[..., None], axis=-1))
    e = -beta * coupling * agree
    if field is not None:
        h = jnp.asarray(field, dtype)
        e = e - beta * (jnp.sum(h[black]) + jnp.sum(h[white]))
    return e


def _check_potts(num_states: Any, field: Any) -> int:
    if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 2:
        raise ValueError(f"num_states must be an int >= 2, got {num_states!r}")
    if field is not None and tuple(jnp.shape(field)) != (num_states,):
        raise ValueError(
            f"field must have shape ({num_states},) (one value per state), got {jnp.shape(field)}"
        )
    return num_states


def potts_init(
    s: Any, num_states: int, *, beta: Any, coupling: Any = 1.0, field: Any = None
) -> PottsState:
    """Compact state of an ``(L, L)`` lattice of states in ``{0, ..., q-1}`` (``L`` even).

    Raises:
        ValueError: a lattice that is not square with an even side, ``num_states < 2`` or a
            field not of shape ``(q,)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> st = potts_init(jnp.zeros((4, 4), jnp.int32), 3, beta=0.5)
        >>> st.black.shape, float(st.energy)
        ((4, 2), -16.0)
    """
    q = _check_potts(num_states, field)
    black, white = to_compact(jnp.asarray(s).astype(jnp.int32))
    return PottsState(
        black, white, jnp.asarray(potts_energy(black, white, q, beta, coupling, field))
    )


def build_potts_kernel(
    num_states: int, *, uniform_bits: int = 32
) -> Callable[..., tuple[PottsState, GibbsInfo]]:
    """One checkerboard heat-bath sweep of the ``q``-state Potts model in the compact layout.

    ``kernel(rng_key, state, beta, coupling=1.0, field=None)``: the black units are redrawn
    first, then the white ones given the new black units, each from ``P(σ = k | rest) ∝
    exp(β J n_k + β h_k)`` with ``n_k`` the number of its four neighbours in state ``k``: the
    ``q`` logits of a colour's units only, one uniform per unit, the inverse CDF. ``beta``,
    ``coupling`` (``J``) and ``field`` (``h``, shape ``(q,)``) are dynamic arguments; vmap the
    kernel over chains.

    The uniforms are those of the generic kernel (same key split, same words) and the draw is
    the same inverse CDF (state ``k`` = number of CDF values ``<= u``), computed from the
    unnormalized weights ``exp(β J n_k + β h_k)`` instead of a softmax: for the same key a
    sweep equals that of ``gibbs.build_kernel(colours={"s": lattice_colouring((L, L))},
    num_states={"s": q}, logits_fn=...)`` with the closed-form Potts conditionals except where
    ``u`` lies within rounding of a CDF value (probability ~1e-7 per unit).

    Args:
        num_states: ``q >= 2`` (static).
        uniform_bits: ``32`` (24-bit uniforms) or ``16`` (two per random word).

    Returns:
        ``kernel(rng_key, state, beta, coupling=1.0, field=None) -> (PottsState, GibbsInfo)``.

    Raises:
        ValueError: ``num_states < 2`` or ``uniform_bits`` not 16 or 32.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> step = jax.jit(build_potts_kernel(3))
        >>> st = potts_init(jnp.zeros((4, 4), jnp.int32), 3, beta=1.0)
        >>> st, info = step(jax.random.PRNGKey(0), st, 1.0)
        >>> s = from_compact(st.black, st.white)
        >>> s.shape, s.dtype.name, bool(info.is_accepted)
        ((4, 4), 'int32', True)
        >>> bool(jnp.isclose(st.energy, potts_energy(st.black, st.white, 3, 1.0)))
        True
    """
    q = _check_potts(num_states, None)
    if uniform_bits not in (16, 32):
        raise ValueError(f"uniform_bits must be 16 or 32, got {uniform_bits!r}")

    def kernel(rng_key, state: PottsState, beta, coupling=1.0, field=None):
        black, white = state.black, state.white
        n, half = black.shape
        dtype = jnp.result_type(float)
        rng_key, _ = _random.split(rng_key)
        key = _random.split(rng_key, 1)[0]
        u_black, u_white = to_compact(_uniforms(key, (n, 2 * half), dtype, uniform_bits))

        def update(mine, other, u, side):
            nbs = _neighbours(other, side)
            h = None if field is None else jnp.asarray(field, dtype)
            # q passes of elementwise work over (L, L/2) arrays, fused by XLA into one loop: the
            # unnormalized weights exp(β J n_k + β h_k), their total, then the inverse CDF
            # (a (L, L/2, q) array, its cumsum and a softmax cost several times more).
            # n_k is 0..4: its five weights looked up by selects, cheaper than an exp per state
            table = jnp.exp(beta * coupling * jnp.arange(5, dtype=dtype))
            weights = []
            for k in range(q):
                n_k = sum((nb == k).astype(jnp.int32) for nb in nbs)
                w = table[0]
                for m in range(1, 5):
                    w = jnp.where(n_k == m, table[m], w)
                weights.append(w if h is None else w * jnp.exp(beta * h[k]))
            t = u * sum(weights)
            new, cdf = jnp.zeros(mine.shape, jnp.int32), jnp.zeros_like(t)
            for k in range(q - 1):
                cdf = cdf + weights[k]
                new = new + (t >= cdf).astype(jnp.int32)
            new = new.astype(mine.dtype)
            # E(new) - E(old) = -β J (n_new - n_old) - β (h_new - h_old)
            agree = sum((nb == new).astype(dtype) - (nb == mine).astype(dtype) for nb in nbs)
            change = -beta * coupling * jnp.sum(agree)
            if h is not None:
                change = change - beta * jnp.sum(h[new] - h[mine])
            return new, change

        black, change_b = update(black, white, u_black, -1)
        white, change_w = update(white, black, u_white, 1)
        e = state.energy + (change_b + change_w)
        finite = jnp.isfinite(e)
        new_state = jax.tree.map(
            lambda a, b: jnp.where(finite, a, b), PottsState(black, white, e), state
        )
        edtype = jnp.result_type(e)
        return new_state, GibbsInfo(finite.astype(edtype), finite, ~finite)

    return kernel
