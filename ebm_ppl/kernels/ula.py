"""Unadjusted Langevin algorithm (ULA): the Euler–Maruyama step of overdamped Langevin dynamics.

.. math::

    x' = x - \\varepsilon M^{-1} \\nabla E(x) + \\sqrt{2 \\varepsilon M^{-1}}\\, \\xi,
    \\qquad \\xi \\sim \\mathcal N(0, I),

with an optional diagonal preconditioner ``inverse_mass_matrix`` :math:`M^{-1}`. Without a
Metropolis correction the chain targets a biased density: on :math:`\\mathcal N(0, s^2)` its
stationary variance is :math:`s^2 / (1 - \\varepsilon / (2 s^2))`. EBM training uses ULA with a
clipped gradient norm and a clipped state (images in a box); both are structural options of
:func:`build_kernel`.

This module also holds the Langevin proposal and the input checks shared with
:mod:`ebm_ppl.kernels.mala` and :mod:`ebm_ppl.kernels.sgld`.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import ula
    >>> energy_fn = lambda x: 0.5 * jnp.sum(x**2)
    >>> state = ula.init(jnp.zeros(3), energy_fn)
    >>> step = jax.jit(ula.build_kernel(), static_argnums=2)
    >>> state, info = step(jax.random.PRNGKey(0), state, energy_fn, 0.1)
    >>> state.position.shape, bool(info.is_accepted)
    ((3,), True)

References:
    Roberts & Tweedie (1996), Exponential convergence of Langevin distributions and their
    discrete approximations. Bernoulli 2(4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ebm_ppl.kernels import _random

__all__ = [
    "ULAInfo",
    "ULAState",
    "build_kernel",
    "check_inverse_mass_matrix",
    "check_max_delta_energy",
    "check_step_size",
    "clip_by_global_norm",
    "init",
    "is_finite_tree",
    "langevin_proposal",
    "select_tree",
]

ArrayTree = Any


class ULAState(NamedTuple):
    """State of a ULA chain.

    Attributes:
        position: pytree of arrays, the current point ``x``.
        energy: scalar array ``E(x)``.
        energy_grad: pytree like ``position``, ``∇E(x)`` (unclipped).

    Examples:
        >>> import jax.numpy as jnp
        >>> ULAState(jnp.zeros(2), jnp.zeros(()), jnp.zeros(2)).energy.shape
        ()
    """

    position: ArrayTree
    energy: jax.Array
    energy_grad: ArrayTree


class ULAInfo(NamedTuple):
    """Information about one ULA transition.

    Attributes:
        acceptance_rate: always 1 (there is no correction), except 0 for a non-finite step.
        is_accepted: ``True`` unless the energy or gradient at the new point was not finite;
            the chain then stays where it was.
        is_divergent: ``delta_energy > max_delta_energy`` (always for a non-finite new point).
            A finite divergent step is still taken (ULA has no rejection); the flag says the
            discretization broke down.
        delta_energy: the energy error of the step, ``E(x') - E(x)`` (``+inf`` if not finite).

    Examples:
        >>> import jax.numpy as jnp
        >>> info = ULAInfo(jnp.ones(()), jnp.array(True), jnp.array(False), jnp.zeros(()))
        >>> info.is_divergent.dtype
        dtype('bool')
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    delta_energy: jax.Array


# ----------------------------------------------------------------------------- shared helpers
def check_step_size(step_size: Any, name: str = "step_size") -> None:
    """Raise ``ValueError`` for a concrete step size that is not a positive finite number.

    Traced values (inside ``jit``) are not checkable and pass through.

    Examples:
        >>> check_step_size(0.1)
        >>> check_step_size(-1.0)
        Traceback (most recent call last):
        ...
        ValueError: step_size must be a positive finite number, got -1.0
    """
    if isinstance(step_size, jax.core.Tracer):
        return
    try:
        value = np.asarray(step_size, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {step_size!r}") from None
    if not (np.all(np.isfinite(value)) and np.all(value > 0)):
        raise ValueError(f"{name} must be a positive finite number, got {step_size!r}")


def check_max_delta_energy(max_delta_energy: Any) -> None:
    """Raise ``ValueError`` for a concrete divergence threshold that is not ``> 0`` (``inf`` is
    allowed: then only non-finite transitions are divergent).

    Traced values (inside ``jit``) are not checkable and pass through.

    Examples:
        >>> check_max_delta_energy(1000.0)
        >>> check_max_delta_energy(0.0)
        Traceback (most recent call last):
        ...
        ValueError: max_delta_energy must be a positive number (inf allowed), got 0.0
    """
    if isinstance(max_delta_energy, jax.core.Tracer):
        return
    try:
        value = np.asarray(max_delta_energy, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"max_delta_energy must be a number, got {max_delta_energy!r}") from None
    if value.shape != () or not value > 0:
        raise ValueError(
            f"max_delta_energy must be a positive number (inf allowed), got {max_delta_energy!r}"
        )


def check_inverse_mass_matrix(inverse_mass_matrix: Any, position: ArrayTree) -> None:
    """Raise ``ValueError`` unless ``inverse_mass_matrix`` is ``None`` or a vector of the flat size.

    The preconditioner is diagonal: one positive entry per scalar of ``position`` (in the
    order of ``jax.flatten_util.ravel_pytree``). Shapes are static, so this works under ``jit``.

    Examples:
        >>> import jax.numpy as jnp
        >>> check_inverse_mass_matrix(jnp.ones(3), jnp.zeros(3))
        >>> check_inverse_mass_matrix(jnp.ones((3, 3)), jnp.zeros(3))
        Traceback (most recent call last):
        ...
        ValueError: inverse_mass_matrix must be a diagonal of shape (3,), got shape (3, 3)
    """
    if inverse_mass_matrix is None:
        return
    size = sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree.leaves(position))
    shape = tuple(jnp.shape(inverse_mass_matrix))
    if shape != (size,):
        raise ValueError(
            f"inverse_mass_matrix must be a diagonal of shape ({size},), got shape {shape}"
        )


def is_finite_tree(*trees: ArrayTree) -> jax.Array:
    """Scalar boolean: every entry of every array in ``trees`` is finite.

    Examples:
        >>> import jax.numpy as jnp
        >>> bool(is_finite_tree(jnp.ones(2), {"a": jnp.array(jnp.inf)}))
        False
    """
    ok = jnp.array(True)
    for leaf in jax.tree.leaves(trees):
        ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


def clip_by_global_norm(tree: ArrayTree, max_norm: float) -> ArrayTree:
    """Rescale ``tree`` so its global L2 norm is at most ``max_norm``.

    Examples:
        >>> import jax.numpy as jnp
        >>> clip_by_global_norm(jnp.array([3.0, 4.0]), 1.0).tolist()
        [0.6000000238418579, 0.800000011920929]
    """
    sq = sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree))
    norm = jnp.sqrt(sq)
    # where() keeps the scale finite when the norm is 0 or not finite
    scale = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), tree)


def _tree_imm(inverse_mass_matrix: Any, position: ArrayTree) -> ArrayTree | None:
    if inverse_mass_matrix is None:
        return None
    _, unravel = ravel_pytree(position)
    return unravel(jnp.asarray(inverse_mass_matrix))


def langevin_proposal(
    rng_key: jax.Array,
    position: ArrayTree,
    energy_grad: ArrayTree,
    step_size: Any,
    inverse_mass_matrix: Any = None,
) -> ArrayTree:
    """One Euler–Maruyama step ``x - ε M⁻¹ ∇E + sqrt(2 ε M⁻¹) ξ``.

    Args:
        rng_key: PRNG key for the Gaussian noise ``ξ``.
        position: pytree ``x``.
        energy_grad: pytree ``∇E(x)`` (possibly clipped by the caller).
        step_size: scalar ``ε > 0``.
        inverse_mass_matrix: ``None`` (identity) or diagonal ``(d,)``, ``d`` the flat size.

    Returns:
        pytree like ``position``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> x = langevin_proposal(jax.random.PRNGKey(0), jnp.zeros(2), jnp.ones(2), 0.5)
        >>> x.shape
        (2,)
    """
    flat, unravel = ravel_pytree(position)
    noise = unravel(_random.normal(rng_key, flat.shape, flat.dtype))
    imm = _tree_imm(inverse_mass_matrix, position)
    if imm is None:
        scale = jnp.sqrt(2.0 * step_size)
        return jax.tree.map(
            lambda x, g, n: x - (step_size * g).astype(x.dtype) + (scale * n).astype(x.dtype),
            position,
            energy_grad,
            noise,
        )
    return jax.tree.map(
        lambda x, g, n, m: (
            x
            - (step_size * m * g).astype(x.dtype)
            + (jnp.sqrt(2.0 * step_size * m) * n).astype(x.dtype)
        ),
        position,
        energy_grad,
        noise,
        imm,
    )


def select_tree(pred: jax.Array, on_true: ArrayTree, on_false: ArrayTree) -> ArrayTree:
    """Leafwise ``jnp.where(pred, on_true, on_false)`` for a scalar ``pred``.

    A select rather than ``lax.cond``: under ``vmap`` (chains) ``cond`` becomes a select anyway,
    and a select keeps one code path for jit and vmap (bitwise equal results).

    Examples:
        >>> import jax.numpy as jnp
        >>> select_tree(jnp.array(False), jnp.ones(2), jnp.zeros(2)).tolist()
        [0.0, 0.0]
    """
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


# ----------------------------------------------------------------------------- ULA
def init(position: ArrayTree, energy_fn: Callable[[ArrayTree], jax.Array]) -> ULAState:
    """Initial ULA state, caching ``E(x)`` and ``∇E(x)``.

    Args:
        position: pytree of float arrays.
        energy_fn: ``position -> scalar`` energy (``-log`` unnormalized density).

    Returns:
        :class:`ULAState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> s = init(jnp.ones(2), lambda x: jnp.sum(x**2))
        >>> float(s.energy), s.energy_grad.tolist()
        (2.0, [2.0, 2.0])
    """
    energy, grad = jax.value_and_grad(energy_fn)(position)
    return ULAState(position, energy, grad)


def build_kernel(
    *,
    clip_grad_norm: float | None = None,
    clip_position: tuple[float, float] | None = None,
    max_delta_energy: Any = 1000.0,
) -> Callable[..., tuple[ULAState, ULAInfo]]:
    """Build a ULA transition.

    Args:
        clip_grad_norm: if set, the gradient's global L2 norm is clipped to this value before
            the step (as in EBM training; this changes the target).
        clip_position: if set, ``(low, high)``: the new point is clipped into this box.
        max_delta_energy: divergence threshold on the energy error ``E(x') - E(x)`` of a step
            (NumPyro's HMC uses 1000 on its energy error); ``> 0``, may be ``inf``.

    Returns:
        ``kernel(rng_key, state, energy_fn, step_size, inverse_mass_matrix=None)
        -> (ULAState, ULAInfo)``. ``step_size`` and ``inverse_mass_matrix`` (diagonal, flat size)
        are dynamic. A new point with a non-finite energy or gradient is refused (the state is
        unchanged) and flagged ``is_divergent``; a step whose energy rises by more than
        ``max_delta_energy`` is taken and flagged ``is_divergent``.

    Raises:
        ValueError: for a non-positive ``clip_grad_norm`` or ``max_delta_energy``, or a bad
            ``clip_position``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> kernel = build_kernel(clip_grad_norm=1.0, clip_position=(-1.0, 1.0))
        >>> energy_fn = lambda x: 100.0 * jnp.sum(x**2)
        >>> s, info = kernel(jax.random.PRNGKey(1), init(jnp.ones(2), energy_fn), energy_fn, 0.01)
        >>> bool(jnp.all(jnp.abs(s.position) <= 1.0))
        True
    """
    if clip_grad_norm is not None:
        check_step_size(clip_grad_norm, "clip_grad_norm")
    check_max_delta_energy(max_delta_energy)
    if clip_position is not None:
        try:
            low, high = (float(v) for v in clip_position)
        except (TypeError, ValueError):
            raise ValueError(
                f"clip_position must be a pair (low, high), got {clip_position!r}"
            ) from None
        if not low < high:
            raise ValueError(f"clip_position must have low < high, got {clip_position!r}")

    def kernel(
        rng_key: jax.Array,
        state: ULAState,
        energy_fn: Callable[[ArrayTree], jax.Array],
        step_size: Any,
        inverse_mass_matrix: Any = None,
    ) -> tuple[ULAState, ULAInfo]:
        check_step_size(step_size)
        check_inverse_mass_matrix(inverse_mass_matrix, state.position)
        grad = state.energy_grad
        if clip_grad_norm is not None:
            grad = clip_by_global_norm(grad, clip_grad_norm)
        new_position = langevin_proposal(
            rng_key, state.position, grad, step_size, inverse_mass_matrix
        )
        if clip_position is not None:
            new_position = jax.tree.map(lambda x: jnp.clip(x, low, high), new_position)
        new_energy, new_grad = jax.value_and_grad(energy_fn)(new_position)
        ok = jnp.isfinite(new_energy) & is_finite_tree(new_grad)
        new_state = select_tree(ok, ULAState(new_position, new_energy, new_grad), state)
        delta_energy = jnp.where(ok, new_energy - state.energy, jnp.inf)
        # a NaN current energy (a chain started outside the support) counts as divergent
        delta_energy = jnp.where(jnp.isnan(delta_energy), jnp.inf, delta_energy)
        info = ULAInfo(
            acceptance_rate=ok.astype(new_energy.dtype),
            is_accepted=ok,
            is_divergent=~ok | (delta_energy > max_delta_energy),
            delta_energy=delta_energy,
        )
        return new_state, info

    return kernel
