"""Discrete Langevin samplers DULA and DMALA for binary and categorical units.

Zhang, Liu & Liu (2022) propose every unit at once from a factorized, gradient-informed
proposal, the discrete analogue of a Langevin step with step size ``α``:

.. math::

    q(x' \\mid x) = \\prod_i q_i(x'_i \\mid x), \\qquad
    q_i(x'_i \\mid x) \\propto \\exp\\Bigl(\\tfrac12 \\ell_i(x'_i) - \\frac{\\lVert x'_i - x_i
    \\rVert^2}{2\\alpha}\\Bigr),

where ``ℓ_i(k)`` is the first-order estimate of ``E(x) - E(x_i = k)``: ``-Δ_i ∂_i E`` for a
binary unit with levels ``lo, hi`` (``Δ_i`` the change of a flip, ``‖x'_i - x_i‖² = (hi -
lo)²``), and the conditional logit ``-(∂E/∂o_ik - ∂E/∂o_i,x_i)`` read from the gradient with
respect to the one-hot encoding ``o`` for a categorical unit (``logits_fn``;
``‖o'_i - o_i‖² = 2`` for a move). **DULA** accepts every proposal: it is *unadjusted* and
biased at any finite ``α`` (the bias shrinks as ``α → 0``, and so does the move rate). **DMALA**
adds the Metropolis–Hastings correction with the reverse proposal ``q(x | x')``, so it targets
``exp(-E)`` exactly. Both report the Metropolis–Hastings acceptance probability (DULA as a
diagnostic), which the adapters' warmup tunes ``α`` against (dual averaging toward a target
acceptance, :mod:`ebm_ppl.kernels.adaptation`).

One step costs two energy-and-gradient evaluations (at ``x`` and at ``x'``) and one uniform
per unit (inverse CDF for categorical units). Other sites are held fixed.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import dlangevin
    >>> energy_fn = lambda pos: -0.5 * jnp.sum(pos["s"] * jnp.roll(pos["s"], 1))  # Ising ring
    >>> step = dlangevin.build_kernel(levels={"s": (-1.0, 1.0)}, adjusted=True)
    >>> state = dlangevin.init({"s": jnp.ones(6)}, energy_fn)
    >>> state, info = jax.jit(step, static_argnums=2)(jax.random.PRNGKey(0), state, energy_fn, 0.5)
    >>> state.position["s"].shape, info.acceptance_rate.shape
    ((6,), ())

References:
    Zhang, Liu & Liu (2022), A Langevin-like sampler for discrete distributions. ICML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_ppl.kernels import _categorical, _random
from ebm_ppl.kernels.ula import check_max_delta_energy

__all__ = ["DLangevinInfo", "DLangevinState", "build_kernel", "init"]

Position = dict[str, jax.Array]
EnergyFn = Callable[[Position], jax.Array]


class DLangevinState(NamedTuple):
    """State of a DULA/DMALA chain.

    Attributes:
        position: dict site -> array (binary sites as floats, categorical as ``int32``).
        energy: scalar ``E(position)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> DLangevinState({"s": jnp.ones(2)}, jnp.zeros(())).energy.shape
        ()
    """

    position: Any
    energy: jax.Array


class DLangevinInfo(NamedTuple):
    """Information about one step.

    Attributes:
        acceptance_rate: Metropolis–Hastings acceptance probability of the proposal (for DULA a
            diagnostic: the proposal is taken anyway).
        is_accepted: whether the proposal was taken.
        is_divergent: ``delta_energy > max_delta_energy`` (or a non-finite proposal).
        delta_energy: ``-log`` of the acceptance ratio.
        num_moved: number of units whose state changed (a float).

    Examples:
        >>> import jax.numpy as jnp
        >>> z = jnp.zeros(())
        >>> DLangevinInfo(z, jnp.array(True), jnp.array(False), z, z).num_moved.shape
        ()
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    delta_energy: jax.Array
    num_moved: jax.Array


def init(position: Mapping[str, Any], energy_fn: EnergyFn) -> DLangevinState:
    """Initial state: the position and its energy.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(init({"x": jnp.ones(2)}, lambda p: jnp.sum(p["x"])).energy)
        2.0
    """
    position = {n: jnp.asarray(v) for n, v in position.items()}
    return DLangevinState(position, jnp.asarray(energy_fn(position)))


def build_kernel(
    *,
    levels: Mapping[str, tuple[float, float]] | None = None,
    num_states: Mapping[str, int] | None = None,
    logits_fn: _categorical.LogitsFn | None = None,
    adjusted: bool = True,
    max_delta_energy: Any = 1000.0,
) -> Callable[..., tuple[DLangevinState, DLangevinInfo]]:
    """Build ``kernel(rng_key, state, energy_fn, step_size, inverse_mass_matrix=None)``.

    Args:
        levels: dict binary site -> ``(lo, hi)`` (float states).
        num_states: dict categorical site -> q (``int32`` states).
        logits_fn: ``logits_fn(energy_fn, position, num_states) -> (energy, {site: logits})``,
            the conditional logits ``site_shape + (q,)`` of the categorical sites (default:
            exact energy differences, q energies per unit).
        adjusted: ``True`` for DMALA (Metropolis–Hastings correction), ``False`` for DULA.
        max_delta_energy: divergence threshold on ``-log`` of the acceptance ratio.

    Returns:
        the kernel; ``step_size`` is ``α > 0`` (dynamic, so adaptation can tune it);
        ``inverse_mass_matrix`` is ignored.

    Raises:
        ValueError: no site to move, or ``max_delta_energy`` not ``> 0``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda p: -jnp.sum(p["c"] == 2).astype(jnp.float32) * 5.0
        >>> step = build_kernel(num_states={"c": 3}, adjusted=False)
        >>> state, info = step(jax.random.PRNGKey(0), init({"c": jnp.zeros(4, jnp.int32)}, f), f, 2.0)
        >>> state.position["c"].dtype, bool(info.is_accepted)
        (dtype('int32'), True)
    """
    levels = dict(levels or {})
    cat_q = _categorical.check_num_states(num_states)
    if not levels and not cat_q:
        raise ValueError("levels or num_states must name at least one binary or categorical site")
    check_max_delta_energy(max_delta_energy)
    names = tuple(sorted(levels))
    cat_names = tuple(sorted(n for n in cat_q if n not in levels))
    value_and_logits = logits_fn or _categorical.exact_value_and_logits
    cat_sub = {n: cat_q[n] for n in cat_names}

    def evaluate(energy_fn, pos):
        """``(E(pos), binary gradients, categorical logits)``."""
        energy, grad, logits = None, {}, {}
        if cat_names:
            energy, logits = value_and_logits(energy_fn, pos, cat_sub)
        if names:
            sub = {n: pos[n] for n in names}
            rest = {n: v for n, v in pos.items() if n not in sub}
            energy, grad = jax.value_and_grad(lambda s: energy_fn({**rest, **s}))(sub)
        return energy, grad, logits

    def proposal_logits(pos, grad, logits, alpha):
        """Per unit: binary flip logit (vs. staying) or the q categorical proposal logits."""
        out = {}
        for n in names:
            lo, hi = levels[n]
            delta = lo + hi - 2.0 * pos[n]
            out[n] = 0.5 * (-delta * grad[n]) - (hi - lo) ** 2 / (2.0 * alpha)
        for n in cat_names:
            moved = ~jax.nn.one_hot(pos[n], cat_q[n], dtype=bool)
            # one-hot vectors of two different states are sqrt(2) apart
            out[n] = 0.5 * logits[n] - jnp.where(moved, 1.0 / alpha, 0.0)
        return out

    def log_q(props, x_from, x_to):
        """``log q(x_to | x_from)`` from the proposal logits computed at ``x_from``."""
        total = jnp.zeros((), jnp.result_type(float))
        for n in names:
            flip = x_to[n] != x_from[n]
            lp = jnp.where(flip, jax.nn.log_sigmoid(props[n]), jax.nn.log_sigmoid(-props[n]))
            total = total + jnp.sum(lp)
        for n in cat_names:
            lp = jax.nn.log_softmax(props[n], axis=-1)
            total = total + jnp.sum(
                jnp.take_along_axis(lp, x_to[n].astype(jnp.int32)[..., None], axis=-1)
            )
        return total

    def kernel(
        rng_key, state: DLangevinState, energy_fn: EnergyFn, step_size, inverse_mass_matrix=None
    ):
        del inverse_mass_matrix
        alpha = jnp.asarray(step_size, jnp.result_type(float))
        x = state.position
        k_units, k_acc = _random.split(rng_key)
        keys = _random.split(k_units, len(names) + len(cat_names))
        # jitted: evaluated at x and at the proposal, the energy is traced once (per kind)
        evaluate_fn = jax.jit(lambda pos: evaluate(energy_fn, pos))
        _, grad_x, logits_x = evaluate_fn(x)
        props = proposal_logits(x, grad_x, logits_x, alpha)
        new = dict(x)
        # a float count: info fields other than the flags share the energy's dtype
        moved = jnp.zeros((), jnp.result_type(float))
        for key, n in zip(keys, names + cat_names, strict=True):
            u = _random.uniform(key, jnp.shape(x[n]))
            if n in levels:
                lo, hi = levels[n]
                flip = u < jax.nn.sigmoid(props[n])
                new[n] = jnp.where(flip, lo + hi - x[n], x[n]).astype(x[n].dtype)
            else:
                new[n] = _categorical.draw(u, props[n]).astype(x[n].dtype)
            moved = moved + jnp.sum(new[n] != x[n]).astype(moved.dtype)
        energy_new, grad_new, logits_new = evaluate_fn(new)
        energy_new = jnp.asarray(energy_new, jnp.result_type(state.energy))
        props_rev = proposal_logits(new, grad_new, logits_new, alpha)
        log_ratio = state.energy - energy_new + log_q(props_rev, new, x) - log_q(props, x, new)
        finite = jnp.isfinite(energy_new) & ~jnp.isnan(log_ratio)
        # NaN/inf proposals are rejections, never crashes inside jit
        log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        if adjusted:
            accepted = _random.uniform(k_acc) < accept_prob
        else:
            accepted = finite
        out = jax.tree.map(
            lambda a, b: jnp.where(accepted, a, b), DLangevinState(new, energy_new), state
        )
        delta_energy = -log_ratio
        divergent = ~finite | (delta_energy > max_delta_energy)
        info = DLangevinInfo(
            accept_prob, accepted, divergent, delta_energy, jnp.where(accepted, moved, 0.0)
        )
        return out, info

    return kernel
