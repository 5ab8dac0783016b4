"""Stochastic gradient Langevin dynamics (SGLD, Welling & Teh 2011).

For energies that are sums over data, ``E(x) = E_0(x) + Σ_{i=1}^{N} E_i(x)``, each step uses an
unbiased minibatch estimate of the gradient,

.. math::

    \\widehat{\\nabla E}(x) = \\nabla E_0(x)
        + \\frac{N}{B} \\sum_{i \\in \\mathcal B} \\nabla E_i(x),
    \\qquad x' = x - \\varepsilon_t \\widehat{\\nabla E}(x) + \\sqrt{2 \\varepsilon_t}\\,\\xi,

with no Metropolis correction and a step size schedule
:math:`\\varepsilon_t = a (b + t)^{-\\gamma}` (:func:`polynomial_schedule`; :math:`\\gamma \\in
(0.5, 1]` makes the chain consistent). The state caches nothing: the energy changes with each
minibatch, so the gradient is evaluated at the start of every step.

Welling & Teh write the step as ``x + (ε/2)∇log p + N(0, ε)``; this module uses the same
convention as :mod:`ebm_ppl.kernels.ula` (``ε ∇E`` drift, ``2ε`` noise variance), i.e. their
``ε`` is twice ours.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import sgld
    >>> data = jnp.arange(10.0)
    >>> energy_fn = lambda x, batch: 0.5 * jnp.sum((x - batch) ** 2)  # per-example terms, summed
    >>> kernel = sgld.build_kernel(data_size=10)
    >>> state = sgld.init(jnp.zeros(()))
    >>> state, info = kernel(jax.random.PRNGKey(0), state, energy_fn, data[:5], 1e-3)
    >>> state.position.shape
    ()

References:
    Welling & Teh (2011), Bayesian learning via stochastic gradient Langevin dynamics. ICML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_ppl.kernels.ula import (
    check_inverse_mass_matrix,
    check_step_size,
    clip_by_global_norm,
    is_finite_tree,
    langevin_proposal,
    select_tree,
)

__all__ = ["SGLDInfo", "SGLDState", "build_kernel", "init", "polynomial_schedule"]

ArrayTree = Any


class SGLDState(NamedTuple):
    """State of an SGLD chain: the position only (nothing is cached).

    Attributes:
        position: pytree of arrays ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> SGLDState(jnp.zeros(2)).position.shape
        (2,)
    """

    position: ArrayTree


class SGLDInfo(NamedTuple):
    """Information about one SGLD transition.

    Attributes:
        acceptance_rate: 1, or 0 for a divergent step.
        is_accepted: ``True`` unless the step was divergent.
        is_divergent: the minibatch energy or gradient (or the new point) was not finite; the
            chain then stays where it was. SGLD evaluates nothing at the new point, so it has
            no energy error to compare with a threshold: only non-finite steps diverge.
        energy: the minibatch estimate of ``E`` at the position the step started from.

    Examples:
        >>> import jax.numpy as jnp
        >>> info = SGLDInfo(jnp.ones(()), jnp.array(True), jnp.array(False), jnp.zeros(()))
        >>> info.energy.shape
        ()
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    energy: jax.Array


def init(position: ArrayTree, energy_fn: Callable[..., Any] | None = None) -> SGLDState:
    """Initial SGLD state.

    Args:
        position: pytree of float arrays.
        energy_fn: ignored (accepted for the common ``init(position, energy_fn)`` signature;
            SGLD caches nothing because every step sees a new minibatch).

    Returns:
        :class:`SGLDState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> init(jnp.ones(2)).position.tolist()
        [1.0, 1.0]
    """
    del energy_fn
    return SGLDState(position)


def polynomial_schedule(
    a: float, b: float = 1.0, gamma: float = 0.55
) -> Callable[[Any], jax.Array]:
    """Step size schedule ``ε_t = a (b + t)^(-γ)`` of Welling & Teh (2011).

    Args:
        a: scale, ``> 0``.
        b: offset, ``> 0`` (``ε_0 = a b^(-γ)``).
        gamma: decay exponent; ``0.5 < γ <= 1`` satisfies ``Σ ε_t = ∞``, ``Σ ε_t² < ∞``;
            ``γ = 0`` gives a constant step.

    Returns:
        ``schedule(t) -> scalar float array`` (jittable in ``t``).

    Raises:
        ValueError: for ``a <= 0``, ``b <= 0`` or ``gamma < 0``.

    Examples:
        >>> sched = polynomial_schedule(1.0, 1.0, 1.0)
        >>> [round(float(sched(t)), 4) for t in (0, 1, 3)]
        [1.0, 0.5, 0.25]
    """
    check_step_size(a, "a")
    check_step_size(b, "b")
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")

    def schedule(t: Any) -> jax.Array:
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        return a * (b + t) ** (-gamma)

    return schedule


def _batch_size(batch: Any) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves or jnp.ndim(leaves[0]) == 0:
        raise ValueError("batch must be a pytree of arrays with a leading batch axis")
    return int(jnp.shape(leaves[0])[0])


def build_kernel(
    *,
    data_size: int | None = None,
    prior_energy_fn: Callable[[ArrayTree], jax.Array] | None = None,
    clip_grad_norm: float | None = None,
) -> Callable[..., tuple[SGLDState, SGLDInfo]]:
    """Build an SGLD transition.

    Args:
        data_size: ``N``. If given, ``energy_fn(position, batch)`` is the sum of the per-example
            energies over the minibatch and is rescaled by ``N / B`` (``B`` the leading size of
            ``batch``). If ``None``, ``energy_fn`` already returns an unbiased estimate of the
            full energy (a NumPyro model with a subsampled ``plate`` does this scaling itself).
        prior_energy_fn: optional ``position -> scalar`` term ``E_0`` that is not rescaled.
        clip_grad_norm: optional global-norm clipping of the estimated gradient.

    Returns:
        ``kernel(rng_key, state, energy_fn, batch, step_size, inverse_mass_matrix=None)
        -> (SGLDState, SGLDInfo)``.

    Raises:
        ValueError: for a non-positive ``data_size`` or ``clip_grad_norm``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> kernel = build_kernel(data_size=100, prior_energy_fn=lambda x: 0.5 * x**2)
        >>> energy_fn = lambda x, batch: jnp.sum(0.5 * (x - batch) ** 2)
        >>> state = init(jnp.zeros(()))
        >>> s, info = kernel(jax.random.PRNGKey(0), state, energy_fn, jnp.ones(10), 1e-3)
        >>> float(info.energy)  # 0 + 100 / 10 * 10 * 0.5
        50.0
    """
    if data_size is not None:
        if isinstance(data_size, bool) or not isinstance(data_size, int) or data_size < 1:
            raise ValueError(f"data_size must be a positive int, got {data_size!r}")
    if clip_grad_norm is not None:
        check_step_size(clip_grad_norm, "clip_grad_norm")

    def estimate(position: ArrayTree, energy_fn: Callable[..., jax.Array], batch: Any) -> jax.Array:
        value = energy_fn(position, batch)
        if data_size is not None:
            value = value * (data_size / _batch_size(batch))
        if prior_energy_fn is not None:
            value = value + prior_energy_fn(position)
        return value

    def kernel(
        rng_key: jax.Array,
        state: SGLDState,
        energy_fn: Callable[[ArrayTree, Any], jax.Array],
        batch: Any,
        step_size: Any,
        inverse_mass_matrix: Any = None,
    ) -> tuple[SGLDState, SGLDInfo]:
        check_step_size(step_size)
        check_inverse_mass_matrix(inverse_mass_matrix, state.position)
        energy, grad = jax.value_and_grad(estimate)(state.position, energy_fn, batch)
        if clip_grad_norm is not None:
            grad = clip_by_global_norm(grad, clip_grad_norm)
        position = langevin_proposal(rng_key, state.position, grad, step_size, inverse_mass_matrix)
        ok = jnp.isfinite(energy) & is_finite_tree(grad, position)
        new_state = select_tree(ok, SGLDState(position), state)
        info = SGLDInfo(ok.astype(jnp.result_type(energy)), ok, ~ok, energy)
        return new_state, info

    return kernel
