"""The lattice kernels behind the one kernel interface, for sites that declare their lattice.

The compact checkerboard heat bath (:mod:`ebm_ppl.kernels.lattice`: an ``(L, L/2)`` array per
colour, each colour's units updated from the other colour's array only) and Swendsen–Wang
(:mod:`ebm_ppl.kernels.cluster`) take ``β``, ``J`` and ``h`` rather than an energy function.
Here they become ``init(position, energy_fn)``/``step(rng_key, state, energy_fn, ...)`` pairs
(:func:`build`) whose ``energy_fn`` is a :class:`LatticeEnergy`: a callable pytree that
carries the lattice's current parameters (dynamic leaves, so a new ``β`` reuses the compiled
step) and evaluates the lattice energy of a position dict. :class:`CompactState` keeps the
kernel's own state and gives the site's full lattice, in the site's dtype, as ``position``
(computed when read, so the chain itself stays in the compact layout).
:func:`ebm_ppl.kernels.resolve.resolve_kernel` builds them (``compact=True``, or
``kernel="swendsen_wang"``) from the site plan's declaration.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> init, step = build("gibbs", "ising", site="s", num_states=2, dtype=jnp.float32)
    >>> energy_fn = LatticeEnergy("s", "ising", 2, beta=0.4)
    >>> state = init({"s": jnp.ones((4, 4))}, energy_fn)
    >>> state, info = jax.jit(step)(jax.random.PRNGKey(0), state, energy_fn)
    >>> state.position["s"].shape, str(state.position["s"].dtype), state.inner.black.shape
    ((4, 4), 'float32', (4, 2))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.kernels import cluster, lattice
from ebm_ppl.kernels.lattice import from_compact  # batch axes kept; re-exported here

__all__ = ["CompactState", "LatticeEnergy", "build", "check", "from_compact"]

METHODS = ("gibbs", "swendsen_wang")


@jax.tree_util.register_pytree_node_class
class LatticeEnergy:
    """The energy of a declared periodic lattice, with its parameters as pytree leaves.

    ``E = β(-J Σ_<ij> s_i s_j - h Σ_i s_i)`` (Ising, ``s = ±1``) or
    ``E = -β J Σ_<ij> δ(σ_i, σ_j) - β Σ_i h[σ_i]`` (Potts) on the torus, each bond once.

    Args:
        site: the lattice's site in a position dict.
        kind: ``"ising"`` or ``"potts"`` (static).
        num_states: ``q`` (static; 2 for Ising).
        beta, coupling: ``β``, ``J`` (scalars, dynamic).
        field: Ising: a scalar ``h``; Potts: ``None``, ``(q,)`` or ``(n, m, q)`` (dynamic).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(LatticeEnergy("s", "potts", 3, beta=0.5)({"s": jnp.zeros((3, 3), jnp.int32)}))
        -9.0
    """

    def __init__(
        self,
        site: str,
        kind: str,
        num_states: int,
        beta: Any,
        coupling: Any = 1.0,
        field: Any = None,
    ):
        self.site, self.kind, self.num_states = site, kind, num_states
        self.beta, self.coupling, self.field = beta, coupling, field

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return (self.beta, self.coupling, self.field), (self.site, self.kind, self.num_states)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> LatticeEnergy:
        return cls(*aux, *children)

    @property
    def ising_field(self) -> Any:
        """``h`` of an Ising lattice (0 when none is declared)."""
        return 0.0 if self.field is None else self.field

    def __call__(self, position: Any) -> jax.Array:
        s = position[self.site]
        if self.kind == "ising":
            s = jnp.asarray(s, jnp.result_type(float))
            return cluster.ising_energy(s, self.beta, self.coupling, self.ising_field)
        return cluster.potts_energy(s, self.beta, self.coupling, self.field)


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["inner"], meta_fields=["site", "dtype"]
)
@dataclasses.dataclass(frozen=True)
class CompactState:
    """A lattice kernel's own state (``inner``) seen as a position dict of one site.

    Attributes:
        inner: :class:`~ebm_ppl.kernels.lattice.LatticeState`,
            :class:`~ebm_ppl.kernels.lattice.PottsState` or
            :class:`~ebm_ppl.kernels.cluster.ClusterState`.
        site: the site's name (static).
        dtype: the site's dtype (static, a NumPy dtype name).

    Examples:
        >>> import jax.numpy as jnp
        >>> st = CompactState(lattice.init(jnp.ones((2, 2)), beta=1.0), "s", "float32")
        >>> st.position["s"].tolist(), float(st.energy)
        ([[1.0, 1.0], [1.0, 1.0]], -8.0)
    """

    inner: Any
    site: str
    dtype: str

    @property
    def position(self) -> dict[str, jax.Array]:
        """``{site: lattice}`` in the site's dtype (leading batch axes kept)."""
        inner = self.inner
        full = from_compact(inner.black, inner.white) if hasattr(inner, "black") else inner.s
        return {self.site: full.astype(self.dtype)}

    @property
    def energy(self) -> jax.Array:
        """The configuration's energy, tracked by the kernel."""
        return self.inner.energy


def check(method: str, declared: Any) -> None:
    """Refuse a declared lattice the kernel ``method`` cannot run, with the kernels' own checks.

    ``"gibbs"`` (the compact heat bath): a periodic ``L x L`` lattice with ``L`` even; Ising:
    a scalar field; Potts: a field ``None`` or ``(q,)``. ``"swendsen_wang"``: a periodic
    two-dimensional lattice; Ising: a scalar field; Potts: a field ``None``, ``(q,)`` or
    ``(n, m, q)``; ``β J >= 0`` when concrete.

    Args:
        method: ``"gibbs"`` or ``"swendsen_wang"``.
        declared: the declaration (``kind``, ``shape``, ``num_states``, ``beta``,
            ``coupling``, ``field``, ``periodic``; :class:`ebm_ppl.Lattice`).

    Raises:
        ValueError: naming what the kernel needs.

    Examples:
        >>> from types import SimpleNamespace as NS
        >>> check("gibbs", NS(kind="ising", shape=(3, 3), num_states=2, beta=1.0, coupling=1.0,
        ...                   field=0.0, periodic=True))
        Traceback (most recent call last):
        ...
        ValueError: the compact layout needs an L x L lattice with L even, got (3, 3)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    what = "the compact heat bath" if method == "gibbs" else "the Swendsen–Wang kernel"
    shape = tuple(declared.shape)
    if not declared.periodic:
        raise ValueError(f"{what} needs a periodic lattice (a torus), got open boundaries")
    if method == "gibbs":
        lattice._check_shape(shape)
    else:
        cluster._check_shape(shape)
    if declared.kind == "ising":
        if np.ndim(declared.field) != 0:
            raise ValueError(
                f"{what} needs a scalar Ising field, got one of shape {np.shape(declared.field)}"
            )
    elif method == "gibbs":
        lattice._check_potts(int(declared.num_states), declared.field)
    else:
        cluster._check_field(declared.field, shape, int(declared.num_states), "field")
    if method == "swendsen_wang":
        cluster._check_coupling(declared.beta, declared.coupling)


def build(
    method: str,
    kind: str,
    *,
    site: str,
    num_states: int,
    dtype: Any,
    uniform_bits: int = 32,
) -> tuple[Callable[..., CompactState], Callable[..., tuple[CompactState, Any]]]:
    """``(init, step)`` of the compact heat bath or Swendsen–Wang on one lattice site.

    ``init(position, energy_fn) -> CompactState`` and ``step(rng_key, state, energy_fn,
    step_size=None, inverse_mass_matrix=None) -> (CompactState, info)``, with ``energy_fn`` a
    :class:`LatticeEnergy` (its ``β``, ``J``, ``h`` are the step's dynamic arguments;
    ``step_size`` and the mass are ignored). ``info`` is
    :class:`~ebm_ppl.kernels.gibbs.GibbsInfo` (heat bath) or
    :class:`~ebm_ppl.kernels.cluster.ClusterInfo`. Ising spins are kept as ``int8`` by the heat
    bath; draws come back in ``dtype``.

    Args:
        method: ``"gibbs"`` or ``"swendsen_wang"``.
        kind: ``"ising"`` or ``"potts"``.
        site: the site's name.
        num_states: ``q`` (2 for Ising).
        dtype: the site's dtype (what ``state.position`` gives back).
        uniform_bits: heat bath only: ``32`` or ``16`` (see
            :func:`ebm_ppl.kernels.lattice.build_kernel`).

    Raises:
        ValueError: an unknown method or kind.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> init, step = build("swendsen_wang", "potts", site="c", num_states=3, dtype="int32")
        >>> energy_fn = LatticeEnergy("c", "potts", 3, beta=1.0)
        >>> st, info = step(jax.random.PRNGKey(0), init({"c": jnp.zeros((3, 3), jnp.int32)},
        ...                 energy_fn), energy_fn)
        >>> st.position["c"].dtype.name, bool(st.energy == energy_fn(st.position))
        ('int32', True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if kind not in ("ising", "potts"):
        raise ValueError(f"kind must be 'ising' or 'potts', got {kind!r}")
    dtype = np.dtype(dtype).name
    q = int(num_states)
    transition: Callable[..., Any]
    if method == "gibbs" and kind == "ising":
        transition = lattice.build_kernel(uniform_bits=uniform_bits)

        def init_inner(s, e):
            return lattice.init(s, beta=e.beta, coupling=e.coupling, field=e.ising_field)

        def step_inner(key, inner, e):
            return transition(key, inner, e.beta, e.coupling, e.ising_field)

    elif method == "gibbs":
        transition = lattice.build_potts_kernel(q, uniform_bits=uniform_bits)

        def init_inner(s, e):
            return lattice.potts_init(s, q, beta=e.beta, coupling=e.coupling, field=e.field)

        def step_inner(key, inner, e):
            return transition(key, inner, e.beta, e.coupling, e.field)

    elif kind == "ising":
        transition = cluster.build_ising_kernel()

        def init_inner(s, e):
            s = jnp.asarray(s, jnp.result_type(float))
            return cluster.ising_init(s, beta=e.beta, coupling=e.coupling, field=e.ising_field)

        def step_inner(key, inner, e):
            return transition(key, inner, e.beta, e.coupling, e.ising_field)

    else:
        transition = cluster.build_kernel(q)

        def init_inner(s, e):
            return cluster.init(s, q, beta=e.beta, coupling=e.coupling, field=e.field)

        def step_inner(key, inner, e):
            return transition(key, inner, e.beta, e.coupling, e.field)

    def init(position: Any, energy_fn: LatticeEnergy) -> CompactState:
        return CompactState(init_inner(position[site], energy_fn), site, dtype)

    def step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None):
        del step_size, inverse_mass_matrix
        inner, info = step_inner(rng_key, state.inner, energy_fn)
        return CompactState(inner, state.site, state.dtype), info

    return init, step
