"""Declared nearest-neighbour lattices: what lets ``sample`` run the compact lattice kernels.

A model whose energy is exactly a nearest-neighbour Ising or Potts energy on a lattice says so
on its state site, the NumPyro way (as ``infer={"enumerate": ...}`` declares enumeration)::

    s = numpyro.sample("s", ebm.Spins(shape),
                       infer={"blocks": colours, "lattice": ebm.Lattice.ising(shape, beta=beta)})

The site plan records the declaration (:attr:`~ebm_ppl.energy.plan.SiteSpec.lattice`);
``ebm.sample(kernel="gibbs")`` then runs the compact checkerboard heat bath and
``kernel="swendsen_wang"`` the Swendsen–Wang cluster kernel on it. ``beta``, ``coupling`` and
``field`` may be ``numpyro.param`` values: the kernels read them from the model at the current
parameters. Before a chain is compiled, :meth:`Lattice.energy` is compared with the model's own
energy at a few states, so a declaration that does not match the energy (e.g. an added term)
is refused rather than sampled wrongly.

Examples:
    >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
    >>> def ising(shape=(4, 4), beta=0.4):
    ...     lat = ebm.Lattice.ising(shape, beta=beta)
    ...     s = numpyro.sample("s", ebm.Spins(shape), infer={"lattice": lat})
    ...     ebm.energy("E", lat.energy(s))
    >>> spec = ebm.EnergyModel(ising).plan["s"]
    >>> spec.lattice.kind, spec.lattice.shape, spec.lattice.num_states
    ('ising', (4, 4), 2)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["Lattice"]

_KINDS = ("ising", "potts")


def _shape_of(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        out = tuple(int(n) for n in shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if not out or min(out) < 1:
        raise ValueError(f"shape must have positive sides, got {shape!r}")
    return out


def _scalar(name: str, value: Any) -> Any:
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
    return value


class Lattice(NamedTuple):
    """A nearest-neighbour Ising or Potts energy, declared on a state site.

    ``"ising"`` (``s ∈ {-1, +1}``): ``E = β(-J Σ_<ij> s_i s_j - Σ_i h_i s_i)``;
    ``"potts"`` (``σ ∈ {0, …, q-1}``): ``E = -β J Σ_<ij> δ(σ_i, σ_j) - β Σ_i h_i[σ_i]``; each
    bond counted once (on a periodic axis of length 2 the two bonds of a pair both count, as
    ``jnp.roll`` counts them). Build it with :meth:`ising` or :meth:`potts` (they check their
    arguments) and put it in the site's ``infer`` dict under ``"lattice"``.

    Attributes:
        kind: ``"ising"`` or ``"potts"``.
        shape: the lattice's shape (the site's shape).
        num_states: ``q`` (2 for Ising).
        beta: ``β`` (a scalar; may be a ``numpyro.param`` value).
        coupling: ``J`` (a scalar; may be a parameter).
        field: Ising: ``h``, a scalar or an array of the lattice's shape; Potts: ``None``, or
            ``(q,)``, or ``(*shape, q)``; may be a parameter.
        periodic: torus (``True``) or open boundaries.

    Examples:
        >>> import jax.numpy as jnp
        >>> lat = Lattice.potts((3, 3), 3, beta=0.5)
        >>> float(lat.energy(jnp.zeros((3, 3), jnp.int32)))   # 18 satisfied bonds
        -9.0
    """

    kind: str
    shape: tuple[int, ...]
    num_states: int
    beta: Any = 1.0
    coupling: Any = 1.0
    field: Any = None
    periodic: bool = True

    @classmethod
    def ising(
        cls,
        shape: Any,
        *,
        beta: Any = 1.0,
        coupling: Any = 1.0,
        field: Any = 0.0,
        periodic: bool = True,
    ) -> Lattice:
        """The Ising lattice ``β(-J Σ_<ij> s_i s_j - h Σ_i s_i)`` on ``s ∈ {-1, +1}^shape``.

        Raises:
            ValueError, TypeError: a bad shape, non-scalar ``beta``/``coupling``, a field that
                is neither a scalar nor of the lattice's shape.

        Examples:
            >>> import jax.numpy as jnp
            >>> float(Lattice.ising((4, 4), beta=0.5).energy(jnp.ones((4, 4))))
            -16.0
        """
        shape = _shape_of(shape)
        field = 0.0 if field is None else field
        if np.ndim(field) != 0 and tuple(np.shape(field)) != shape:
            raise ValueError(
                f"field must be a scalar or have the lattice's shape {shape}, got {np.shape(field)}"
            )
        return cls(
            "ising",
            shape,
            2,
            _scalar("beta", beta),
            _scalar("coupling", coupling),
            field,
            bool(periodic),
        )

    @classmethod
    def potts(
        cls,
        shape: Any,
        num_states: int,
        *,
        beta: Any = 1.0,
        coupling: Any = 1.0,
        field: Any = None,
        periodic: bool = True,
    ) -> Lattice:
        """The ``q``-state Potts lattice ``-β J Σ_<ij> δ(σ_i, σ_j) - β Σ_i h_i[σ_i]``.

        Raises:
            ValueError, TypeError: a bad shape, ``num_states < 2``, non-scalar
                ``beta``/``coupling``, a field not of shape ``(q,)`` or ``(*shape, q)``.

        Examples:
            >>> Lattice.potts((4, 4), 3).num_states
            3
        """
        shape = _shape_of(shape)
        if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)):
            raise TypeError(f"num_states must be an int >= 2, got {num_states!r}")
        q = int(num_states)
        if q < 2:
            raise ValueError(f"num_states must be >= 2, got {num_states}")
        if field is not None and tuple(np.shape(field)) not in ((q,), (*shape, q)):
            raise ValueError(
                f"field must have shape ({q},) or {(*shape, q)} (one value per state, "
                f"optionally per site), got {np.shape(field)}"
            )
        return cls(
            "potts",
            shape,
            q,
            _scalar("beta", beta),
            _scalar("coupling", coupling),
            field,
            bool(periodic),
        )

    @property
    def num_bonds(self) -> int:
        """Number of nearest-neighbour bonds (each counted once).

        Examples:
            >>> Lattice.ising((4, 4)).num_bonds, Lattice.ising((4, 4), periodic=False).num_bonds
            (32, 24)
        """
        size = math.prod(self.shape)
        if self.periodic:
            return len(self.shape) * size
        return sum(size // n * (n - 1) for n in self.shape)

    def _pairs(self, x: Any) -> Any:
        """Σ over bonds of ``x_i * x_j`` (``x`` with the lattice's shape leading)."""
        total: Any = 0.0
        for axis in range(len(self.shape)):
            if self.periodic:
                total = total + jnp.sum(x * jnp.roll(x, -1, axis=axis))
            else:
                n = self.shape[axis]
                a = jnp.take(x, jnp.arange(n - 1), axis=axis)
                b = jnp.take(x, jnp.arange(1, n), axis=axis)
                total = total + jnp.sum(a * b)
        return total

    def energy(self, s: Any) -> Any:
        """The declared energy of one configuration ``s`` of the lattice's shape.

        Examples:
            >>> import jax.numpy as jnp
            >>> float(Lattice.ising((3, 3), periodic=False).energy(jnp.ones((3, 3))))
            -12.0
        """
        ftype = jnp.result_type(float)
        if self.kind == "ising":
            s = jnp.asarray(s, ftype)
            h = jnp.asarray(self.field, ftype)
            return self.beta * (-self.coupling * self._pairs(s) - jnp.sum(h * s))
        x = (jnp.asarray(s, jnp.int32)[..., None] == jnp.arange(self.num_states)).astype(ftype)
        e = -self.beta * self.coupling * self._pairs(x)
        if self.field is not None:
            e = e - self.beta * jnp.sum(x * jnp.asarray(self.field, ftype))
        return e
