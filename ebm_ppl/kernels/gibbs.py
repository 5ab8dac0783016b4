"""Block Gibbs sampling of binary and categorical units: one sweep over colour classes.

Units are partitioned into *blocks* (colour classes) of conditionally independent units: no
energy term couples two units of one block. A sweep visits the blocks in colour order and
redraws every unit of the block at once from its exact conditional,

.. math::

    P(x_i = hi \\mid x_{-i}) = \\sigma(\\ell_i), \\qquad
    \\ell_i = E(x_i{=}lo) - E(x_i{=}hi),

where the logits ``ℓ`` come from one gradient for energies affine in each unit, else from exact
energy differences (:mod:`ebm_ppl.energy.conditionals`). Each unit uses one uniform number per
sweep (drawn once for the whole state, so a sweep costs one uniform per unit however many
blocks there are). Colourings: :func:`lattice_colouring` (checkerboard, or a 3-colouring for a
periodic lattice with an odd side) and :func:`greedy_colouring` of an interaction graph, which
:func:`interaction_colouring` reads off the Hessian's sparsity.

Categorical units (states ``{0, ..., q-1}``, held as ``int32``) are drawn the same way from
their q conditional logits ``-(E(x_i = k) - E(x))`` (a ``logits_fn``: one gradient with
respect to the one-hot encoding for affine energies, exact energy differences by default), by
the inverse CDF with one uniform per unit per sweep; :func:`categorical_interaction_colouring`
finds their blocks from exact energy differences.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import gibbs
    >>> def energy_fn(pos):                    # 1-D periodic Ising ring, beta = 0.5
    ...     s = pos["s"]
    ...     return -0.5 * jnp.sum(s * jnp.roll(s, -1))
    >>> colours = {"s": gibbs.lattice_colouring((8,))}
    >>> step = gibbs.build_kernel(colours=colours, levels={"s": (-1.0, 1.0)})
    >>> state = gibbs.init({"s": jnp.ones(8)}, energy_fn)
    >>> state, info = jax.jit(step, static_argnums=2)(jax.random.PRNGKey(0), state, energy_fn)
    >>> state.position["s"].shape, bool(info.is_accepted)
    ((8,), True)

References:
    Geman & Geman (1984), Stochastic relaxation, Gibbs distributions, and the Bayesian
    restoration of images. IEEE TPAMI 6(6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.kernels import _categorical, _random
from ebm_ppl.kernels._shapes import as_shape

__all__ = [
    "GibbsInfo",
    "GibbsState",
    "MAX_COLOURING_UNITS",
    "build_kernel",
    "categorical_interaction_colouring",
    "greedy_colouring",
    "init",
    "interaction_colouring",
    "lattice_colouring",
    "normalize_colours",
    "sweep_uniforms",
]

Position = dict[str, jax.Array]
EnergyFn = Callable[[Position], jax.Array]

#: Largest number of binary units for which blocks are found automatically (Hessian sparsity).
MAX_COLOURING_UNITS = 4096
#: Largest number of categorical units for which blocks are found from energy differences.
MAX_CATEGORICAL_COLOURING_UNITS = 512


class GibbsState(NamedTuple):
    """State of a block Gibbs chain.

    Attributes:
        position: dict site -> array (binary sites are sampled, others held fixed).
        energy: scalar ``E(position)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> GibbsState({"s": jnp.ones(2)}, jnp.zeros(())).energy.shape
        ()
    """

    position: Any
    energy: jax.Array


class GibbsInfo(NamedTuple):
    """Information about one sweep.

    Attributes:
        acceptance_rate: 1 (Gibbs updates are always accepted).
        is_accepted: ``True``.
        is_divergent: ``True`` if the energy after the sweep is not finite.

    Examples:
        >>> import jax.numpy as jnp
        >>> GibbsInfo(jnp.ones(()), jnp.array(True), jnp.array(False)).acceptance_rate.shape
        ()
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array


# ----------------------------------------------------------------------------- colourings
def _cycle_colouring(n: int) -> np.ndarray:
    """A proper colouring of the n-cycle with values whose neighbours differ mod 3."""
    c = np.arange(n) % 2
    if n % 2 and n > 1:
        c[-1] = 2
    return c


def lattice_colouring(shape: Any, periodic: bool = True) -> np.ndarray:
    """Colours of a nearest-neighbour lattice: a checkerboard, or a 3-colouring if needed.

    Open lattices and periodic lattices with even sides get the checkerboard
    ``sum(index) mod 2``. A periodic side of odd length makes the checkerboard wrong (the
    wrapped bond joins two units of one colour), so then the colour is
    ``sum_k c_k(i_k) mod 3`` with ``c_k`` a proper colouring of the ``k``-th cycle whose
    neighbours differ mod 3: three blocks, still exact.

    Args:
        shape: lattice shape (int or tuple of ints, each >= 1).
        periodic: whether the lattice wraps around.

    Returns:
        int array of ``shape`` with values ``0, 1`` (or ``0, 1, 2``).

    Examples:
        >>> lattice_colouring((2, 4)).tolist()
        [[0, 1, 0, 1], [1, 0, 1, 0]]
        >>> sorted(set(lattice_colouring((3, 3)).ravel().tolist()))
        [0, 1, 2]
    """
    shape = as_shape(shape)
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    if not periodic or all(n % 2 == 0 for n in shape):
        return (np.sum(grids, axis=0) % 2).astype(np.int32)
    cols = [_cycle_colouring(n)[g] for n, g in zip(shape, grids, strict=True)]
    return (np.sum(cols, axis=0) % 3).astype(np.int32)


def greedy_colouring(adjacency: Any) -> np.ndarray:
    """Greedy (Welsh–Powell) colouring of an undirected graph: adjacent nodes differ.

    Args:
        adjacency: ``(n, n)`` boolean (or numeric, nonzero = edge) matrix; the diagonal is
            ignored and the pattern is symmetrized.

    Returns:
        int array ``(n,)`` of colours ``0..k-1``.

    Examples:
        >>> import numpy as np
        >>> ring = np.roll(np.eye(5), 1, axis=1) + np.roll(np.eye(5), -1, axis=1)
        >>> c = greedy_colouring(ring)
        >>> bool(all(c[i] != c[(i + 1) % 5] for i in range(5))), int(c.max()) + 1
        (True, 3)
    """
    a = np.asarray(adjacency) != 0
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {a.shape}")
    a = a | a.T
    np.fill_diagonal(a, False)
    n = a.shape[0]
    order = np.argsort(-a.sum(axis=1), kind="stable")
    colours = np.full(n, -1, dtype=np.int32)
    for i in order:
        used = set(colours[a[i]].tolist())
        c = 0
        while c in used:
            c += 1
        colours[i] = c
    return colours


def normalize_colours(colours: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]):
    """Broadcast each site's colours to its shape and renumber them ``0..K-1``.

    Args:
        colours: dict site -> int array (or int) broadcastable to the site's shape.
        shapes: dict site -> shape.

    Returns:
        ``(dict site -> int32 array of the site's shape, K)``.

    Examples:
        >>> c, k = normalize_colours({"v": 3, "h": 7}, {"v": (2,), "h": (1,)})
        >>> c["v"].tolist(), c["h"].tolist(), k
        ([0, 0], [1], 2)
    """
    out = {}
    for name, col in colours.items():
        col = np.asarray(col)
        if not np.issubdtype(col.dtype, np.integer):
            raise TypeError(f"blocks for site {name!r} must be integers (colours), got {col.dtype}")
        try:
            out[name] = np.broadcast_to(col, shapes[name])
        except ValueError:
            raise ValueError(
                f"blocks for site {name!r} have shape {col.shape}, not broadcastable to the "
                f"site's shape {shapes[name]}"
            ) from None
    values = np.unique(np.concatenate([c.ravel() for c in out.values()])) if out else np.zeros(0)
    return {n: np.searchsorted(values, c).astype(np.int32) for n, c in out.items()}, int(
        values.size
    )


def interaction_colouring(
    energy_fn: EnergyFn,
    position: Mapping[str, Any],
    levels: Mapping[str, tuple[float, float]],
    *,
    num_states: int = 2,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Blocks from the interaction graph of the binary units: Hessian sparsity, greedy colours.

    Two units interact when ``∂²E/∂x_i∂x_j ≠ 0`` at ``position`` or at one of ``num_states``
    random binary states (other sites held at ``position``). Call with concrete values.

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array.
        levels: dict binary site -> ``(lo, hi)``.
        num_states: extra random states at which the Hessian is evaluated.
        seed: seed of the random states.

    Returns:
        dict site -> int colours of the site's shape.

    Raises:
        ValueError: for more than :data:`MAX_COLOURING_UNITS` binary units (pass ``blocks=``).

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda p: -jnp.sum(p["s"][:-1] * p["s"][1:])      # open chain
        >>> interaction_colouring(f, {"s": jnp.ones(4)}, {"s": (-1.0, 1.0)})["s"].tolist()
        [1, 0, 1, 0]
    """
    names = sorted(levels)
    sizes = [int(np.size(position[n])) for n in names]
    total = sum(sizes)
    if total > MAX_COLOURING_UNITS:
        raise ValueError(
            f"the model has {total} binary units (> {MAX_COLOURING_UNITS}) and no declared "
            "blocks: pass blocks= (e.g. {site: colours}) or declare them on the site with "
            'infer={"blocks": colours}'
        )
    shapes = [jnp.shape(position[n]) for n in names]
    offsets = np.cumsum([0, *sizes])

    def flat_energy(v, pos):
        parts = {n: v[offsets[k] : offsets[k + 1]].reshape(shapes[k]) for k, n in enumerate(names)}
        return energy_fn({**pos, **parts})

    hess = jax.hessian(flat_energy)
    rng = np.random.default_rng(seed)
    adjacency = np.zeros((total, total), dtype=bool)
    with jax.ensure_compile_time_eval():
        base = jnp.concatenate([jnp.ravel(jnp.asarray(position[n], jnp.float32)) for n in names])
        points = [base]
        for _ in range(num_states):
            points.append(
                jnp.concatenate(
                    [
                        jnp.asarray(
                            np.where(rng.random(s) < 0.5, levels[n][1], levels[n][0]), jnp.float32
                        )
                        for n, s in zip(names, sizes, strict=True)
                    ]
                )
            )
        pos = {n: v for n, v in position.items() if n not in levels}
        for v in points:
            h = np.asarray(hess(v, pos))
            adjacency |= np.abs(h) > 0
    colours = greedy_colouring(adjacency)
    return {n: colours[offsets[k] : offsets[k + 1]].reshape(shapes[k]) for k, n in enumerate(names)}


def categorical_interaction_colouring(
    energy_fn: EnergyFn,
    position: Mapping[str, Any],
    num_states: Mapping[str, int],
    *,
    num_positions: int = 2,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Blocks of categorical units from their interaction graph, read off energy differences.

    Units ``i`` and ``j`` interact when moving ``x_j`` changes the conditional logits of
    ``x_i`` (exact differences, at ``num_positions`` random states with ``x_j`` moved to a
    random other state), so each site is coloured greedily. Sites are coloured separately and
    their colours offset (a sweep then visits the sites one after the other, which is exact
    whatever couples them). Call with concrete values.

    Args:
        energy_fn: position -> scalar energy (categorical sites hold ``int32`` states).
        position: dict site -> array.
        num_states: dict categorical site -> q.
        num_positions: random states at which the graph is read.
        seed: seed of the random states.

    Returns:
        dict site -> int colours of the site's shape.

    Raises:
        ValueError: for a site of more than ``MAX_CATEGORICAL_COLOURING_UNITS`` units (pass
            ``blocks=`` or declare them with ``infer={"blocks": colours}``).

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda p: -jnp.sum(p["c"][:-1] == p["c"][1:]).astype(jnp.float32)  # Potts chain
        >>> c = categorical_interaction_colouring(f, {"c": jnp.zeros(4, jnp.int32)}, {"c": 3})
        >>> c["c"].tolist()
        [1, 0, 1, 0]
    """
    out: dict[str, np.ndarray] = {}
    offset = 0
    rng = np.random.default_rng(seed)
    for name in sorted(num_states):
        q = int(num_states[name])
        shape = tuple(np.shape(position[name]))
        size = int(np.prod(shape, dtype=int))
        if size > MAX_CATEGORICAL_COLOURING_UNITS:
            raise ValueError(
                f"site {name!r} has {size} categorical units (> "
                f"{MAX_CATEGORICAL_COLOURING_UNITS}) and no declared blocks: pass blocks= "
                f'or declare them on the site with infer={{"blocks": colours}}'
            )

        def moved_logits(pos, j, k, name=name, q=q, shape=shape):
            flat = jnp.ravel(pos[name])
            moved = {**pos, name: flat.at[j].set(k).reshape(shape)}
            return _categorical.exact_logits(energy_fn, moved, name, q).reshape(-1, q)

        fn = jax.jit(jax.vmap(moved_logits, in_axes=(None, 0, 0)))
        adjacency = np.zeros((size, size), dtype=bool)
        with jax.ensure_compile_time_eval():
            for _ in range(num_positions):
                states = rng.integers(0, q, size=size)
                shift = rng.integers(1, q, size=size)
                pos = {**position, name: jnp.asarray(states.reshape(shape), jnp.int32)}
                base = np.asarray(
                    _categorical.exact_logits(energy_fn, pos, name, q), np.float64
                ).reshape(size, q)
                moved = np.asarray(
                    fn(pos, jnp.arange(size), jnp.asarray((states + shift) % q, jnp.int32)),
                    np.float64,
                )
                scale = 1e-4 * (1.0 + np.abs(base))
                # row j: how moving unit j changes every unit's logits
                adjacency |= np.any(np.abs(moved - base[None]) > scale[None], axis=-1)
        colours = greedy_colouring(adjacency)
        out[name] = (colours + offset).reshape(shape).astype(np.int32)
        offset += int(colours.max()) + 1 if size else 0
    return out


# ----------------------------------------------------------------------------- kernel
def init(position: Mapping[str, Any], energy_fn: EnergyFn) -> GibbsState:
    """Initial state: the position and its energy.

    Args:
        position: dict site -> array.
        energy_fn: position -> scalar energy.

    Returns:
        :class:`GibbsState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(init({"x": jnp.ones(2)}, lambda p: jnp.sum(p["x"])).energy)
        2.0
    """
    position = {n: jnp.asarray(v) for n, v in position.items()}
    return GibbsState(position, jnp.asarray(energy_fn(position)))


def _flip_deltas(energy_fn: EnergyFn, pos: Position, levels, names, affine: bool):
    """``(E(pos), {site: E(flip_i pos) - E(pos)})`` for every unit of the binary sites ``names``.

    Affine energies: one ``value_and_grad`` (the change is ``Δ_i ∂_i E`` with
    ``Δ_i = lo + hi - 2 x_i``). Otherwise exact: one vmapped energy per unit plus one unflipped
    evaluation in the same vmap (index ``n`` is out of bounds, so its update is dropped), so the
    energy function is traced once per site.
    """
    if affine:
        sub = {n: pos[n] for n in names}
        rest = {n: v for n, v in pos.items() if n not in sub}
        e0, grad = jax.value_and_grad(lambda s: energy_fn({**rest, **s}))(sub)
        return e0, {n: (sum(levels[n]) - 2.0 * pos[n]) * grad[n] for n in names}
    deltas, e0 = {}, None
    for n in names:
        lo, hi = levels[n]
        x = pos[n]
        flat = jnp.ravel(x)
        size = flat.shape[0]

        def one(i, n=n, x=x, flat=flat, lo=lo, hi=hi, size=size):
            j = jnp.minimum(i, size - 1)
            flipped = flat.at[i].set(lo + hi - flat[j], mode="drop").reshape(x.shape)
            return energy_fn({**pos, n: flipped})

        energies = jax.vmap(one)(jnp.arange(size + 1))
        e0 = energies[size]
        deltas[n] = (energies[:size] - e0).reshape(x.shape)
    return e0, deltas


def _uniforms(key, shape, dtype, bits: int):
    """Uniforms on (0, 1): 24-bit ones, or 16-bit ones (two per 32-bit random word)."""
    if bits == 32:
        words = _random.paired_bits(key, shape)
        return ((words >> 8).astype(dtype) + 0.5) * (1.0 / 16777216)
    size = int(np.prod(shape, dtype=int))
    words = _random.paired_bits(key, ((size + 1) // 2,))
    halves = jnp.concatenate([words >> 16, words & 0xFFFF])[:size]
    return ((halves.astype(dtype) + 0.5) * (1.0 / 65536)).reshape(shape)


def sweep_uniforms(
    rng_key: Any, shapes: Mapping[str, Any], dtype: Any, uniform_bits: int = 32
) -> dict[str, jax.Array]:
    """The uniforms one sweep of :func:`build_kernel` draws for binary sites ``shapes``.

    For a kernel over binary sites only, so that an update computing the same conditionals by
    other means (a bipartite model's two blocks as batched products) draws the same states.

    Examples:
        >>> import jax
        >>> u = sweep_uniforms(jax.random.PRNGKey(0), {"v": (3,), "h": (2,)}, jax.numpy.float32)
        >>> sorted(u), u["v"].shape
        (['h', 'v'], (3,))
    """
    rng_key, _ = _random.split(rng_key)  # the Gaussian blocks' key of the kernel
    names = tuple(sorted(shapes))
    keys = _random.split(rng_key, len(names))
    return {
        n: _uniforms(k, tuple(shapes[n]), dtype, uniform_bits)
        for n, k in zip(names, keys, strict=True)
    }


def build_kernel(
    *,
    colours: Mapping[str, Any],
    levels: Mapping[str, tuple[float, float]] | None = None,
    affine: bool | Mapping[str, bool] = True,
    uniform_bits: int = 32,
    gaussian: tuple[str, ...] = (),
    num_states: Mapping[str, int] | None = None,
    logits_fn: _categorical.LogitsFn | None = None,
) -> Callable[..., tuple[GibbsState, GibbsInfo]]:
    """Build a block Gibbs sweep ``kernel(rng_key, state, energy_fn) -> (state, info)``.

    The sweep is a loop over the colours; each iteration evaluates the energy and the change of
    energy from flipping each unit (one ``value_and_grad`` for affine energies, exact
    differences otherwise), so ``energy_fn`` is traced once per compiled step. The logit of
    unit ``i`` is ``±(E(flip_i x) - E(x))``, and the new energy is the old one plus the changes
    of the flipped units (exact: the units of one block do not interact), so no extra energy
    evaluation ends the sweep. A sweep whose energy is not finite is rejected and flagged
    ``is_divergent``.

    Args:
        colours: dict binary site -> int colours broadcastable to the site's shape (an int
            colours the whole site); blocks are visited in increasing colour. Units of one
            colour must be conditionally independent (this is not checked here).
        levels: dict binary site -> ``(lo, hi)``; every site in ``colours`` needs an entry.
        affine: whether the energy is affine in each unit (gradient) or not (exact
            differences); a bool, or a dict site -> bool (any ``False`` selects exact
            differences for all sites).
        uniform_bits: ``32`` (default): one float32 uniform per unit per sweep (resolution
            2^-23). ``16``: two 16-bit uniforms from each 32-bit random word, halving the
            random-number cost (the bottleneck of cheap energies such as the Ising model);
            conditional probabilities are then resolved to 2^-16, a bias of at most 2^-17 in
            each update probability.
        gaussian: continuous sites (in ``colours``, without levels) whose units are
            conditionally Gaussian given the other blocks: the energy is quadratic in each unit
            with no coupling inside a block (e.g. the visible layer of a Gaussian–Bernoulli
            RBM). A block update draws ``N(x - g/a, 1/a)`` with ``g = ∂E/∂x`` and
            ``a = ∂²E/∂x²`` (one Hessian-vector product with ones); the caller is responsible
            for the structure (:class:`~ebm_ppl.infer.discrete.BlockGibbs` checks it).
        num_states: dict categorical site -> q (sites in ``colours`` holding ``int32`` states
            ``{0, ..., q-1}``). A block's categorical units are drawn from their q conditional
            logits by the inverse CDF (one uniform per unit); the energy changes by
            ``-logits[i, new_i]``.
        logits_fn: ``logits_fn(energy_fn, position, num_states) -> (energy, {site: logits})``
            with logits ``-(E(x_i = k) - E(x))`` of shape ``site_shape + (q,)``; default exact
            differences of the block's units (``q`` energies per unit). The model layer passes
            ``ebm_ppl.energy.conditionals.categorical_value_and_logits`` (one gradient for
            energies affine in the one-hot encoding).

    Returns:
        ``kernel(rng_key, state, energy_fn)``.

    Raises:
        ValueError: for a site without levels or num_states, or ``uniform_bits`` not 16 or 32.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda p: -jnp.sum(p["x"]) * 100.0    # every bit wants to be 1
        >>> step = build_kernel(colours={"x": 0}, levels={"x": (0.0, 1.0)})
        >>> state, _ = step(jax.random.PRNGKey(1), init({"x": jnp.zeros(3)}, f), f)
        >>> state.position["x"].tolist(), float(state.energy)
        ([1.0, 1.0, 1.0], -300.0)
    """
    gaussian = tuple(gaussian)
    levels = dict(levels or {})
    cat_q = _categorical.check_num_states(num_states)
    missing = [n for n in colours if n not in levels and n not in gaussian and n not in cat_q]
    if missing:
        raise ValueError(
            f"levels is missing site(s) {missing}; blocks may only hold binary sites (levels), "
            "categorical sites (num_states) and Gaussian blocks"
        )
    if uniform_bits not in (16, 32):
        raise ValueError(f"uniform_bits must be 16 or 32, got {uniform_bits!r}")
    cat_names = tuple(sorted(n for n in colours if n in cat_q and n not in levels))
    names = tuple(sorted(n for n in colours if n not in gaussian and n not in cat_names))
    gauss_names = tuple(sorted(n for n in colours if n in gaussian))
    all_affine = affine if isinstance(affine, bool) else all(bool(affine[n]) for n in names)
    raw = {n: np.asarray(colours[n]) for n in names + gauss_names + cat_names}
    ftype = jnp.result_type(float)

    def kernel(rng_key, state: GibbsState, energy_fn: EnergyFn):
        x = dict(state.position)
        shapes = {n: jnp.shape(x[n]) for n in names + gauss_names + cat_names}
        cols, num_colours = normalize_colours(raw, shapes)
        col_arrays = {n: jnp.asarray(cols[n]) for n in names + gauss_names + cat_names}
        rng_key, key_normal = _random.split(rng_key)
        normals = {
            n: _random.normal(_random.fold_in(key_normal, i), shapes[n], x[n].dtype)
            for i, n in enumerate(gauss_names)
        }
        keys = _random.split(rng_key, len(names) + len(cat_names))
        # One uniform per unit per sweep: the blocks are disjoint, so each unit uses its own.
        u = {
            n: _uniforms(k, shapes[n], x[n].dtype if n in names else ftype, uniform_bits)
            for n, k in zip(names + cat_names, keys, strict=True)
        }
        # Given a logits_fn (one gradient for affine energies), every site's logits at once;
        # else exact differences of the block's units only. Both jitted, so the energy is
        # traced once however many colours are unrolled.
        cat_sub = {n: cat_q[n] for n in cat_names}
        full_logits = (
            jax.jit(lambda pos: logits_fn(energy_fn, pos, cat_sub)[1])
            if logits_fn is not None and cat_names
            else None
        )
        # the units of each colour, padded to a common length with an out-of-bounds index
        # (its energies are computed and dropped)
        block_index = {}
        for n in cat_names:
            size = int(np.prod(shapes[n], dtype=int))
            per = [np.flatnonzero(np.ravel(cols[n] == c)) for c in range(num_colours)]
            width = max(1, max(len(p) for p in per))
            block_index[n] = [
                np.concatenate([p, np.full(width - len(p), size)]).astype(np.int32) for p in per
            ]
        exact_block = jax.jit(
            lambda pos, n, index: _categorical.exact_logits(energy_fn, pos, n, cat_q[n], index),
            static_argnums=1,
        )

        def block_logits(pos, n, c):
            q = cat_q[n]
            if full_logits is not None:
                return full_logits(pos)[n]
            size = int(np.prod(shapes[n], dtype=int))
            if isinstance(c, int):
                index = block_index[n][c]
                part = exact_block(pos, n, jnp.asarray(index))
                out = jnp.zeros((size, q), part.dtype)
                return out.at[index].set(part, mode="drop").reshape(shapes[n] + (q,))
            return _categorical.exact_logits(energy_fn, pos, n, q)

        def gauss_terms(pos):
            sub = {n: pos[n] for n in gauss_names}
            rest = {n: v for n, v in pos.items() if n not in sub}
            f = lambda s: energy_fn({**rest, **s})  # noqa: E731
            e0, g = jax.value_and_grad(f)(sub)
            # diagonal curvature: H·1 restricted to the site (no coupling inside a block)
            a = jax.jvp(jax.grad(f), (sub,), (jax.tree.map(jnp.ones_like, sub),))[1]
            return e0, g, a

        # Jitted so that the energy is traced once however many colours are unrolled; XLA
        # inlines each call and drops what a colour does not use (the other sites' gradients,
        # the energy after the first colour).
        gauss_fn = jax.jit(gauss_terms)
        flip_fn = jax.jit(lambda pos: _flip_deltas(energy_fn, pos, levels, names, all_affine))

        def body(c, carry):
            # ``c`` is a Python int when the colours are unrolled: then only the sites holding
            # units of colour ``c`` are updated, and only the first colour uses the energy it
            # evaluates (later ones add the exact changes), which saves a product per block.
            pos, energy = carry
            static = isinstance(c, int)
            if static:
                g_names = tuple(n for n in gauss_names if (cols[n] == c).any())
                b_names = tuple(n for n in names if (cols[n] == c).any())
                c_names = tuple(n for n in cat_names if (cols[n] == c).any())
            else:
                g_names, b_names, c_names = gauss_names, names, cat_names
            fresh = not static or c == 0
            e0 = energy

            def in_block(n, draw, xn):
                if not static:
                    return jnp.where(col_arrays[n] == c, draw, xn)
                mask = cols[n] == c
                return draw if mask.all() else jnp.where(jnp.asarray(mask), draw, xn)

            # Strong dtypes, so a weakly typed start does not retrace the jitted helpers.
            strong = {
                n: jax.lax.convert_element_type(v, jnp.result_type(v)) for n, v in pos.items()
            }
            if g_names:
                e_g, g, a = gauss_fn(strong)
                e0 = e_g if fresh else e0
            if b_names:
                e_b, deltas = flip_fn(strong)
                e0 = e_b if fresh else e0
            new_pos, change = dict(pos), jnp.zeros((), jnp.result_type(e0))
            for n in g_names:
                xn, gn, an = pos[n], g[n], a[n]
                draw = xn - gn / an + normals[n] / jnp.sqrt(an)
                new = in_block(n, draw, xn)
                dv = new - xn
                # exact for an energy quadratic in each unit: g dv + a dv^2 / 2
                change = change + jnp.sum(gn * dv + 0.5 * an * dv**2)
                new_pos[n] = new
            for n in b_names:
                lo, hi = levels[n]
                xn, d = pos[n], deltas[n]
                # logit P(hi) = E(lo) - E(hi) = ±(E(flip) - E(x)), the sign by the current level.
                logit = jnp.where(xn == hi, d, -d)
                draw = jnp.where(u[n] < jax.nn.sigmoid(logit), hi, lo).astype(xn.dtype)
                new = in_block(n, draw, xn)
                change = change + jnp.sum(jnp.where(new != xn, d, 0.0))
                new_pos[n] = new
            for n in c_names:
                xn = pos[n]
                logits = block_logits(strong, n, c)
                new = in_block(n, _categorical.draw(u[n], logits).astype(xn.dtype), xn)
                # logits are -(E(x_i=k) - E(x)): exact changes (a block's units do not interact)
                picked = jnp.take_along_axis(logits, new.astype(jnp.int32)[..., None], axis=-1)
                change = change - jnp.sum(jnp.where(new != xn, picked[..., 0], 0.0))
                new_pos[n] = new
            return new_pos, e0 + change

        carry = (x, jnp.asarray(state.energy))
        if num_colours <= 8:
            for c in range(num_colours):
                carry = body(c, carry)
        else:
            carry = jax.lax.fori_loop(0, num_colours, body, carry)
        x, energy = carry
        finite = jnp.isfinite(energy)
        new_state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), GibbsState(x, energy), state)
        dtype = jnp.result_type(energy)
        info = GibbsInfo(finite.astype(dtype), finite, ~finite)
        return new_state, info

    return kernel
