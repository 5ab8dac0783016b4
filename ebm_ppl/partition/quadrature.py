"""``log Z`` by grid quadrature, for models with at most three continuous state dimensions."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.view import StateView, as_energy_model
from ebm_ppl.partition.base import LogZEstimate

__all__ = ["compare_on_grid", "grid_log_density", "log_partition_quadrature"]

_DEFAULT_POINTS = {1: 4001, 2: 401, 3: 81}


def _flat_potential(em: EnergyModel, params: Mapping[str, Any] | None):
    """``z (d,) -> potential`` on the unconstrained, raveled state, and ``d``."""
    if em.discrete_sites:
        raise ValueError(
            f"method='quadrature' needs continuous state sites only; {list(em.discrete_sites)} "
            "are discrete (use method='exact')"
        )
    view = StateView(em, who="quadrature", unconstrained=True)
    if params is None:
        params = em.init_params(jax.random.PRNGKey(0))
    # Checked here too (direct calls): NaN parameters would give log Z = -inf and a warning
    # about the box instead of naming the parameter.
    potential = em.potential_fn(em.validate_params(params))
    return (lambda z: potential(view.unravel(z))), view.dim


def _bounds(bounds: Any, d: int) -> tuple[np.ndarray, np.ndarray]:
    low, high = bounds
    low = np.broadcast_to(np.asarray(low, dtype=np.float64), (d,)).copy()
    high = np.broadcast_to(np.asarray(high, dtype=np.float64), (d,)).copy()
    if not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)) or np.any(high <= low):
        raise ValueError(f"bounds must be finite (low, high) with low < high, got {bounds!r}")
    return low, high


def _axes(low: np.ndarray, high: np.ndarray, num_points: int) -> list[np.ndarray]:
    return [np.linspace(lo, hi, num_points) for lo, hi in zip(low, high, strict=True)]


def _evaluate(potential_batch, points: np.ndarray, chunk: int) -> jax.Array:
    """``−U`` at ``points`` in fixed-size chunks (one compilation for every grid size)."""
    n = points.shape[0]
    size = min(chunk, n)
    pad = (-n) % size
    padded = np.concatenate([points, np.repeat(points[:1], pad, axis=0)]) if pad else points
    parts = [
        potential_batch(jnp.asarray(padded[i : i + size], dtype=jnp.result_type(float)))
        for i in range(0, padded.shape[0], size)
    ]
    return -jnp.concatenate(parts)[:n]


def _grid_log_sum(potential_batch, axes: list[np.ndarray], chunk: int) -> tuple[float, float]:
    """``(log Σ exp(−U) h^d, fraction of the mass on the box's faces)`` over a tensor grid."""
    d = len(axes)
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    log_f = _evaluate(potential_batch, mesh, chunk)
    log_f = jnp.where(jnp.isnan(log_f), -jnp.inf, log_f)
    log_h = sum(math.log(a[1] - a[0]) for a in axes)
    total = float(jax.nn.logsumexp(log_f))
    on_face = np.zeros(mesh.shape[0], dtype=bool)
    for i, a in enumerate(axes):
        on_face |= (mesh[:, i] == a[0]) | (mesh[:, i] == a[-1])
    face = float(jax.nn.logsumexp(jnp.where(jnp.asarray(on_face), log_f, -jnp.inf)))
    return total + log_h, math.exp(face - total) if np.isfinite(face) else 0.0


def log_partition_quadrature(
    model: Any,
    params: Mapping[str, Any] | None = None,
    *,
    rng_key: Any = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    bounds: Any = (-6.0, 6.0),
    num_points: int | None = None,
    enlarge: float = 1.5,
    max_enlargements: int = 4,
    tol: float = 1e-3,
    chunk_size: int = 16384,
) -> LogZEstimate:
    """``log Z = log ∫ exp(−E(x)) dx`` by a Riemann sum on a tensor grid (``d <= 3``).

    The grid spans ``bounds`` in every dimension of the raveled, unconstrained state (constrained
    sites are integrated on their unconstrained space, with the Jacobian, as samplers see
    them). For a smooth density that vanishes at the box's faces the equally weighted sum is the
    trapezoidal rule, which converges faster than any power of the spacing. The box is checked by
    enlarging it by ``enlarge`` (same spacing, more points) until ``log Z`` moves by less than
    ``tol``; if it never settles within ``max_enlargements`` the estimate carries
    ``info["converged"] = False`` and a ``RuntimeWarning`` is issued.

    Args:
        model: a NumPyro EBM program (or an :class:`ebm_ppl.EnergyModel`).
        params: model parameters.
        rng_key: unused (deterministic method).
        model_args, model_kwargs: arguments for ``model``.
        bounds: ``(low, high)``, scalars or ``(d,)`` arrays: the starting box.
        num_points: grid points per dimension on the starting box (default 4001, 401, 81 for
            ``d`` = 1, 2, 3).
        enlarge: factor by which the box grows about its centre at each check (``> 1``).
        max_enlargements: most enlargements before giving up.
        tol: accepted change of ``log Z`` between consecutive boxes.
        chunk_size: energies evaluated per vectorized call.

    Returns:
        :class:`LogZEstimate` with ``stderr`` = the last change of ``log Z`` plus the change on
        halving the resolution (an error indicator, not a statistical standard error) and
        ``info`` with ``bounds``, ``num_points``, ``spacing``, ``face_mass`` (fraction of the
        mass on the box's faces), ``resolution_change`` and ``converged``.

    Raises:
        ValueError: for ``d > 3``, discrete state sites, bad bounds or sizes, or ``params`` that
            do not fit the model (unknown or missing sites, shapes, non-finite values).

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> est = ebm.log_partition(gauss, method="quadrature")
        >>> round(est.log_z, 4), round(math.log(2 * math.pi), 4)
        (1.8379, 1.8379)
    """
    del rng_key
    em = as_energy_model(model, model_args, model_kwargs)
    potential, d = _flat_potential(em, params)
    if not 1 <= d <= 3:
        raise ValueError(
            f"method='quadrature' supports 1 to 3 state dimensions, the model has d={d}"
        )
    if num_points is None:
        num_points = _DEFAULT_POINTS[d]
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
        raise ValueError(f"num_points must be an integer >= 3, got {num_points!r}")
    if not float(enlarge) > 1.0:
        raise ValueError(f"enlarge must be > 1, got {enlarge!r}")
    if (
        isinstance(max_enlargements, bool)
        or not isinstance(max_enlargements, int)
        or max_enlargements < 1
    ):
        raise ValueError(f"max_enlargements must be an integer >= 1, got {max_enlargements!r}")
    low, high = _bounds(bounds, d)
    spacing = (high - low) / (num_points - 1)
    fn = jax.jit(jax.vmap(potential))

    def grid_for(lo, hi):
        # Same spacing on every box, so only the box changes between checks.
        counts = np.maximum(np.round((hi - lo) / spacing).astype(int) + 1, 3)
        return [lo[i] + spacing[i] * np.arange(counts[i]) for i in range(d)]

    axes = grid_for(low, high)
    log_z, face = _grid_log_sum(fn, axes, chunk_size)
    change, converged = math.inf, False
    centre = 0.5 * (low + high)
    half = 0.5 * (high - low)
    for _ in range(max_enlargements):
        half = half * float(enlarge)
        big_axes = grid_for(centre - half, centre + half)
        big_log_z, big_face = _grid_log_sum(fn, big_axes, chunk_size)
        change = abs(big_log_z - log_z)
        axes, log_z, face = big_axes, big_log_z, big_face
        if change < tol:
            converged = True
            break
    # Resolution check: every other point (doubled spacing) on the accepted box.
    coarse, _ = _grid_log_sum(fn, [a[::2] for a in axes], chunk_size)
    resolution_change = abs(coarse - log_z)
    if not converged:
        warnings.warn(
            f"quadrature log Z did not settle when enlarging the box (last change {change:.3g} >= "
            f"tol={tol}); the density may have mass outside bounds={tuple(bounds)!r} or be improper",
            RuntimeWarning,
            stacklevel=2,
        )
    info = {
        "bounds": (np.array([a[0] for a in axes]), np.array([a[-1] for a in axes])),
        "num_points": tuple(len(a) for a in axes),
        "spacing": spacing,
        "face_mass": face,
        "resolution_change": resolution_change,
        "converged": converged,
    }
    return LogZEstimate(float(log_z), float(change + resolution_change), "quadrature", info)


def grid_log_density(
    model: Any,
    params: Mapping[str, Any] | None,
    points: Any,
    *,
    log_z: float,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    chunk_size: int = 16384,
) -> jax.Array:
    """Normalized log density ``−U(z) − log Z`` at raveled unconstrained points ``(n, d)``.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(1))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> lp = grid_log_density(gauss, {}, jnp.zeros((1, 1)), log_z=0.5 * math.log(2 * math.pi))
        >>> round(float(lp[0]), 4)
        -0.9189
    """
    em = as_energy_model(model, model_args, model_kwargs)
    potential, d = _flat_potential(em, params)
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != d:
        raise ValueError(f"points must have shape (n, {d}), got {points.shape}")
    return _evaluate(jax.jit(jax.vmap(potential)), np.asarray(points), chunk_size) - log_z


def compare_on_grid(
    model: Any,
    params: Mapping[str, Any] | None,
    log_density_fn: Any,
    *,
    box: float,
    num_points: int,
    test: Any = None,
) -> dict[str, Any]:
    """Normalize a 2-D model by quadrature and compare it with a known density on the same grid.

    ``log Z`` comes from :func:`log_partition_quadrature` on ``[-box, box]²``; an unsettled box
    is reported in ``box_converged`` instead of warning. ``KL(p ‖ q) = Σ p (log p − log q) h²``
    over the grid.

    Args:
        model: a 2-D continuous energy model (NumPyro program or :class:`EnergyModel`).
        params: its parameters.
        log_density_fn: ``x (n, 2) -> log p(x) (n,)``, the reference density (e.g.
            ``lambda x: ebm.data.toy_log_density("8gaussians", x)``).
        box: half-width of the square grid.
        num_points: grid points per axis.
        test: optional ``(n, 2)`` points for the model's mean negative log-likelihood.

    Returns:
        dict with ``log_z``, ``box_converged``, ``kl``, ``test_nll`` (``None`` without ``test``)
        and the grids ``log_p``, ``log_q`` of shape ``(num_points, num_points)``.

    Examples:
        >>> import jax.numpy as jnp, numpy as np, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat((2,)))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> ref = lambda x: -0.5 * np.sum(x**2, -1) - np.log(2 * np.pi)
        >>> out = compare_on_grid(gauss, {}, ref, box=6.0, num_points=61)
        >>> abs(out["kl"]) < 1e-3
        True
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # reported as box_converged
        est = log_partition_quadrature(
            model,
            params,
            rng_key=None,
            model_args=(),
            model_kwargs={},
            bounds=(-box, box),
            num_points=num_points,
        )
    g = np.linspace(-box, box, num_points)
    pts = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    log_p = np.asarray(log_density_fn(pts), dtype=np.float64)
    log_q = np.asarray(grid_log_density(model, params, pts, log_z=est.log_z), dtype=np.float64)
    p = np.exp(log_p)
    kl = float(np.sum(np.where(p > 0, p * (log_p - log_q), 0.0)) * (g[1] - g[0]) ** 2)
    nll = None
    if test is not None:
        nll = -float(np.mean(np.asarray(grid_log_density(model, params, test, log_z=est.log_z))))
    return {
        "log_z": est.log_z,
        "box_converged": bool(est.info["converged"]),
        "kl": kl,
        "test_nll": nll,
        "log_p": log_p.reshape(num_points, num_points),
        "log_q": log_q.reshape(num_points, num_points),
    }
