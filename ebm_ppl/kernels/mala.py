"""Metropolis-adjusted Langevin algorithm (MALA).

The ULA proposal
:math:`y = x - \\varepsilon M^{-1}\\nabla E(x) + \\sqrt{2\\varepsilon M^{-1}}\\,\\xi`
(diagonal ``inverse_mass_matrix`` :math:`M^{-1}`, identity by default) followed by a
Metropolis–Hastings test with the full asymmetric proposal ratio,

.. math::

    \\log \\alpha = E(x) - E(y) + \\log q(x \\mid y) - \\log q(y \\mid x), \\qquad
    \\log q(y \\mid x) = -\\frac{\\lVert y - x + \\varepsilon M^{-1} \\nabla E(x)
    \\rVert^2_{M}}{4 \\varepsilon} + \\text{const},

so the chain is exact for ``exp(-E)`` at any step size. The optimal acceptance rate in high
dimension is 0.574 (Roberts & Rosenthal 1998).

Divergence follows NumPyro's HMC: the *energy error* of a transition is
``delta_energy = -log α`` (the rise of the energy of the proposal over the current one, plus
the proposal correction; ``+inf`` for a proposal whose energy or gradient is not finite), and
the transition is divergent when ``delta_energy > max_delta_energy`` (1000 by default, as
NumPyro's ``max_delta_energy``). A divergent proposal's acceptance is ``exp(-delta_energy)``,
below ``e^-1000`` at the default threshold: it is rejected.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import mala
    >>> energy_fn = lambda x: 0.5 * jnp.sum(x**2)
    >>> kernel = jax.jit(mala.build_kernel(), static_argnums=2)
    >>> state = mala.init(jnp.zeros(2), energy_fn)
    >>> state, info = kernel(jax.random.PRNGKey(0), state, energy_fn, 0.5)
    >>> 0.0 <= float(info.acceptance_rate) <= 1.0
    True

References:
    Roberts & Tweedie (1996), Bernoulli 2(4); Roberts & Rosenthal (1998), Optimal scaling of
    discrete approximations to Langevin diffusions. JRSS B 60(1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_ppl.kernels import _random
from ebm_ppl.kernels.ula import (
    _tree_imm,
    check_inverse_mass_matrix,
    check_max_delta_energy,
    check_step_size,
    is_finite_tree,
    langevin_proposal,
    select_tree,
)

__all__ = ["MALAInfo", "MALAState", "build_kernel", "init"]

ArrayTree = Any


class MALAState(NamedTuple):
    """State of a MALA chain.

    Attributes:
        position: pytree of arrays ``x``.
        energy: scalar ``E(x)``.
        energy_grad: pytree like ``position``, ``∇E(x)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> MALAState(jnp.zeros(2), jnp.zeros(()), jnp.zeros(2)).position.shape
        (2,)
    """

    position: ArrayTree
    energy: jax.Array
    energy_grad: ArrayTree


class MALAInfo(NamedTuple):
    """Information about one MALA transition.

    Attributes:
        acceptance_rate: ``min(1, α)`` of the proposal (0 for a divergent one).
        is_accepted: whether the proposal was accepted.
        is_divergent: ``delta_energy > max_delta_energy`` (always when the proposal's energy
            or gradient is not finite).
        delta_energy: the energy error ``-log α`` of the proposal (``+inf`` if not finite).

    Examples:
        >>> import jax.numpy as jnp
        >>> info = MALAInfo(jnp.ones(()), jnp.array(True), jnp.array(False), jnp.zeros(()))
        >>> info.acceptance_rate.shape
        ()
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    delta_energy: jax.Array


def init(position: ArrayTree, energy_fn: Callable[[ArrayTree], jax.Array]) -> MALAState:
    """Initial MALA state, caching ``E(x)`` and ``∇E(x)``.

    Args:
        position: pytree of float arrays.
        energy_fn: ``position -> scalar`` energy.

    Returns:
        :class:`MALAState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(init(jnp.ones(3), lambda x: jnp.sum(x)).energy)
        3.0
    """
    energy, grad = jax.value_and_grad(energy_fn)(position)
    return MALAState(position, energy, grad)


def _log_proposal_density(to, frm, grad_frm, step_size, imm):
    """``log q(to | frm)`` up to the constant shared by both directions (``-|r|²_M / 4ε``)."""
    if imm is None:
        parts = jax.tree.map(
            lambda t, f, g: jnp.sum(jnp.square(t - f + step_size * g)), to, frm, grad_frm
        )
    else:
        parts = jax.tree.map(
            lambda t, f, g, m: jnp.sum(jnp.square(t - f + step_size * m * g) / m),
            to,
            frm,
            grad_frm,
            imm,
        )
    return -sum(jax.tree.leaves(parts)) / (4.0 * step_size)


def build_kernel(*, max_delta_energy: Any = 1000.0) -> Callable[..., tuple[MALAState, MALAInfo]]:
    """Build a MALA transition.

    The step size and the diagonal preconditioner are dynamic arguments of the returned kernel.

    Args:
        max_delta_energy: divergence threshold on the energy error ``-log α`` (NumPyro's HMC
            uses 1000); ``> 0``, may be ``inf`` (only non-finite proposals diverge).

    Returns:
        ``kernel(rng_key, state, energy_fn, step_size, inverse_mass_matrix=None)
        -> (MALAState, MALAInfo)``; ``inverse_mass_matrix`` is ``None`` or a positive vector of
        shape ``(d,)`` with ``d`` the flat size of the position.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> energy_fn = lambda x: jnp.sum(x**2 / jnp.array([1.0, 100.0]))
        >>> kernel = build_kernel()
        >>> s = init(jnp.zeros(2), energy_fn)
        >>> s, info = kernel(jax.random.PRNGKey(0), s, energy_fn, 0.5, jnp.array([1.0, 100.0]))
        >>> s.position.shape
        (2,)

    Raises:
        ValueError: for a concrete ``max_delta_energy`` that is not ``> 0``.
    """
    check_max_delta_energy(max_delta_energy)

    def kernel(
        rng_key: jax.Array,
        state: MALAState,
        energy_fn: Callable[[ArrayTree], jax.Array],
        step_size: Any,
        inverse_mass_matrix: Any = None,
    ) -> tuple[MALAState, MALAInfo]:
        check_step_size(step_size)
        check_inverse_mass_matrix(inverse_mass_matrix, state.position)
        key_proposal, key_accept = _random.split(rng_key)
        imm = _tree_imm(inverse_mass_matrix, state.position)
        position = langevin_proposal(
            key_proposal, state.position, state.energy_grad, step_size, inverse_mass_matrix
        )
        energy, grad = jax.value_and_grad(energy_fn)(position)
        finite = jnp.isfinite(energy) & is_finite_tree(grad)
        log_alpha = (
            state.energy
            - energy
            + _log_proposal_density(state.position, position, grad, step_size, imm)
            - _log_proposal_density(position, state.position, state.energy_grad, step_size, imm)
        )
        # A non-finite proposal (or a NaN ratio, e.g. inf - inf) is a rejection, never a NaN state.
        log_alpha = jnp.where(finite & ~jnp.isnan(log_alpha), log_alpha, -jnp.inf)
        acceptance_rate = jnp.exp(jnp.minimum(log_alpha, 0.0))
        log_u = jnp.log(_random.uniform(key_accept, (), dtype=jnp.result_type(log_alpha)))
        accept = log_u < log_alpha
        new_state = select_tree(accept, MALAState(position, energy, grad), state)
        delta_energy = -log_alpha
        divergent = ~finite | (delta_energy > max_delta_energy)
        return new_state, MALAInfo(acceptance_rate, accept, divergent, delta_energy)

    return kernel
