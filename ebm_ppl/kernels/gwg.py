"""Gibbs with gradients (GWG): Metropolis–Hastings single flips proposed from the gradient.

For binary units (``Bits``/``Spins``) the change of log density from flipping unit ``i`` is
estimated from the gradient at the current state,

.. math::

    \\tilde d_i(x) = -\\Delta_i\\, \\partial_i E(x), \\qquad \\Delta_i = lo + hi - 2x_i,

a unit is drawn from ``q(i | x) = softmax(d̃(x) / 2)_i``, flipped, and the flip is accepted with
the exact Metropolis–Hastings probability

.. math::

    \\min\\Bigl(1, \\exp\\bigl(E(x) - E(x')\\bigr) \\frac{q(i \\mid x')}{q(i \\mid x)}\\Bigr),

so the chain targets ``exp(-E)`` exactly for any binary energy (the gradient only shapes the
proposal). The state caches ``E`` and ``∇E``; one step costs one energy and one gradient.

Divergence follows NumPyro's HMC: the energy error of a step is ``delta_energy = -log`` of the
acceptance ratio above (``+inf`` for a proposal whose energy or gradient is not finite) and the
step is divergent when it exceeds ``max_delta_energy`` (default 1000, NumPyro's threshold); such
a flip has acceptance below ``e^-1000`` and is rejected.
All binary sites in ``levels`` share one index space; other sites are held fixed.

Categorical units (``num_states``: states ``{0, ..., q-1}`` held as ``int32``) join the same
index space with one entry per (unit, new state): the estimated change of log density of moving
unit ``i`` to state ``k`` is its conditional logit ``ℓ_ik = -(E(x_i=k) - E(x))`` read from the
gradient with respect to the one-hot encoding (``logits_fn``; Grathwohl et al.'s categorical
proposal), and the current state is excluded. Every state's logits are computed at the current
and the proposed state (two ``logits_fn`` calls per step).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import gwg
    >>> energy_fn = lambda pos: -jnp.sum(pos["x"] * jnp.arange(4.0))
    >>> levels = {"x": (0.0, 1.0)}
    >>> state = gwg.init({"x": jnp.zeros(4)}, energy_fn)
    >>> step = jax.jit(gwg.build_kernel(levels=levels), static_argnums=2)
    >>> state, info = step(jax.random.PRNGKey(0), state, energy_fn)
    >>> state.position["x"].shape, info.acceptance_rate.shape
    ((4,), ())

References:
    Grathwohl, Swersky, Hashemi, Duvenaud & Maddison (2021), Oops I took a gradient: scalable
    sampling for discrete distributions. ICML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["GWGInfo", "GWGState", "build_kernel", "init"]

from ebm_ppl.kernels import _categorical, _random
from ebm_ppl.kernels.ula import check_max_delta_energy

Position = dict[str, jax.Array]
EnergyFn = Callable[[Position], jax.Array]


class GWGState(NamedTuple):
    """State of a GWG chain.

    Attributes:
        position: dict site -> array.
        energy: scalar ``E(position)``.
        energy_grad: dict binary site -> ``∂E/∂x`` (site-shaped).

    Examples:
        >>> import jax.numpy as jnp
        >>> GWGState({"x": jnp.ones(2)}, jnp.zeros(()), {"x": jnp.zeros(2)}).energy.shape
        ()
    """

    position: Any
    energy: jax.Array
    energy_grad: Any


class GWGInfo(NamedTuple):
    """Information about one GWG step.

    Attributes:
        acceptance_rate: Metropolis–Hastings acceptance probability of the proposed flip.
        is_accepted: whether the flip was accepted.
        is_divergent: ``delta_energy > max_delta_energy`` (always when the proposal's energy
            or gradient is not finite).
        delta_energy: the energy error ``-log`` (acceptance ratio) of the flip (``+inf`` if
            not finite).

    Examples:
        >>> import jax.numpy as jnp
        >>> info = GWGInfo(jnp.ones(()), jnp.array(True), jnp.array(False), jnp.zeros(()))
        >>> info.is_accepted.dtype
        dtype('bool')
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    delta_energy: jax.Array


def _value_and_grad(energy_fn: EnergyFn, position: Position, names: tuple[str, ...]):
    sub = {n: position[n] for n in names}
    rest = {n: v for n, v in position.items() if n not in sub}
    energy, grad = jax.value_and_grad(lambda s: energy_fn({**rest, **s}))(sub)
    return energy, grad


def init(position: Mapping[str, Any], energy_fn: EnergyFn) -> GWGState:
    """Initial state: position, energy and its gradient with respect to every site.

    The kernel contract of every module of :mod:`ebm_ppl.kernels`: which sites are binary is
    structural and given to :func:`build_kernel` (``levels``). Binary sites are floats here
    (``SitePlan.to_kernel``) so the gradient exists.

    Args:
        position: dict site -> float array.
        energy_fn: position -> scalar energy.

    Returns:
        :class:`GWGState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> s = init({"x": jnp.ones(2)}, lambda p: jnp.sum(p["x"] ** 2))
        >>> s.energy_grad["x"].tolist()
        [2.0, 2.0]
    """
    position = {n: jnp.asarray(v) for n, v in position.items()}
    # integer (categorical) sites have no gradient: their logits come from build_kernel's
    # logits_fn
    names = tuple(sorted(n for n, v in position.items() if jnp.issubdtype(v.dtype, jnp.inexact)))
    energy, grad = _value_and_grad(energy_fn, position, names)
    return GWGState(position, energy, grad)


def build_kernel(
    *,
    levels: Mapping[str, tuple[float, float]] | None = None,
    max_delta_energy: Any = 1000.0,
    num_states: Mapping[str, int] | None = None,
    logits_fn: _categorical.LogitsFn | None = None,
) -> Callable[..., Any]:
    """Build one GWG step ``kernel(rng_key, state, energy_fn) -> (state, info)``.

    Args:
        levels: dict binary site -> ``(lo, hi)``: the sites whose units may flip.
        num_states: dict categorical site -> q: sites whose units may move to another state.
        logits_fn: ``logits_fn(energy_fn, position, num_states) -> (energy, {site: logits})``,
            the conditional logits ``site_shape + (q,)`` of the categorical sites (default:
            exact energy differences, ``q`` energies per unit).
        max_delta_energy: divergence threshold on the energy error ``-log`` (acceptance
            ratio); ``> 0``, may be ``inf``.

    Returns:
        the kernel function.

    Raises:
        ValueError: if ``levels`` and ``num_states`` are both empty or ``max_delta_energy`` is
            not ``> 0``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda p: jnp.sum(p["s"])
        >>> levels = {"s": (-1.0, 1.0)}
        >>> state, info = build_kernel(levels=levels)(
        ...     jax.random.PRNGKey(0), init({"s": jnp.ones(3)}, f), f)
        >>> float(state.energy) in (1.0, 3.0)
        True
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

    def flip_scores(position, grad, logits):
        # d_i ≈ E(x) - E(flip_i x) = -Δ_i ∂_i E, Δ_i = lo + hi - 2 x_i (the change of x_i).
        parts = []
        for n in names:
            lo, hi = levels[n]
            delta = lo + hi - 2.0 * position[n]
            parts.append(jnp.ravel(-delta * grad[n]))
        for n in cat_names:
            # ℓ_ik ≈ E(x) - E(x_i=k); staying put is not a move
            current = jax.nn.one_hot(position[n], cat_q[n], dtype=bool)
            parts.append(jnp.ravel(jnp.where(current, -jnp.inf, logits[n])))
        return jnp.concatenate(parts)

    def kernel(rng_key, state: GWGState, energy_fn: EnergyFn):
        k_idx, k_acc = _random.split(rng_key)
        x = state.position
        sizes = [x[n].size for n in names]
        grad_names = tuple(sorted(state.energy_grad))

        def evaluate(pos):
            logits: dict[str, jax.Array] = {}
            energy = None
            if cat_names:
                energy, logits = value_and_logits(energy_fn, pos, cat_sub)
            if grad_names or energy is None:
                energy, grad = _value_and_grad(energy_fn, pos, grad_names)
            else:
                grad = {}
            return energy, grad, logits

        # jitted: evaluated at x and at the proposal, the energy is traced once
        evaluate_fn = jax.jit(evaluate) if cat_names else evaluate
        logits_x = evaluate_fn(x)[2] if cat_names else {}
        d = flip_scores(x, state.energy_grad, logits_x) / 2.0
        logq = jax.nn.log_softmax(d)
        i = jax.random.categorical(k_idx, d)
        # Flip unit i of the concatenated binary sites.
        new = dict(x)
        offset = 0
        for n, size in zip(names, sizes, strict=True):
            lo, hi = levels[n]
            flat = jnp.ravel(x[n])
            j = jnp.clip(i - offset, 0, size - 1)
            hit = (i >= offset) & (i < offset + size)
            flipped = flat.at[j].set(jnp.where(hit, lo + hi - flat[j], flat[j]))
            new[n] = flipped.reshape(x[n].shape)
            offset += size
        # ... or move a categorical unit: entry i = offset + unit * q + state
        i_rev = i
        for n in cat_names:
            q = cat_q[n]
            flat = jnp.ravel(x[n])
            size = flat.shape[0] * q
            rel = jnp.clip(i - offset, 0, size - 1)
            unit, k = rel // q, rel % q
            hit = (i >= offset) & (i < offset + size)
            old = flat[unit]
            new[n] = (
                flat.at[unit].set(jnp.where(hit, k, old).astype(flat.dtype)).reshape(x[n].shape)
            )
            # the reverse move sends the unit back to its old state
            i_rev = jnp.where(hit, offset + unit * q + old, i_rev)
            offset += size
        # the gradient of the same sites as the state's (init differentiates every float site)
        energy_new, grad_new, logits_new = evaluate_fn(new)
        energy_new = jnp.asarray(energy_new, jnp.result_type(state.energy))
        logq_rev = jax.nn.log_softmax(flip_scores(new, grad_new, logits_new) / 2.0)
        log_ratio = state.energy - energy_new + logq_rev[i_rev] - logq[i]
        finite = jnp.isfinite(energy_new) & jnp.all(
            jnp.stack(
                [jnp.array(True)] + [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad_new)]
            )
        )
        # NaN/inf proposals are rejections, never crashes inside jit.
        log_ratio = jnp.where(finite & ~jnp.isnan(log_ratio), log_ratio, -jnp.inf)
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accepted = _random.uniform(k_acc) < accept_prob
        out = jax.tree.map(
            lambda a, b: jnp.where(accepted, a, b),
            GWGState(new, energy_new, grad_new),
            state,
        )
        delta_energy = -log_ratio
        divergent = ~finite | (delta_energy > max_delta_energy)
        return out, GWGInfo(accept_prob, accepted, divergent, delta_energy)

    return kernel
