"""Composite (Metropolis-within-Gibbs) kernel: sub-kernels applied in turn to blocks of sites.

A mixed state (binary and continuous sites, e.g. a Gaussian–Bernoulli RBM, or binary units next
to a continuous site) is moved by a list of *blocks* ``(sites, sub_kernel)``. One transition
applies each block's sub-kernel in order to the block's sites with every other site held at
its current value, i.e. to the conditional energy ``x_B -> E(x_B, x_rest)``. Each sub-kernel
leaves its conditional ``p(x_B | x_rest)`` invariant, so the sweep leaves ``exp(-E)``
invariant (a deterministic-scan Gibbs sampler whose blocks are exact or Metropolis updates).

A sub-kernel is any object with

* ``init(position, energy_fn) -> state`` (``state.position`` and ``state.energy`` fields), and
* ``step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None)
  -> (state, info)`` with ``info.acceptance_rate``, ``info.is_accepted``, ``info.is_divergent``,
* optionally ``uses_step_size`` (bool): whether ``step`` takes a step size (Langevin kernels),

which is what :func:`ebm_ppl.kernels.resolve.resolve_kernel` returns (a
:class:`~ebm_ppl.kernels.resolve.Sampler`). Before a block moves, its sub-state is rebuilt by its
``init`` at the current position (the cached energy and gradient of a block are stale as soon
as another block has moved), so the composite state carries only the position and its energy.

The transition ``kernel(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None)``
forwards ``step_size``/``inverse_mass_matrix`` to the blocks that use a step size (``None``:
each block's own default), so a NumPyro adapter can adapt the step size of the continuous block
by dual averaging on :attr:`CompositeInfo.acceptance_rate`, which is the mean acceptance of the
step-size blocks (of all blocks when none takes a step size). Chains are vectorized by
``jax.vmap`` of the transition, like every kernel of :mod:`ebm_ppl.kernels`.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import composite
    >>> from ebm_ppl.kernels.resolve import resolve_kernel
    >>> def energy_fn(pos):       # x | b ~ N(b, 1), b ~ Bernoulli(1/2)
    ...     return 0.5 * jnp.sum((pos["x"] - pos["b"]) ** 2)
    >>> gibbs = resolve_kernel("gibbs", kernel_options={"colours": {"b": 0}, "levels": {"b": (0.0, 1.0)}})
    >>> mala = resolve_kernel("mala", step_size=0.5)
    >>> blocks = [(("b",), gibbs), (("x",), mala)]
    >>> kernel = composite.build_kernel(blocks=blocks)
    >>> state = composite.init({"x": jnp.zeros(2), "b": jnp.zeros(2)}, energy_fn)
    >>> state, info = jax.jit(kernel, static_argnums=2)(jax.random.PRNGKey(0), state, energy_fn)
    >>> sorted(state.position), info.block_acceptance.shape
    (['b', 'x'], (2,))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_ppl.kernels import _random

__all__ = ["CompositeInfo", "CompositeState", "build_kernel", "init"]

Position = dict[str, jax.Array]
EnergyFn = Callable[[Position], jax.Array]


class CompositeState(NamedTuple):
    """State of a composite chain.

    Attributes:
        position: dict site -> array (every site of every block, plus any held fixed).
        energy: scalar ``E(position)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> CompositeState({"x": jnp.zeros(2)}, jnp.zeros(())).energy.shape
        ()
    """

    position: Any
    energy: jax.Array


class CompositeInfo(NamedTuple):
    """Information about one composite transition (one pass over the blocks).

    Attributes:
        acceptance_rate: mean acceptance probability of the blocks that take a step size
            (Langevin blocks, the ones an adaptation tunes); of all blocks if none does.
        is_accepted: whether any block moved.
        is_divergent: whether any block's transition was divergent.
        block_acceptance: ``(num_blocks,)`` acceptance probability of each block, in order.

    Examples:
        >>> import jax.numpy as jnp
        >>> info = CompositeInfo(jnp.ones(()), jnp.array(True), jnp.array(False), jnp.ones(2))
        >>> info.block_acceptance.shape
        (2,)
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    block_acceptance: jax.Array


def init(position: Mapping[str, Any], energy_fn: EnergyFn) -> CompositeState:
    """Initial state: the position and its energy.

    Args:
        position: dict site -> array.
        energy_fn: ``position -> scalar`` energy of the whole state.

    Returns:
        :class:`CompositeState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(init({"x": jnp.ones(2)}, lambda p: jnp.sum(p["x"])).energy)
        2.0
    """
    position = {n: jnp.asarray(v) for n, v in position.items()}
    return CompositeState(position, jnp.asarray(energy_fn(position)))


def _check_blocks(blocks: Sequence[tuple[Sequence[str], Any]]) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    seen: set[str] = set()
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence) or not blocks:
        raise ValueError("blocks must be a non-empty list of (sites, sub_kernel) pairs")
    for i, block in enumerate(blocks):
        try:
            sites, sub = block
        except (TypeError, ValueError):
            raise ValueError(
                f"blocks[{i}] must be a pair (sites, sub_kernel), got {block!r}"
            ) from None
        sites = (sites,) if isinstance(sites, str) else tuple(sites)
        if not sites or not all(isinstance(s, str) for s in sites):
            raise ValueError(f"blocks[{i}] must name at least one site, got {sites!r}")
        again = sorted(seen.intersection(sites))
        if again:
            raise ValueError(f"site(s) {again} appear in more than one block")
        seen.update(sites)
        if not (callable(getattr(sub, "init", None)) and callable(getattr(sub, "step", None))):
            raise TypeError(
                f"blocks[{i}]'s sub-kernel must have init(position, energy_fn) and "
                f"step(rng_key, state, energy_fn) (e.g. resolve_kernel(...)), got "
                f"{type(sub).__name__}"
            )
        out.append((sites, sub))
    return out


def build_kernel(
    *, blocks: Sequence[tuple[Sequence[str], Any]]
) -> Callable[..., tuple[CompositeState, CompositeInfo]]:
    """Build a composite transition that applies each block's sub-kernel in turn.

    Args:
        blocks: list of ``(sites, sub_kernel)``: ``sites`` a tuple of site names (disjoint
            across blocks), ``sub_kernel`` a :class:`~ebm_ppl.kernels.resolve.Sampler` or any
            object with ``init``/``step`` as in the module docstring. Blocks run in list order.
            Sites of the position named by no block are held fixed.

    Returns:
        ``kernel(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None)
        -> (CompositeState, CompositeInfo)``. ``step_size`` and ``inverse_mass_matrix``
        (dynamic, may be traced) go to the blocks whose sub-kernel has
        ``uses_step_size=True``; ``None`` keeps each block's own default. An
        ``inverse_mass_matrix`` is only accepted when exactly one block takes a step size.

    Raises:
        ValueError: for an empty list, a block without sites, a site in two blocks.
        TypeError: for a sub-kernel without ``init``/``step``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from ebm_ppl.kernels.resolve import resolve_kernel
        >>> f = lambda p: 0.5 * jnp.sum(p["x"] ** 2) + 0.5 * jnp.sum(p["y"] ** 2)
        >>> mala = resolve_kernel("mala", step_size=0.3)
        >>> kernel = build_kernel(blocks=[(("x",), mala), (("y",), mala)])
        >>> s = init({"x": jnp.ones(2), "y": jnp.ones(3)}, f)
        >>> s, info = kernel(jax.random.PRNGKey(0), s, f, 0.5)
        >>> bool(jnp.isclose(s.energy, f(s.position)))
        True
    """
    checked = _check_blocks(blocks)
    tuned = [bool(getattr(sub, "uses_step_size", False)) for _, sub in checked]

    def kernel(
        rng_key: jax.Array,
        state: CompositeState,
        energy_fn: EnergyFn,
        step_size: Any = None,
        inverse_mass_matrix: Any = None,
    ) -> tuple[CompositeState, CompositeInfo]:
        if inverse_mass_matrix is not None and sum(tuned) != 1:
            raise ValueError(
                f"inverse_mass_matrix needs exactly one block with a step size, got {sum(tuned)}"
            )
        position = dict(state.position)
        missing = sorted({s for sites, _ in checked for s in sites} - set(position))
        if missing:
            raise ValueError(f"the position has no site(s) {missing} named in blocks")
        keys = _random.split(rng_key, len(checked))
        energy = jnp.asarray(state.energy)
        acc, accepted, divergent = [], [], []
        for key, (sites, sub), uses in zip(keys, checked, tuned, strict=True):
            rest = {n: v for n, v in position.items() if n not in sites}

            def block_energy(sub_pos, rest=rest):
                return energy_fn({**rest, **sub_pos})

            # The block's cache (energy, gradient) is rebuilt at the current position: any
            # earlier block may have moved the sites this conditional depends on.
            sub_state = sub.init({n: position[n] for n in sites}, block_energy)
            if uses:
                sub_state, info = sub.step(
                    key, sub_state, block_energy, step_size, inverse_mass_matrix
                )
            else:
                sub_state, info = sub.step(key, sub_state, block_energy)
            position.update({n: sub_state.position[n] for n in sites})
            energy = jnp.asarray(sub_state.energy)
            dtype = jnp.result_type(energy)
            acc.append(jnp.mean(jnp.asarray(info.acceptance_rate, dtype)))
            accepted.append(jnp.any(jnp.asarray(info.is_accepted)))
            divergent.append(jnp.any(jnp.asarray(info.is_divergent)))
        block_acc = jnp.stack(acc)
        picked = [a for a, t in zip(acc, tuned, strict=True) if t] or acc
        info = CompositeInfo(
            jnp.mean(jnp.stack(picked)),
            jnp.any(jnp.stack(accepted)),
            jnp.any(jnp.stack(divergent)),
            block_acc,
        )
        return CompositeState(position, energy), info

    return kernel
