"""Potts models: q-state lattices and general pairwise couplings (Potts Boltzmann machines).

``model(shape, num_states, beta, coupling, field, periodic)`` declares states
``σ ∈ {0, …, q-1}^shape`` with

.. math::

    E(σ) = -β J \\sum_{\\langle ij \\rangle} δ(σ_i, σ_j) - β \\sum_i h_{σ_i},

each bond counted once (``2N`` bonds on an ``N``-site square torus), and declares the Gibbs
colour blocks on the site like :mod:`ebm_ppl.models.ising` (a checkerboard, or three colours
when a periodic side is odd). The energy is written with ``jax.nn.one_hot``, so it is affine in
each unit's one-hot vector: the ``q`` conditional logits of a unit are
``β J Σ_{j~i} onehot(σ_j) + β h`` (:func:`conditional_logits`).

``couplings_model(J, h)`` is the Potts Boltzmann machine of coupling analysis (direct-coupling
analysis of protein and RNA families):

.. math::

    E(σ) = -\\sum_{i<j} J_{ij}(σ_i, σ_j) - \\sum_i h_i(σ_i),

with ``J`` of shape ``(n, n, q, q)`` and ``h`` of shape ``(n, q)``; :func:`boltzmann_model` is
the same energy with ``J`` and ``h`` as parameters to learn. Couplings are identifiable only up
to a *gauge* (adding ``a(σ_i) + b(σ_j)`` to ``J_ij`` and compensating in ``h`` leaves every
probability unchanged); :func:`zero_sum_gauge` maps them to the zero-sum (Ising) gauge, where
two coupling sets define the same distribution exactly when they are equal.

Reference values: :func:`critical_temperature` ``T_c = J / ln(1 + √q)`` and
:func:`critical_energy` ``u_c = -J (1 + 1/√q)`` per site (both from self-duality, Baxter
1973); the ``q = 2`` model at ``β`` is the Ising model at ``β / 2``
(:func:`ising_log_z_shift`).

Examples:
    >>> import jax.numpy as jnp, ebm_ppl as ebm
    >>> from ebm_ppl.models import potts
    >>> em = ebm.EnergyModel(potts.model, (4, 4), 3)
    >>> float(em.energy({}, {"s": jnp.zeros((4, 4), jnp.int32)}))   # 32 satisfied bonds
    -32.0
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from ebm_ppl.energy.base import Categorical, _as_shape
from ebm_ppl.energy.conditionals import one_hot
from ebm_ppl.energy.declare import energy as declare_energy
from ebm_ppl.energy.lattice import Lattice
from ebm_ppl.kernels.gibbs import greedy_colouring, lattice_colouring

__all__ = [
    "base_measure",
    "binder_cumulant",
    "blocks",
    "boltzmann_model",
    "conditional_logits",
    "couplings_energy",
    "couplings_model",
    "critical_energy",
    "critical_temperature",
    "energy",
    "exact_samples",
    "ising_log_z_shift",
    "lattice_logits_fn",
    "magnetization",
    "model",
    "ordered_state",
    "random_couplings",
    "symmetrize",
    "zero_sum_gauge",
]


def _check_num_states(num_states: Any, name: str = "num_states") -> int:
    if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 2, got {num_states!r}")
    if int(num_states) < 2:
        raise ValueError(
            f"{name} must be >= 2 (a unit needs at least two states), got {num_states}"
        )
    return int(num_states)


def base_measure(shape: Any, num_states: int) -> Any:
    """Counting measure on ``{0, …, q-1}^shape`` (the base of every model here).

    ``ebm.Categorical(shape, num_states)``: ``batch_shape = shape``, ``event_shape = ()``.

    Examples:
        >>> base_measure((2, 3), 4).batch_shape
        (2, 3)
    """
    return Categorical(_as_shape(shape), _check_num_states(num_states))


# ----------------------------------------------------------------------------- lattice model
@functools.lru_cache(maxsize=32)
def _blocks(shape: tuple[int, ...], periodic: bool) -> np.ndarray:
    colours = lattice_colouring(shape, periodic)
    colours.setflags(write=False)
    return colours


def blocks(shape: Any, periodic: bool = True) -> np.ndarray:
    """Gibbs colours of the lattice (what :func:`model` declares on its site).

    Examples:
        >>> blocks((2, 2)).tolist()
        [[0, 1], [1, 0]]
    """
    return _blocks(_as_shape(shape), bool(periodic))


def _one_hot(s: Any, num_states: int) -> Any:
    # The library's one_hot (not jax.nn's): the conditionals read all q logits of every unit
    # from one gradient with respect to this encoding.
    return one_hot(s, num_states, dtype=jnp.result_type(float))


def _neighbour_sum(x: Any, periodic: bool, ndim: int) -> Any:
    """Σ_{j~i} x_j over lattice neighbours, for ``x`` of shape ``(*lattice, q)``."""
    nb = jnp.zeros_like(x)
    for axis in range(ndim):
        if periodic:
            nb = nb + jnp.roll(x, 1, axis=axis) + jnp.roll(x, -1, axis=axis)
        else:
            pad = [(0, 0)] * x.ndim
            pad[axis] = (1, 1)
            p = jnp.pad(x, pad)
            n = x.shape[axis]
            nb = (
                nb
                + jnp.take(p, jnp.arange(0, n), axis=axis)
                + jnp.take(p, jnp.arange(2, n + 2), axis=axis)
            )
    return nb


def _bond_agreements(x: Any, periodic: bool, ndim: int) -> Any:
    """Σ_<ij> δ(σ_i, σ_j) = Σ_<ij> x_i · x_j over bonds, each counted once."""
    total = 0.0
    for axis in range(ndim):
        if periodic:
            total = total + jnp.sum(x * jnp.roll(x, -1, axis=axis))
        else:
            n = x.shape[axis]
            a = jnp.take(x, jnp.arange(n - 1), axis=axis)
            b = jnp.take(x, jnp.arange(1, n), axis=axis)
            total = total + jnp.sum(a * b)
    return total


def _check_field(field: Any, shape: tuple[int, ...], num_states: int) -> None:
    if field is None:
        return
    fshape = tuple(np.shape(field))
    if fshape not in ((num_states,), (*shape, num_states)):
        raise ValueError(
            f"field must have shape ({num_states},) (one value per state) or "
            f"{(*shape, num_states)} (per site and state), got {fshape}"
        )


def energy(
    s: Any,
    num_states: int,
    *,
    beta: float = 1.0,
    coupling: float = 1.0,
    field: Any = None,
    periodic: bool = True,
) -> Any:
    """Energy ``-β J Σ_<ij> δ(σ_i, σ_j) - β Σ_i h[σ_i]`` of one lattice configuration.

    Args:
        s: states, array of the lattice shape with values in ``{0, …, q-1}`` (int or float).
        num_states: ``q``.
        beta, coupling: ``β``, ``J``.
        field: ``h``, shape ``(q,)`` or ``(*lattice, q)``; ``None`` for no field.
        periodic: wrap-around bonds.

    Returns:
        scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(energy(jnp.zeros((3, 3)), 3, periodic=False))   # 12 open bonds
        -12.0
    """
    x = _one_hot(s, num_states)
    ndim = jnp.ndim(s)
    e = -beta * coupling * _bond_agreements(x, periodic, ndim)
    if field is not None:
        e = e - beta * jnp.sum(x * jnp.asarray(field, x.dtype))
    return e


def conditional_logits(
    s: Any,
    num_states: int,
    *,
    beta: float = 1.0,
    coupling: float = 1.0,
    field: Any = None,
    periodic: bool = True,
) -> Any:
    """Closed-form logits ``β J Σ_{j~i} onehot(σ_j) + β h`` of ``P(σ_i = k | rest)``.

    Returns:
        array ``(*lattice, q)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> conditional_logits(jnp.zeros((4, 4)), 3, beta=0.5)[0, 0].tolist()
        [2.0, 0.0, 0.0]
    """
    x = _one_hot(s, num_states)
    logits = beta * coupling * _neighbour_sum(x, periodic, jnp.ndim(s))
    if field is not None:
        logits = logits + beta * jnp.asarray(field, x.dtype)
    return logits


def lattice_logits_fn(
    num_states: int,
    *,
    beta: float = 1.0,
    coupling: float = 1.0,
    field: Any = None,
    periodic: bool = True,
    site: str = "s",
) -> Any:
    """A ``logits_fn`` for the library's categorical kernels: the closed-form Potts conditionals.

    ``logits_fn(energy_fn, position, num_states) -> (energy, {site: logits})`` with logits
    ``-(E(σ_i = k) - E(σ))`` from :func:`conditional_logits` (neighbour counts, no gradient):
    about four times cheaper than the gradient with respect to the one-hot encoding on large
    lattices. Valid only when ``energy_fn`` is this lattice model's energy with the same
    arguments (pass it to ``gibbs.build_kernel(logits_fn=...)``, not to tempered energies).

    Examples:
        >>> import jax.numpy as jnp
        >>> fn = lattice_logits_fn(3, beta=0.5)
        >>> e, lg = fn(lambda p: energy(p["s"], 3, beta=0.5), {"s": jnp.zeros((4, 4), jnp.int32)}, {"s": 3})
        >>> float(e), lg["s"][0, 0].tolist()
        (-16.0, [0.0, -2.0, -2.0])
    """
    q = _check_num_states(num_states)

    def logits_fn(energy_fn: Any, position: Any, num_states_map: Any) -> Any:
        del num_states_map
        s = position[site]
        lg = conditional_logits(s, q, beta=beta, coupling=coupling, field=field, periodic=periodic)
        current = jnp.take_along_axis(lg, jnp.asarray(s, jnp.int32)[..., None], axis=-1)
        return energy_fn(position), {site: lg - current}

    return logits_fn


def model(
    shape: Any,
    num_states: int,
    beta: float = 1.0,
    coupling: float = 1.0,
    field: Any = None,
    periodic: bool = True,
) -> None:
    """Nearest-neighbour ``q``-state Potts model: site ``"s"`` on ``{0, …, q-1}^shape``.

    The site declares its Gibbs colours and its lattice (``infer={"lattice":
    ebm.Lattice.potts(...)}``): ``ebm.sample(kernel="gibbs")`` runs the compact checkerboard
    heat bath on an ``L x L`` torus with ``L`` even (a field of shape ``(q,)`` or none), and
    ``kernel="swendsen_wang"`` Swendsen–Wang cluster updates on any periodic 2-D lattice.

    Args:
        shape: lattice shape (int or tuple), e.g. ``(64, 64)``.
        num_states: ``q >= 2``.
        beta: inverse temperature ``1/T``.
        coupling: ``J`` (> 0 ferromagnetic).
        field: ``h`` of shape ``(q,)`` or ``(*shape, q)``, or ``None``.
        periodic: torus (``True``) or open boundaries.

    Raises:
        ValueError: ``num_states < 2`` or a field of the wrong shape.

    Examples:
        >>> import ebm_ppl as ebm
        >>> spec = ebm.EnergyModel(model, (4, 4), 3).plan["s"]
        >>> spec.kind, spec.num_states
        ('categorical', 3)
    """
    shape = _as_shape(shape)
    q = _check_num_states(num_states)
    _check_field(field, shape, q)
    # the declared lattice lets ebm.sample run the compact heat bath and Swendsen–Wang
    lattice = Lattice.potts(shape, q, beta=beta, coupling=coupling, field=field, periodic=periodic)
    infer = {"blocks": blocks(shape, periodic), "lattice": lattice}
    s = numpyro.sample("s", base_measure(shape, q), infer=infer)
    declare_energy("E", energy(s, q, beta=beta, coupling=coupling, field=field, periodic=periodic))


def ordered_state(shape: Any, num_chains: int | None = None, value: int = 0) -> Any:
    """All-``value`` states (the ordered start below ``T_c``), optionally with a chain axis.

    Examples:
        >>> ordered_state((2, 2), num_chains=3).shape
        (3, 2, 2)
    """
    shape = _as_shape(shape)
    full = shape if num_chains is None else (int(num_chains), *shape)
    return jnp.full(full, value, dtype=jnp.int32)


def magnetization(s: Any, num_states: int, axis: Any = None) -> Any:
    """Potts order parameter ``m = (q max_k n_k - 1) / (q - 1)``, ``n_k`` the state fractions.

    ``m = 1`` in an ordered state and ``m → 0`` (like ``1/√N``) when disordered.

    Args:
        s: states; the fractions are taken over ``axis`` (default: all axes).
        num_states: ``q``.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(magnetization(jnp.zeros((4, 4)), 3))
        1.0
    """
    x = _one_hot(s, num_states)
    if axis is None:
        axis = tuple(range(jnp.ndim(s)))
    frac = jnp.mean(x, axis=axis)
    return (num_states * jnp.max(frac, axis=-1) - 1.0) / (num_states - 1.0)


def binder_cumulant(m: Any) -> Any:
    """Binder cumulant ``U = 1 - ⟨m⁴⟩ / (3 ⟨m²⟩²)`` of magnetization samples ``m``.

    Curves of ``U(T)`` for two sizes cross near ``T_c`` (the size dependence vanishes there).

    Examples:
        >>> import numpy as np
        >>> round(float(binder_cumulant(np.ones(10))), 6)   # a perfectly ordered phase
        0.666667
    """
    m = np.asarray(m, dtype=np.float64)
    return 1.0 - np.mean(m**4) / (3.0 * np.mean(m**2) ** 2)


def critical_temperature(num_states: int, coupling: float = 1.0) -> float:
    """``T_c = J / ln(1 + √q)`` of the square-lattice Potts model (self-duality).

    Examples:
        >>> round(critical_temperature(3), 9)
        0.994972861
    """
    q = _check_num_states(num_states)
    return coupling / math.log(1.0 + math.sqrt(q))


def critical_energy(num_states: int, coupling: float = 1.0) -> float:
    """Energy per site at ``T_c``, ``u_c = -J (1 + 1/√q)`` (``E = -J Σ_<ij> δ``, square lattice).

    Self-duality maps the bond-agreement density at ``β`` to the one at the dual point; at the
    fixed point ``e^{β_c J} - 1 = √q`` it gives ``⟨δ⟩ = (1 + 1/√q)/2`` per bond, two bonds per
    site. For ``q <= 4`` the transition is continuous and this is the energy; for ``q >= 5`` it is
    the midpoint of the two coexisting branches.

    Examples:
        >>> critical_energy(4)
        -1.5
    """
    q = _check_num_states(num_states)
    return -coupling * (1.0 + 1.0 / math.sqrt(q))


def ising_log_z_shift(
    shape: Any, beta: float, coupling: float = 1.0, periodic: bool = True
) -> float:
    """``ln Z_Potts(q=2, β) - ln Z_Ising(β/2)``: ``β J N_bonds / 2``.

    ``δ(σ_i, σ_j) = (1 + s_i s_j) / 2`` with ``s = 2σ - 1``, so the ``q = 2`` Potts energy is
    the Ising energy at ``β/2`` minus ``β J N_bonds / 2``.

    Examples:
        >>> ising_log_z_shift((4, 4), 1.0)   # 32 bonds
        16.0
    """
    shape = _as_shape(shape)
    if periodic:
        bonds = len(shape) * math.prod(shape)
    else:
        bonds = sum(math.prod(shape) // n * (n - 1) for n in shape)
    return beta * coupling * bonds / 2.0


# ----------------------------------------------------------------------------- couplings
def symmetrize(J: Any) -> Any:
    """The effective couplings: ``J[i, j]`` for ``i < j`` and its transpose ``J[j, i] = J[i, j]ᵀ``.

    Only the strict upper triangle of pairs is read; diagonal blocks become zero.

    Args:
        J: ``(n, n, q, q)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> J = jnp.zeros((2, 2, 2, 2)).at[0, 1, 0, 1].set(1.0).at[1, 0].set(5.0)
        >>> symmetrize(J)[1, 0].tolist()
        [[0.0, 0.0], [1.0, 0.0]]
    """
    J = jnp.asarray(J)
    n = J.shape[0]
    upper = J * jnp.triu(jnp.ones((n, n), J.dtype), 1)[:, :, None, None]
    return upper + jnp.transpose(upper, (1, 0, 3, 2))


def couplings_energy(J: Any, h: Any, s: Any) -> Any:
    """``-Σ_{i<j} J_ij(σ_i, σ_j) - Σ_i h_i(σ_i)`` for one state ``s`` of shape ``(n,)``.

    Args:
        J: ``(n, n, q, q)`` couplings (only pairs ``i < j`` are read, see :func:`symmetrize`).
        h: ``(n, q)`` fields.
        s: ``(n,)`` states in ``{0, …, q-1}``.

    Examples:
        >>> import jax.numpy as jnp
        >>> J = jnp.zeros((2, 2, 2, 2)).at[0, 1, 1, 1].set(2.0)
        >>> float(couplings_energy(J, jnp.zeros((2, 2)), jnp.array([1, 1])))
        -2.0
    """
    J = jnp.asarray(J)
    q = J.shape[-1]
    x = _one_hot(s, q)
    Js = symmetrize(J)
    return -0.5 * jnp.einsum("ia,ijab,jb->", x, Js, x) - jnp.sum(x * h)


def _check_couplings(J: Any, h: Any) -> tuple[int, int]:
    try:
        Jc = np.asarray(J, dtype=np.float64)
        hc = np.asarray(h, dtype=np.float64)
    except Exception:  # noqa: BLE001  (traced values are not checkable)
        shape = tuple(np.shape(J))
        return shape[0], shape[-1]
    if Jc.ndim != 4 or Jc.shape[0] != Jc.shape[1] or Jc.shape[2] != Jc.shape[3]:
        raise ValueError(f"J must have shape (n, n, q, q), got {Jc.shape}")
    n, q = Jc.shape[0], Jc.shape[2]
    _check_num_states(q, "J.shape[-1] (num_states)")
    if hc.shape != (n, q):
        raise ValueError(f"h must have shape (n, q) = {(n, q)}, got {hc.shape}")
    if not np.allclose(Jc, np.transpose(Jc, (1, 0, 3, 2))):
        raise ValueError("J must be symmetric: J[i, j, a, b] == J[j, i, b, a]")
    if np.any(Jc[np.arange(n), np.arange(n)] != 0):
        raise ValueError("J must have zero diagonal blocks (J[i, i] == 0)")
    return n, q


def _coupling_blocks(J: Any, n: int) -> np.ndarray:
    try:
        pattern = np.any(np.asarray(symmetrize(J)) != 0, axis=(2, 3))
    except Exception:  # noqa: BLE001  (traced couplings: one unit per block)
        return np.arange(n, dtype=np.int32)
    return greedy_colouring(pattern).astype(np.int32)


def couplings_model(J: Any, h: Any) -> None:
    """Potts model with general pairwise couplings (a Potts Boltzmann machine), site ``"s"``.

    ``E(σ) = -Σ_{i<j} J_ij(σ_i, σ_j) - Σ_i h_i(σ_i)`` on ``{0, …, q-1}^n``; blocks are a greedy
    colouring of the coupling graph.

    Args:
        J: ``(n, n, q, q)``, symmetric (``J[i, j, a, b] == J[j, i, b, a]``) with zero diagonal
            blocks; each pair counted once.
        h: ``(n, q)``.

    Raises:
        ValueError: concrete ``J``/``h`` of the wrong shapes, or ``J`` not symmetric.

    Examples:
        >>> import jax.numpy as jnp, ebm_ppl as ebm
        >>> J = jnp.zeros((3, 3, 4, 4))
        >>> ebm.EnergyModel(couplings_model, J, jnp.zeros((3, 4))).plan["s"].num_states
        4
    """
    n, q = _check_couplings(J, h)
    s = numpyro.sample("s", base_measure(n, q), infer={"blocks": _coupling_blocks(J, n)})
    declare_energy("E", couplings_energy(J, h, s))


def boltzmann_model(num_units: int, num_states: int) -> None:
    """:func:`couplings_model` with learnable parameters ``"J"`` ``(n, n, q, q)`` and ``"h"`` ``(n, q)``.

    ``J`` starts at zero and only its pairs ``i < j`` are read (:func:`symmetrize`); every unit
    is its own Gibbs block (a systematic scan).

    Examples:
        >>> import jax, ebm_ppl as ebm
        >>> p = ebm.EnergyModel(boltzmann_model, 5, 3).init_params(jax.random.PRNGKey(0))
        >>> p["J"].shape, p["h"].shape
        ((5, 5, 3, 3), (5, 3))
    """
    n = int(num_units)
    if n < 1:
        raise ValueError(f"num_units must be >= 1, got {num_units}")
    q = _check_num_states(num_states)
    J = numpyro.param("J", jnp.zeros((n, n, q, q)))
    h = numpyro.param("h", jnp.zeros((n, q)))
    s = numpyro.sample("s", base_measure(n, q), infer={"blocks": np.arange(n, dtype=np.int32)})
    declare_energy("E", couplings_energy(J, h, s))


def zero_sum_gauge(J: Any, h: Any) -> tuple[Any, Any]:
    """Couplings in the zero-sum (Ising) gauge: the same distribution, unique representatives.

    ``J'_ij(a, b) = J_ij(a, b) - J_ij(a, ·) - J_ij(·, b) + J_ij(·, ·)`` (``·`` a mean over
    states) and ``h'_i(a) = h_i(a) + Σ_{j≠i} J_ij(a, ·)``, centred over ``a``. The energy changes
    by a constant only, so probabilities are unchanged; two coupling sets define the same model
    exactly when their zero-sum forms are equal.

    Args:
        J: ``(n, n, q, q)`` (pairs ``i < j`` read, see :func:`symmetrize`).
        h: ``(n, q)``.

    Returns:
        ``(J', h')``, ``J'`` symmetric with zero diagonal blocks.

    Examples:
        >>> import jax.numpy as jnp
        >>> J = jnp.zeros((2, 2, 2, 2)).at[0, 1].set(jnp.ones((2, 2)))   # a constant coupling
        >>> Jz, hz = zero_sum_gauge(J, jnp.zeros((2, 2)))
        >>> float(jnp.abs(Jz).max()), float(jnp.abs(hz).max())
        (0.0, 0.0)
    """
    Js = symmetrize(J)
    row = jnp.mean(Js, axis=3, keepdims=True)  # J_ij(a, ·)
    col = jnp.mean(Js, axis=2, keepdims=True)  # J_ij(·, b)
    both = jnp.mean(Js, axis=(2, 3), keepdims=True)
    Jz = Js - row - col + both
    hz = jnp.asarray(h) + jnp.sum(row[..., 0], axis=1)  # diagonal blocks are zero
    hz = hz - jnp.mean(hz, axis=1, keepdims=True)
    return Jz, hz


def random_couplings(
    rng_key: Any, num_units: int, num_states: int, *, scale: float = 0.5, field_scale: float = 0.5
) -> tuple[Any, Any]:
    """Random symmetric couplings ``J_ij(a, b) ~ N(0, scale²)`` and fields ``~ N(0, field_scale²)``.

    Returns:
        ``(J, h)`` of shapes ``(n, n, q, q)`` (symmetric, zero diagonal blocks) and ``(n, q)``.

    Examples:
        >>> import jax
        >>> J, h = random_couplings(jax.random.PRNGKey(0), 4, 3)
        >>> bool((J == J.transpose(1, 0, 3, 2)).all()), h.shape
        (True, (4, 3))
    """
    n, q = int(num_units), _check_num_states(num_states)
    kJ, kh = jax.random.split(rng_key)
    J = symmetrize(scale * jax.random.normal(kJ, (n, n, q, q)))
    h = field_scale * jax.random.normal(kh, (n, q))
    return J, h


def _all_states(num_units: int, num_states: int) -> Any:
    index = jnp.arange(num_states**num_units, dtype=jnp.int32)
    powers = num_states ** jnp.arange(num_units, dtype=jnp.int32)
    return (index[:, None] // powers) % num_states


def exact_samples(rng_key: Any, J: Any, h: Any, num_samples: int) -> Any:
    """Exact draws from :func:`couplings_model` by enumerating all ``q^n`` states (``q^n <= 2^24``).

    Returns:
        int32 array ``(num_samples, n)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> J = jnp.zeros((3, 3, 2, 2)); h = jnp.zeros((3, 2)).at[:, 1].set(30.0)
        >>> exact_samples(jax.random.PRNGKey(0), J, h, 2).tolist()
        [[1, 1, 1], [1, 1, 1]]
    """
    J = jnp.asarray(J)
    n, q = J.shape[0], J.shape[-1]
    if q**n > 2**24:
        raise ValueError(f"q^n = {q}^{n} states are too many to enumerate (> 2^24)")
    states = _all_states(n, q)
    log_p = -jax.vmap(lambda s: couplings_energy(J, h, s))(states)
    # inverse CDF (Gumbel-max would draw num_samples x q^n noise)
    cdf = jnp.cumsum(jax.nn.softmax(log_p))
    u = jax.random.uniform(rng_key, (int(num_samples),), cdf.dtype) * cdf[-1]
    index = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), states.shape[0] - 1)
    return states[index]
