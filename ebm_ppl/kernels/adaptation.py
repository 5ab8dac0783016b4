"""Warmup adaptation of the step size (dual averaging) and of a diagonal mass matrix (windowed).

Pure JAX. :func:`window_adaptation` returns ``(init_fn, update_fn)``; the caller runs
``update_fn`` once per warmup iteration only (gated by an iteration counter in its own state, so
a continued chain does not adapt again).

* Step size: Nesterov dual averaging (Hoffman & Gelman 2014, Algorithm 5) of ``log ε`` toward a
  target mean acceptance rate (0.574 for MALA). During warmup the iterate ``ε_t`` is used; at
  the last warmup step the averaged ``ε̄`` is installed.
* Mass matrix (optional): Stan's windows (initial fast buffer of 75, slow windows doubling from
  25, terminal fast buffer of 50, shrunk proportionally for short warmups; none below 20
  iterations). In each slow window a Welford estimate of the variance of the (flattened)
  position is accumulated; at its end the inverse mass matrix becomes the regularized
  variance ``(n/(n+5)) var + 1e-3 * 5/(n+5)`` and dual averaging restarts from the current
  step size.

Examples:
    >>> import jax.numpy as jnp
    >>> from ebm_ppl.kernels import adaptation
    >>> init_fn, update_fn = adaptation.window_adaptation(100, target_acceptance_rate=0.574)
    >>> state = init_fn(0.1)
    >>> state = update_fn(0, state, jnp.array(1.0), jnp.zeros(3))
    >>> float(state.step_size) > 0.1  # accepted everything: grow the step
    True

References:
    Hoffman & Gelman (2014), The No-U-Turn sampler. JMLR 15. Stan Reference Manual, "HMC
    algorithm parameters" (adaptation windows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.kernels.ula import check_step_size

__all__ = [
    "AdaptationState",
    "DualAveragingState",
    "WelfordState",
    "build_schedule",
    "dual_averaging_init",
    "dual_averaging_update",
    "welford_init",
    "welford_update",
    "window_adaptation",
]


class DualAveragingState(NamedTuple):
    """State of dual averaging on ``log ε``.

    Attributes:
        log_step_size: current iterate ``log ε_t``.
        log_step_size_avg: running average ``log ε̄_t``.
        step: number of updates ``t``.
        avg_error: running average ``H̄_t`` of ``target - acceptance``.
        mu: shrinkage point ``log(10 ε_0)``.

    Examples:
        >>> float(jnp.exp(dual_averaging_init(0.1).mu))
        1.0
    """

    log_step_size: jax.Array
    log_step_size_avg: jax.Array
    step: jax.Array
    avg_error: jax.Array
    mu: jax.Array


def dual_averaging_init(step_size: Any) -> DualAveragingState:
    """Start dual averaging at ``step_size``.

    Examples:
        >>> float(jnp.exp(dual_averaging_init(0.5).log_step_size))
        0.5
    """
    log_eps = jnp.log(jnp.asarray(step_size, dtype=jnp.result_type(float)))
    zero = jnp.zeros_like(log_eps)
    return DualAveragingState(
        log_eps, zero, jnp.zeros((), jnp.int32), zero, jnp.log(10.0) + log_eps
    )


def dual_averaging_update(
    state: DualAveragingState,
    acceptance_rate: jax.Array,
    target: float,
    *,
    t0: float = 10.0,
    gamma: float = 0.05,
    kappa: float = 0.75,
) -> DualAveragingState:
    """One dual averaging update of ``log ε`` toward the acceptance ``target``.

    Args:
        state: current :class:`DualAveragingState`.
        acceptance_rate: scalar in ``[0, 1]`` of the last transition (NaN is treated as 0).
        target: desired mean acceptance rate.
        t0, gamma, kappa: Hoffman & Gelman's stabilization, shrinkage and averaging constants.

    Returns:
        the updated state.

    Examples:
        >>> s0 = dual_averaging_init(1.0)
        >>> low = dual_averaging_update(s0, jnp.array(0.0), 0.574)  # nothing accepted
        >>> high = dual_averaging_update(s0, jnp.array(1.0), 0.574)  # everything accepted
        >>> bool(low.log_step_size < high.log_step_size)
        True
    """
    acc = jnp.where(jnp.isnan(acceptance_rate), 0.0, acceptance_rate)
    t = (state.step + 1).astype(state.avg_error.dtype)
    eta = 1.0 / (t + t0)
    avg_error = (1.0 - eta) * state.avg_error + eta * (target - acc)
    log_eps = state.mu - jnp.sqrt(t) / gamma * avg_error
    weight = t ** (-kappa)
    log_eps_avg = weight * log_eps + (1.0 - weight) * state.log_step_size_avg
    return DualAveragingState(
        log_eps.astype(state.log_step_size.dtype),
        log_eps_avg.astype(state.log_step_size.dtype),
        state.step + 1,
        avg_error,
        state.mu,
    )


class WelfordState(NamedTuple):
    """Welford running mean and sum of squared deviations of a flat vector.

    Examples:
        >>> welford_init(3).mean.shape
        (3,)
    """

    mean: jax.Array
    m2: jax.Array
    num_samples: jax.Array


def welford_init(size: int, dtype: Any = None) -> WelfordState:
    """Empty Welford accumulator for vectors of length ``size``.

    Examples:
        >>> int(welford_init(2).num_samples)
        0
    """
    dtype = dtype or jnp.result_type(float)
    return WelfordState(jnp.zeros(size, dtype), jnp.zeros(size, dtype), jnp.zeros((), jnp.int32))


def welford_update(state: WelfordState, x: jax.Array) -> WelfordState:
    """Add the vector ``x`` to the accumulator.

    Examples:
        >>> s = welford_update(welford_update(welford_init(1), jnp.array([1.0])), jnp.array([3.0]))
        >>> float(s.mean[0]), float(s.m2[0] / (s.num_samples - 1))
        (2.0, 2.0)
    """
    num_samples = state.num_samples + 1
    delta = x - state.mean
    mean = state.mean + delta / num_samples.astype(x.dtype)
    m2 = state.m2 + delta * (x - mean)
    return WelfordState(mean, m2, num_samples)


def build_schedule(num_warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Stan's warmup windows as two boolean masks over the warmup iterations.

    Args:
        num_warmup: number of warmup iterations.

    Returns:
        ``(in_slow_window, slow_window_end)``, NumPy bool arrays of shape ``(num_warmup,)``:
        whether iteration ``i`` accumulates the variance, and whether it closes a slow window.

    Examples:
        >>> slow, end = build_schedule(1000)
        >>> int(slow.sum()), np.flatnonzero(end).tolist()
        (875, [99, 149, 249, 449, 949])
        >>> int(build_schedule(10)[0].sum())
        0
    """
    num_warmup = int(num_warmup)
    slow = np.zeros(num_warmup, bool)
    end = np.zeros(num_warmup, bool)
    if num_warmup < 20:
        return slow, end
    start_buffer, end_buffer, window = 75, 50, 25
    if start_buffer + end_buffer + window > num_warmup:
        start_buffer = int(0.15 * num_warmup)
        end_buffer = int(0.1 * num_warmup)
        window = num_warmup - start_buffer - end_buffer
    last_start = num_warmup - end_buffer
    start, size = start_buffer, window
    while start < last_start:
        # the last slow window absorbs what a doubled window would not fill
        if 3 * size <= last_start - start:
            next_size = 2 * size
        else:
            size, next_size = last_start - start, size
        slow[start : start + size] = True
        end[start + size - 1] = True
        start, size = start + size, next_size
    return slow, end


class AdaptationState(NamedTuple):
    """State of :func:`window_adaptation`.

    Attributes:
        step_size: step size to use at the next transition.
        inverse_mass_matrix: diagonal inverse mass matrix ``(d,)`` to use next, or ``None``.
        da_state: :class:`DualAveragingState`.
        welford_state: :class:`WelfordState` of the current slow window (``None`` without
            mass adaptation).

    Examples:
        >>> init_fn, _ = window_adaptation(10, target_acceptance_rate=0.5)
        >>> init_fn(0.2).inverse_mass_matrix is None
        True
    """

    step_size: jax.Array
    inverse_mass_matrix: Any
    da_state: DualAveragingState
    welford_state: Any


def window_adaptation(
    num_warmup: int,
    *,
    target_acceptance_rate: float,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = False,
    t0: float = 10.0,
    gamma: float = 0.05,
    kappa: float = 0.75,
) -> tuple[Callable[..., AdaptationState], Callable[..., AdaptationState]]:
    """Step size and diagonal mass adaptation for ``num_warmup`` iterations.

    Args:
        num_warmup: number of warmup iterations (static).
        target_acceptance_rate: in ``(0, 1)``; 0.574 for MALA.
        adapt_step_size: run dual averaging.
        adapt_mass_matrix: run windowed diagonal variance estimation.
        t0, gamma, kappa: dual averaging constants.

    Returns:
        ``init_fn(step_size, inverse_mass_matrix=None, size=None) -> AdaptationState`` (``size``,
        the flat dimension, is required when adapting the mass matrix without an initial one)
        and ``update_fn(i, state, acceptance_rate, flat_position) -> AdaptationState`` for
        warmup iteration ``i < num_warmup`` (``i`` may be traced).

    Raises:
        ValueError: for a target outside ``(0, 1)`` or a negative ``num_warmup``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> init_fn, update_fn = window_adaptation(50, target_acceptance_rate=0.574)
        >>> s = init_fn(1.0)
        >>> s = jax.lax.fori_loop(0, 50, lambda i, s: update_fn(i, s, jnp.array(0.2), None), s)
        >>> float(s.step_size) < 1.0
        True
    """
    # a traced target (a kernel built inside jit) cannot be checked
    concrete = not isinstance(target_acceptance_rate, jax.core.Tracer)
    if concrete and not 0.0 < float(target_acceptance_rate) < 1.0:
        raise ValueError(
            f"target_acceptance_rate must be in (0, 1), got {target_acceptance_rate!r}"
        )
    if int(num_warmup) < 0:
        raise ValueError(f"num_warmup must be >= 0, got {num_warmup!r}")
    num_warmup = int(num_warmup)
    slow_np, end_np = build_schedule(num_warmup)
    adapt_mass_matrix = bool(adapt_mass_matrix) and bool(slow_np.any())

    def init_fn(
        step_size: Any, inverse_mass_matrix: Any = None, size: int | None = None
    ) -> AdaptationState:
        check_step_size(step_size)
        step_size = jnp.asarray(step_size, dtype=jnp.result_type(float))
        welford = None
        if adapt_mass_matrix:
            if inverse_mass_matrix is None:
                if size is None:
                    raise ValueError("size is required to adapt the mass matrix from the identity")
                inverse_mass_matrix = jnp.ones(size, step_size.dtype)
            inverse_mass_matrix = jnp.asarray(inverse_mass_matrix, step_size.dtype)
            welford = welford_init(inverse_mass_matrix.shape[0], step_size.dtype)
        elif inverse_mass_matrix is not None:
            inverse_mass_matrix = jnp.asarray(inverse_mass_matrix, step_size.dtype)
        return AdaptationState(
            step_size, inverse_mass_matrix, dual_averaging_init(step_size), welford
        )

    def update_fn(
        i: Any, state: AdaptationState, acceptance_rate: jax.Array, flat_position: Any
    ) -> AdaptationState:
        step_size, imm, da, welford = state
        if adapt_step_size:
            da = dual_averaging_update(
                da, acceptance_rate, target_acceptance_rate, t0=t0, gamma=gamma, kappa=kappa
            )
            step_size = jnp.exp(da.log_step_size)
        if adapt_mass_matrix:
            # constants built at trace time, not at import
            in_slow = jnp.asarray(slow_np)[i]
            at_end = jnp.asarray(end_np)[i]
            welford = jax.tree.map(
                lambda new, old: jnp.where(in_slow, new, old),
                welford_update(welford, flat_position.astype(welford.mean.dtype)),
                welford,
            )
            n = welford.num_samples.astype(welford.mean.dtype)
            var = welford.m2 / jnp.maximum(n - 1.0, 1.0)
            new_imm = (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))
            imm = jnp.where(at_end, new_imm, imm)
            welford = jax.tree.map(
                lambda fresh, old: jnp.where(at_end, fresh, old),
                welford_init(welford.mean.shape[0], welford.mean.dtype),
                welford,
            )
            if adapt_step_size:
                da = jax.tree.map(
                    lambda fresh, old: jnp.where(at_end, fresh, old),
                    dual_averaging_init(step_size),
                    da,
                )
        if adapt_step_size:
            step_size = jnp.where(i == num_warmup - 1, jnp.exp(da.log_step_size_avg), step_size)
        return AdaptationState(step_size, imm, da, welford)

    return init_fn, update_fn
