"""Ising models: nearest-neighbour lattices and general couplings, with exact references.

``model(shape, beta, coupling, field, periodic)`` declares spins ``s ∈ {-1, +1}^shape`` with

.. math::

    E(s) = \\beta\\Bigl(-J \\sum_{\\langle ij \\rangle} s_i s_j - h \\sum_i s_i\\Bigr),

each bond counted once (``2N`` bonds on an ``N``-site square torus). The Gibbs blocks are
declared on the site, ``infer={"blocks": colours}``: the checkerboard, or a 3-colouring when a
periodic side is odd (:func:`ebm_ppl.kernels.gibbs.lattice_colouring`). This is the documented
way for any model to declare its blocks: an int array of colours broadcastable to the site's
shape (an int colours the whole site); units of one colour must be conditionally independent,
and blocks are swept in increasing colour.

Reference values for tests: :func:`onsager_energy`, :func:`onsager_magnetization` (infinite
square lattice) and :func:`kaufman_log_z` (the exact finite torus).

Examples:
    >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
    >>> from ebm_ppl.models import ising
    >>> em = ebm.EnergyModel(ising.model, (4, 4), beta=0.5)
    >>> float(em.energy({}, {"s": jnp.ones((4, 4))}))    # 32 bonds, beta = 1/2
    -16.0
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro

from ebm_ppl.energy.base import Spins, _as_shape
from ebm_ppl.energy.declare import energy as declare_energy
from ebm_ppl.energy.lattice import Lattice
from ebm_ppl.kernels.gibbs import lattice_colouring

__all__ = [
    "T_CRITICAL",
    "blocks",
    "conditional_logits",
    "couplings_model",
    "energy",
    "kaufman_log_z",
    "model",
    "onsager_energy",
    "onsager_magnetization",
    "ordered_state",
]

#: Critical temperature of the square-lattice Ising model, ``2 / ln(1 + √2)``.
T_CRITICAL = 2.0 / math.log(1.0 + math.sqrt(2.0))


@functools.lru_cache(maxsize=32)
def _blocks(shape: tuple[int, ...], periodic: bool) -> np.ndarray:
    colours = lattice_colouring(shape, periodic)
    colours.setflags(write=False)
    return colours


def blocks(shape: Any, periodic: bool = True) -> np.ndarray:
    """Gibbs colours of the lattice (what :func:`model` declares on its site).

    Args:
        shape: lattice shape.
        periodic: whether the lattice wraps around.

    Returns:
        int array of ``shape`` (two colours, or three for a periodic odd side).

    Examples:
        >>> blocks((2, 2)).tolist()
        [[0, 1], [1, 0]]
    """
    return _blocks(_as_shape(shape), bool(periodic))


def _bond_sum(s: Any, periodic: bool) -> Any:
    """Σ_<ij> s_i s_j over nearest-neighbour bonds (each counted once)."""
    total = 0.0
    for axis in range(s.ndim):
        if periodic:
            total = total + jnp.sum(s * jnp.roll(s, -1, axis=axis))
        else:
            n = s.shape[axis]
            a = jnp.take(s, jnp.arange(n - 1), axis=axis)
            b = jnp.take(s, jnp.arange(1, n), axis=axis)
            total = total + jnp.sum(a * b)
    return total


def energy(
    s: Any, *, beta: float = 1.0, coupling: float = 1.0, field: float = 0.0, periodic: bool = True
) -> Any:
    """Energy ``β(-J Σ_<ij> s_i s_j - h Σ_i s_i)`` of a lattice configuration.

    Args:
        s: spins, array of the lattice shape with values ±1.
        beta, coupling, field: ``β``, ``J``, ``h``.
        periodic: wrap-around bonds.

    Returns:
        scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(energy(jnp.ones((3, 3)), periodic=False))   # 12 open bonds
        -12.0
    """
    return beta * (-coupling * _bond_sum(s, periodic) - field * jnp.sum(s))


def conditional_logits(
    s: Any, *, beta: float = 1.0, coupling: float = 1.0, field: float = 0.0, periodic: bool = True
) -> Any:
    """Closed-form logits ``2β(J Σ_{j~i} s_j + h)`` of ``P(s_i = +1 | rest)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(conditional_logits(jnp.ones((4, 4)), beta=0.5)[0, 0])
        4.0
    """
    nb = jnp.zeros_like(s)
    for axis in range(s.ndim):
        if periodic:
            nb = nb + jnp.roll(s, 1, axis=axis) + jnp.roll(s, -1, axis=axis)
        else:
            pad = [(0, 0)] * s.ndim
            pad[axis] = (1, 1)
            p = jnp.pad(s, pad)
            n = s.shape[axis]
            nb = (
                nb
                + jnp.take(p, jnp.arange(0, n), axis=axis)
                + jnp.take(p, jnp.arange(2, n + 2), axis=axis)
            )
    return 2.0 * beta * (coupling * nb + field)


def model(
    shape: Any, beta: float = 1.0, coupling: float = 1.0, field: float = 0.0, periodic: bool = True
) -> None:
    """Nearest-neighbour Ising model on a lattice: site ``"s"`` on ``Spins(shape)``.

    The site declares its Gibbs colours and its lattice (``infer={"lattice":
    ebm.Lattice.ising(...)}``): ``ebm.sample(kernel="gibbs")`` runs the compact checkerboard
    heat bath on an ``L x L`` torus with ``L`` even, and ``kernel="swendsen_wang"``
    Swendsen–Wang cluster updates on any periodic 2-D lattice.

    Args:
        shape: lattice shape (int or tuple), e.g. ``(32, 32)``.
        beta: inverse temperature ``1/T``.
        coupling: ``J`` (> 0 ferromagnetic).
        field: external field ``h``.
        periodic: torus (``True``) or open boundaries.

    Examples:
        >>> import ebm_ppl as ebm
        >>> ebm.EnergyModel(model, (4, 4)).sites["s"].shape
        (4, 4)
    """
    shape = _as_shape(shape)
    # the declared lattice lets ebm.sample run the compact heat bath and Swendsen–Wang
    lattice = Lattice.ising(shape, beta=beta, coupling=coupling, field=field, periodic=periodic)
    infer = {"blocks": blocks(shape, periodic), "lattice": lattice}
    s = numpyro.sample("s", Spins(shape), infer=infer)
    declare_energy("E", energy(s, beta=beta, coupling=coupling, field=field, periodic=periodic))


def _check_couplings(J: Any, h: Any) -> None:
    try:
        Jc = np.asarray(J, dtype=np.float64)
    except Exception:  # noqa: BLE001  (traced values are not checkable)
        return
    if Jc.ndim != 2 or Jc.shape[0] != Jc.shape[1]:
        raise ValueError(f"J must be a square (N, N) matrix, got shape {Jc.shape}")
    if not np.allclose(Jc, Jc.T) or np.any(np.diag(Jc) != 0):
        raise ValueError("J must be symmetric with a zero diagonal")
    if h is not None and np.shape(h) not in ((), (Jc.shape[0],)):
        raise ValueError(f"h must be a scalar or have shape ({Jc.shape[0]},), got {np.shape(h)}")


def couplings_model(J: Any, h: Any = 0.0) -> None:
    """Ising model with general couplings: ``E(s) = -½ sᵀ J s - hᵀ s`` on ``Spins(N)``.

    Args:
        J: ``(N, N)`` symmetric coupling matrix with zero diagonal (each pair counted once).
        h: field, scalar or ``(N,)``.

    Raises:
        ValueError: if a concrete ``J`` is not square, symmetric with a zero diagonal.

    Examples:
        >>> import jax.numpy as jnp, ebm_ppl as ebm
        >>> J = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> float(ebm.EnergyModel(couplings_model, J).energy({}, {"s": jnp.ones(2)}))
        -1.0
    """
    _check_couplings(J, h)
    J = jnp.asarray(J)
    n = J.shape[0]
    # Only the strict upper triangle enters (a zero diagonal keeps E affine in each spin).
    Ju = jnp.triu(J, 1)
    s = numpyro.sample("s", Spins(n))
    declare_energy("E", -s @ Ju @ s - jnp.sum(h * s))


def ordered_state(shape: Any, num_chains: int | None = None, value: float = 1.0) -> Any:
    """All-``value`` spins (the ordered start below ``T_c``), optionally with a chain axis.

    Examples:
        >>> ordered_state((2, 2), num_chains=3).shape
        (3, 2, 2)
    """
    shape = _as_shape(shape)
    full = shape if num_chains is None else (int(num_chains), *shape)
    return jnp.full(full, value, dtype=jnp.result_type(float))


# ----------------------------------------------------------------------------- references
def onsager_magnetization(temperature: float, coupling: float = 1.0) -> float:
    """Spontaneous magnetization ``(1 - sinh(2J/T)^-4)^(1/8)`` below ``T_c``, 0 above.

    Examples:
        >>> round(onsager_magnetization(2.0), 9)
        0.911319378
    """
    k = 2.0 * coupling / temperature
    x = 1.0 - math.sinh(k) ** -4
    return x**0.125 if x > 0 else 0.0


def onsager_energy(temperature: float, coupling: float = 1.0) -> float:
    """Energy per spin of the infinite square lattice (Onsager), ``J = 1`` units scaled by ``J``.

    Examples:
        >>> round(onsager_energy(1.5), 9)
        -1.951116573
    """
    from scipy.special import ellipk

    b = coupling / temperature
    k = 2.0 * math.sinh(2 * b) / math.cosh(2 * b) ** 2
    t = math.tanh(2 * b)
    u = -(1.0 / t) * (1.0 + (2.0 / math.pi) * (2.0 * t * t - 1.0) * float(ellipk(k * k)))
    return coupling * u


def _log_signed_sum(logs: list[float], signs: list[float]) -> float:
    m = max(logs)
    total = sum(s * math.exp(v - m) for v, s in zip(logs, signs, strict=True))
    return m + math.log(total)


def kaufman_log_z(shape: Any, temperature: float, coupling: float = 1.0) -> float:
    """Exact ``ln Z`` of the ``m × n`` periodic Ising torus at ``h = 0`` (Kaufman 1949).

    ``Z = ½ (2 sinh 2K)^{mn/2} [Z1 + Z2 + Z3 + Z4]``, evaluated in float64 with signed
    log-sum-exp (``Z4`` is negative above ``T_c``).

    Args:
        shape: ``(m, n)`` (rows, columns), both >= 2.
        temperature: ``T``.
        coupling: ``J``.

    Examples:
        >>> round(kaufman_log_z((4, 4), 2.0), 9)
        17.105367119
    """
    m, n = _as_shape(shape)
    K = coupling / temperature

    def gamma(ell: int) -> float:
        if ell == 0:
            return 2.0 * K + math.log(math.tanh(K))
        c = math.cosh(2 * K) / math.tanh(2 * K) - math.cos(math.pi * ell / n)
        return math.acosh(c)

    odd = [gamma(2 * r + 1) for r in range(n)]
    even = [gamma(2 * r) for r in range(n)]

    def log_prod(gs, fn) -> tuple[float, float]:
        total, sign = 0.0, 1.0
        for g in gs:
            v = fn(m * g / 2.0)
            sign *= math.copysign(1.0, v) if v != 0 else 0.0
            total += math.log(abs(v) * 2.0) if v != 0 else -math.inf
        return total, sign

    parts = [
        log_prod(odd, math.cosh),
        log_prod(odd, math.sinh),
        log_prod(even, math.cosh),
        log_prod(even, math.sinh),
    ]
    parts = [(v, s) for v, s in parts if s != 0.0]
    log_sum = _log_signed_sum([v for v, _ in parts], [s for _, s in parts])
    return -math.log(2.0) + 0.5 * m * n * math.log(2.0 * math.sinh(2.0 * K)) + log_sum
