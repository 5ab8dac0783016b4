"""The site plan: one analysis of an EBM program, read by every sampler, objective and estimator.

:class:`SitePlan` is derived once from a prototype trace of the model (by
:class:`~ebm_ppl.EnergyModel`). For every site it records

* its **role**: ``"state"`` (sampled), ``"data"`` (observed in the program), ``"param"``
  (``numpyro.param``, including ``numpyro.contrib.module`` networks) or ``"energy"`` (a factor);
  which state sites are *latent* depends on which are bound to data (:meth:`SitePlan.latent_sites`);
* its **kind**: ``"continuous"`` (with its constraint and the bijection to the unconstrained
  space), ``"binary"``, ``"categorical"`` (finite supports ``{0, ..., q-1}``), ``"discrete"`` (other
  discrete supports, e.g. Poisson: no kernel here moves them), ``"array"`` or ``"module"`` for
  parameters (a module's parameters are one pytree), ``"energy"``;
* its **shape**, the **dtype** the model declares (``int32`` for NumPyro's ``Bernoulli``/
  ``Categorical``, float for ``Spins``/``Bits``/``Flat``), its **plates** and declared
  conditional-independence **blocks** (``infer={"blocks": colours}``).

The plan also validates what users pass (:meth:`SitePlan.validate_params`,
:meth:`SitePlan.validate_values`: unknown or missing sites, shapes, dtypes, supports, finiteness;
a ``ValueError``/``TypeError`` naming the site, before anything compiles), maps parameters to and
from their unconstrained space (:meth:`SitePlan.unconstrain_params`), and casts discrete values
between the model's dtype and the float values kernels work on (:meth:`SitePlan.to_kernel`,
:meth:`SitePlan.from_kernel`), once, at the boundary.

Examples:
    >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist, ebm_ppl as ebm
    >>> def m():
    ...     scale = numpyro.param("scale", 1.0, constraint=dist.constraints.positive)
    ...     x = numpyro.sample("x", ebm.Flat(2))
    ...     b = numpyro.sample("b", dist.Bernoulli(0.5).expand([3]))
    ...     ebm.energy("E", jnp.sum(x**2) / scale - jnp.sum(b) * x[0])
    >>> plan = ebm.EnergyModel(m).plan
    >>> plan["x"].kind, plan["b"].kind, plan["b"].support_values, str(plan["b"].dtype)
    ('continuous', 'binary', (0.0, 1.0), 'int32')
    >>> float(plan.unconstrain_params({"scale": jnp.exp(1.0)})["scale"])
    1.0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.distribution import ExpandedDistribution, MaskedDistribution, Unit
from numpyro.distributions.transforms import biject_to

from ebm_ppl.energy.base import Categorical

__all__ = ["SitePlan", "SiteSpec", "as_param_array", "is_concrete"]

ROLES = ("state", "data", "param", "energy")
KINDS = ("continuous", "binary", "categorical", "discrete", "array", "module", "energy")


def is_concrete(x: Any) -> bool:
    """Whether every leaf of ``x`` is a concrete value (not traced inside ``jit``/``grad``)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def _unwrap(fn: Any) -> Any:
    while isinstance(fn, (ExpandedDistribution, MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _base_constraint(c: Any) -> Any:
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    return c


def _is_array_like(value: Any) -> bool:
    return hasattr(value, "shape") or isinstance(value, (int, float, bool, np.number))


def _finite_support(fn: Any) -> tuple[float, ...] | None:
    """The per-unit support values of an enumerable distribution (same for every unit)."""
    base = _unwrap(fn)
    if not getattr(base, "has_enumerate_support", False):
        return None
    try:
        # concrete even while an enclosing function is traced (the plan is static)
        with jax.ensure_compile_time_eval():
            values = np.asarray(base.enumerate_support(expand=False))
    except Exception:  # noqa: BLE001  (not enumerable at these parameters)
        return None
    if values.ndim == 0 or values.shape[0] == 0:
        return None
    flat = values.reshape(values.shape[0], -1)
    if flat.shape[1] > 1 and not np.all(flat == flat[:, :1]):
        return None  # units with different supports: not one finite kind
    return tuple(float(v) for v in np.sort(flat[:, 0]))


def _declared_categorical(fn: Any) -> bool:
    return isinstance(_unwrap(fn), Categorical)


@dataclasses.dataclass(frozen=True)
class SiteSpec:
    """What the plan knows about one site.

    Attributes:
        name: site name.
        role: ``"state"``, ``"data"``, ``"param"`` or ``"energy"``.
        kind: ``"continuous"``, ``"binary"``, ``"categorical"``, ``"discrete"`` (state and data
            sites), ``"array"``/``"module"`` (parameters) or ``"energy"``.
        shape: shape of one value (plates' batch shape + event shape); ``()`` for modules.
        dtype: dtype of the values the model declares (a NumPy dtype; ``None`` for modules).
        support: NumPyro constraint (``None`` for energy terms and modules).
        support_values: the finite support of one unit, sorted (binary and categorical kinds).
        plates: ``(name, size, dim)`` of each enclosing plate.
        blocks: declared colours (``infer={"blocks": ...}``) or ``None``.
        dist: the site's distribution as traced (base measure of a state site).
        template: for modules, the pytree of parameters at the prototype (structure and leaf
            shapes a value must match).
        lattice: a declared nearest-neighbour lattice (``infer={"lattice": ebm.Lattice...}``,
            :class:`~ebm_ppl.energy.lattice.Lattice`) or ``None``: kind, shape, periodic,
            number of states and ``beta``/``coupling``/``field`` as traced at the prototype
            (kernels read the current values from the model).

    Examples:
        >>> import numpyro, ebm_ppl as ebm
        >>> def m():
        ...     ebm.energy("E", numpyro.sample("s", ebm.Spins((2, 2))).sum())
        >>> spec = ebm.EnergyModel(m).plan["s"]
        >>> spec.role, spec.kind, spec.shape, spec.levels, spec.size
        ('state', 'binary', (2, 2), (-1.0, 1.0), 4)
    """

    name: str
    role: str
    kind: str
    shape: tuple[int, ...]
    dtype: Any
    support: Any
    support_values: tuple[float, ...] | None = None
    plates: tuple[tuple[str, int, int], ...] = ()
    blocks: Any = None
    dist: Any = None
    template: Any = None
    lattice: Any = None

    @property
    def is_discrete(self) -> bool:
        """Whether the site has a discrete support."""
        return self.kind in ("binary", "categorical", "discrete")

    @property
    def levels(self) -> tuple[float, float] | None:
        """``(lo, hi)`` of a binary site, else ``None``."""
        if self.kind != "binary" or self.support_values is None:
            return None
        return self.support_values[0], self.support_values[1]

    @property
    def num_states(self) -> int | None:
        """Size of one unit's finite support (``None`` if not finite)."""
        return None if self.support_values is None else len(self.support_values)

    @property
    def size(self) -> int:
        """Number of units (elements) of one value."""
        return math.prod(self.shape)

    @property
    def transform(self) -> Any:
        """Bijection from the unconstrained space to the support (continuous sites, array params)."""
        if self.kind in ("continuous", "array") and self.support is not None:
            return biject_to(self.support)
        return None

    @property
    def is_constrained(self) -> bool:
        """Whether the support is a proper subset of the reals (a non-identity transform)."""
        return self.transform is not None and _base_constraint(self.support) is not constraints.real


def _plates(site: Mapping[str, Any]) -> tuple[tuple[str, int, int], ...]:
    return tuple((f.name, int(f.size), int(f.dim)) for f in site.get("cond_indep_stack", ()))


def _spec(name: str, site: Mapping[str, Any]) -> SiteSpec | None:
    if site["type"] == "param":
        value = site["value"]
        support = site["kwargs"].get("constraint", constraints.real)
        if _is_array_like(value):
            # shape and dtype only: the value may be traced (a plan built inside jit)
            dtype = np.dtype(jnp.result_type(value))  # Python floats follow JAX's default
            return SiteSpec(name, "param", "array", tuple(np.shape(value)), dtype, support)
        # numpyro.contrib.module parameters: a pytree (equinox module, flax dict)
        return SiteSpec(name, "param", "module", (), None, None, template=value)
    if site["type"] != "sample":
        return None
    fn = site["fn"]
    if isinstance(_unwrap(fn), Unit):
        return SiteSpec(name, "energy", "energy", tuple(fn.batch_shape), None, None)
    role = "data" if site["is_observed"] else "state"
    value = site["value"]
    support = fn.support
    dtype = np.dtype(jnp.result_type(value))
    values = None
    if support.is_discrete:
        values = _finite_support(fn)
        if values is None:
            kind = "discrete"
        elif _declared_categorical(fn):
            # ebm.Categorical is categorical at any q (q = 2 too): its states are integers
            kind = "categorical"
        elif len(values) == 2:
            kind = "binary"
        elif values == tuple(float(i) for i in range(len(values))):
            kind = "categorical"
        else:
            kind = "discrete"
    else:
        kind = "continuous"
    return SiteSpec(
        name,
        role,
        kind,
        tuple(np.shape(value)),
        dtype,
        support,
        support_values=values,
        plates=_plates(site),
        blocks=site.get("infer", {}).get("blocks"),
        dist=fn,
        lattice=site.get("infer", {}).get("lattice"),
    )


def as_param_array(value: Any) -> Any:
    """An array parameter value as checked parameters hold it: a JAX array as it is, anything
    else as a NumPy array of its own JAX dtype (NumPy, not jnp: converting on the host compiles
    nothing).

    Examples:
        >>> as_param_array(1.0).dtype
        dtype('float32')
    """
    return value if isinstance(value, jax.Array) else np.asarray(value, jnp.result_type(value))


def _short(treedef: Any, limit: int = 160) -> str:
    text = str(treedef)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(x: Any) -> str:
    return f"{type(x).__name__} of shape {np.shape(x)}" if _is_array_like(x) else type(x).__name__


class SitePlan(Mapping[str, SiteSpec]):
    """Every site of an energy model, with role, kind, support, shape, dtype and plates.

    A read-only mapping site name -> :class:`SiteSpec`, in model order. Build it with
    :meth:`from_trace` (``EnergyModel`` does, once); everything else reads it.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def rbm():
        ...     W = numpyro.param("W", jnp.zeros((3, 2)))
        ...     v = numpyro.sample("v", ebm.Bits(3))
        ...     h = numpyro.sample("h", ebm.Bits(2))
        ...     ebm.energy("E", -v @ W @ h)
        >>> plan = ebm.EnergyModel(rbm).plan
        >>> plan.state_sites, plan.latent_sites(["v"]), plan["h"].levels
        (('v', 'h'), ('h',), (0.0, 1.0))
    """

    def __init__(self, specs: Iterable[SiteSpec]):
        self._specs = {s.name: s for s in specs}

    @classmethod
    def from_trace(cls, trace: Mapping[str, Mapping[str, Any]]) -> SitePlan:
        """The plan of a NumPyro trace (of the model at its prototype values)."""
        specs = []
        for name, site in trace.items():
            spec = _spec(name, site)
            if spec is not None:
                specs.append(spec)
        return cls(specs)

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, name: str) -> SiteSpec:
        return self._specs[name]

    def __iter__(self):
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        rows = ", ".join(f"{s.name}: {s.role}/{s.kind}{s.shape}" for s in self._specs.values())
        return f"SitePlan({rows})"

    def _names(self, role: str, kinds: tuple[str, ...] | None = None) -> tuple[str, ...]:
        return tuple(
            n
            for n, s in self._specs.items()
            if s.role == role and (kinds is None or s.kind in kinds)
        )

    # ------------------------------------------------------------------ roles and kinds
    @property
    def state_sites(self) -> tuple[str, ...]:
        """Unobserved sample sites (what samplers move), in model order."""
        return self._names("state")

    @property
    def data_sites(self) -> tuple[str, ...]:
        """Sample sites observed in the program (``obs=``)."""
        return self._names("data")

    @property
    def param_sites(self) -> tuple[str, ...]:
        """``numpyro.param`` sites (modules appear as ``"name$params"``)."""
        return self._names("param")

    @property
    def energy_sites(self) -> tuple[str, ...]:
        """``energy``/``factor`` terms."""
        return self._names("energy")

    @property
    def continuous_sites(self) -> tuple[str, ...]:
        """State sites with a continuous support."""
        return self._names("state", ("continuous",))

    @property
    def discrete_sites(self) -> tuple[str, ...]:
        """State sites with a discrete support (binary, categorical or other)."""
        return self._names("state", ("binary", "categorical", "discrete"))

    @property
    def binary_sites(self) -> tuple[str, ...]:
        """State sites with two support values (``Spins``, ``Bits``, ``Bernoulli``)."""
        return self._names("state", ("binary",))

    @property
    def categorical_sites(self) -> tuple[str, ...]:
        """State sites with support ``{0, ..., q-1}``, ``q > 2``."""
        return self._names("state", ("categorical",))

    @property
    def is_mixed(self) -> bool:
        """Whether the state has both continuous and discrete sites."""
        return bool(self.continuous_sites) and bool(self.discrete_sites)

    def levels(self, names: Iterable[str] | None = None) -> dict[str, tuple[float, float]]:
        """``site -> (lo, hi)`` for the binary state sites among ``names`` (default all)."""
        names = self.binary_sites if names is None else tuple(names)
        return {n: lv for n in names if (lv := self._specs[n].levels) is not None}

    def bipartite_blocks(self, names: Iterable[str]) -> tuple[tuple[str, ...], ...] | None:
        """The two declared Gibbs blocks of whole binary sites ``names``, in colour order.

        ``None`` unless every site is binary and declares one colour for all its units
        (``infer={"blocks": c}`` with a scalar, or an array of one value) and the sites take
        exactly two colours (an RBM's visible and hidden layers). With an energy affine in each
        unit (:attr:`~ebm_ppl.EnergyModel.affine_sites`), each block's conditional logits are
        then affine in the other block: ``E = const - aᵀx - bᵀy - xᵀWy``.

        Examples:
            >>> import numpyro, ebm_ppl as ebm
            >>> def m():
            ...     v = numpyro.sample("v", ebm.Bits(3), infer={"blocks": 0})
            ...     h = numpyro.sample("h", ebm.Bits(2), infer={"blocks": 1})
            ...     ebm.energy("E", -v[0] * h[0])
            >>> ebm.EnergyModel(m).plan.bipartite_blocks(("h", "v"))
            (('v',), ('h',))
        """
        colour: dict[str, int] = {}
        for n in names:
            spec = self._specs[n]
            if spec.kind != "binary" or spec.blocks is None:
                return None
            values = np.unique(np.asarray(spec.blocks))
            if values.size != 1:
                return None
            colour[n] = int(values[0])
        distinct = sorted(set(colour.values()))
        if len(distinct) != 2:
            return None
        return tuple(tuple(n for n in colour if colour[n] == c) for c in distinct)

    def require_binary(
        self, names: Iterable[str] | None = None, *, who: str, hint: str = ""
    ) -> dict[str, tuple[float, float]]:
        """``site -> (lo, hi)`` of ``names`` (default: every discrete state site), all binary.

        Args:
            names: state sites that must be binary.
            who: what needs them binary (starts the message, e.g. ``"exact enumeration"``).
            hint: what to do instead, appended to the message.

        Raises:
            ValueError: naming the first site that is not binary, its kind and support.

        Examples:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist, ebm_ppl as ebm
            >>> def m():
            ...     ebm.energy("E", numpyro.sample("c", dist.Categorical(logits=jnp.zeros(3))))
            >>> ebm.EnergyModel(m).plan.require_binary(who="AIS")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: AIS needs binary state sites (Spins, Bits, Bernoulli); site 'c' is categorical ...
        """
        names = self.discrete_sites if names is None else tuple(names)
        out = {}
        for n in names:
            spec = self._specs[n]
            if spec.levels is None:
                raise ValueError(
                    f"{who} needs binary state sites (Spins, Bits, Bernoulli); site {n!r} is "
                    f"{spec.kind} (support {spec.support})" + (f": {hint}" if hint else "")
                )
            out[n] = spec.levels
        return out

    def latent_sites(self, data_names: Iterable[str]) -> tuple[str, ...]:
        """State sites not bound by data (``data_names``): summed out or sampled given the data.

        Raises:
            ValueError: if a name in ``data_names`` is not a state or data site.
        """
        data_names = tuple(data_names)
        unknown = [
            n
            for n in data_names
            if n not in self._specs or self._specs[n].role in ("param", "energy")
        ]
        if unknown:
            raise ValueError(
                f"data names unknown site(s) {unknown}; the model's state sites are "
                f"{list(self.state_sites)}"
            )
        return tuple(n for n in self.state_sites if n not in data_names)

    def kernel_kinds(self, names: Iterable[str] | None = None) -> set[str]:
        """The kinds of the state sites ``names`` (default all): what a kernel must move."""
        names = self.state_sites if names is None else tuple(names)
        return {self._specs[n].kind for n in names}

    # ------------------------------------------------------------------ parameters
    def validate_params(
        self,
        params: Any,
        *,
        argument: str = "params",
        allow_missing: bool = False,
        check_values: bool = True,
    ) -> dict[str, Any]:
        """Check a params dict against the plan and return it with array values as arrays.

        Checked: a dict; no unknown keys; every param site present (unless ``allow_missing``);
        array parameters of the declared shape and a real numeric dtype; module parameters with
        the declared pytree structure and leaf shapes; and, for concrete values, finiteness and
        the site's constraint (``numpyro.param(..., constraint=...)``).

        Args:
            params: dict site -> value (``None`` means no parameters).
            argument: the argument's name, for messages.
            allow_missing: accept a subset of the param sites.
            check_values: also check finiteness and constraints of concrete values.

        Returns:
            dict site -> value.

        Raises:
            TypeError: ``params`` is not a dict, or a value is not numeric.
            ValueError: unknown/missing keys, wrong shapes or structure, non-finite values,
                values outside a constraint; the message names the site.

        Examples:
            >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
            >>> def m():
            ...     a = numpyro.param("a", jnp.ones(2))
            ...     ebm.energy("E", jnp.sum(a * numpyro.sample("x", ebm.Flat(2)) ** 2))
            >>> plan = ebm.EnergyModel(m).plan
            >>> plan.validate_params({"a": jnp.ones(3)})
            Traceback (most recent call last):
            ...
            ValueError: params['a'] must have shape (2,), got shape (3,)
        """
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise TypeError(
                f"{argument} must be a dict site -> value (e.g. EnergyModel.init_params(key)), "
                f"got {type(params).__name__}"
            )
        expected = self.param_sites
        unknown = sorted(str(k) for k in params if k not in expected)
        if unknown:
            raise ValueError(
                f"{argument} has unknown key(s) {unknown}; the model's parameters are "
                f"{list(expected)}"
            )
        missing = [n for n in expected if n not in params]
        if missing and not allow_missing:
            raise ValueError(
                f"{argument} is missing {missing}; get a full set from "
                "EnergyModel.init_params(rng_key)"
            )
        out: dict[str, Any] = {}
        for name, value in params.items():
            spec = self._specs[name]
            where = f"{argument}[{name!r}]"
            if spec.kind == "module":
                out[name] = self._check_module(where, spec, value, check_values)
                continue
            if not _is_array_like(value):
                raise TypeError(f"{where} must be an array, got {type(value).__name__}")
            dtype = jnp.result_type(value)
            if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
                raise TypeError(f"{where} must be a real number array, got dtype {dtype}")
            if tuple(np.shape(value)) != spec.shape:
                raise ValueError(
                    f"{where} must have shape {spec.shape}, got shape {np.shape(value)}"
                )
            # NumPy, not jnp: converting on the host compiles nothing
            arr = as_param_array(value)
            if check_values and is_concrete(arr):
                a = np.asarray(arr)
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"{where} has non-finite values (NaN or inf)")
                if spec.support is not None and not bool(np.all(spec.support(a))):
                    raise ValueError(
                        f"{where} is outside its constraint {spec.support} "
                        f"(declared by numpyro.param(..., constraint=...))"
                    )
            out[name] = arr
        return out

    @staticmethod
    def _check_module(where: str, spec: SiteSpec, value: Any, check_values: bool) -> Any:
        want: Any = jax.tree.structure(spec.template)
        got: Any = jax.tree.structure(value)
        if want != got:
            raise ValueError(
                f"{where} must be a module parameter pytree with the model's structure "
                f"{_short(want)}, got {_describe(value)} with structure {_short(got)}"
            )
        for i, (a, b) in enumerate(
            zip(jax.tree.leaves(spec.template), jax.tree.leaves(value), strict=True)
        ):
            if np.shape(a) != np.shape(b):
                raise ValueError(
                    f"{where}: leaf {i} must have shape {np.shape(a)}, got {np.shape(b)}"
                )
            if check_values and is_concrete(b) and _is_array_like(b):
                arr = np.asarray(b)
                if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
                    raise ValueError(f"{where}: leaf {i} has non-finite values (NaN or inf)")
        return value

    def unconstrain_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters on their unconstrained space (identity for unconstrained and modules).

        Optimizers work here, as NumPyro's SVI does: any update keeps the constrained value
        inside its support.
        """
        out = {}
        for name, value in params.items():
            spec = self._specs[name]
            out[name] = spec.transform.inv(value) if spec.is_constrained else value
        return out

    def constrain_params(self, unconstrained: Mapping[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`unconstrain_params`."""
        out = {}
        for name, value in unconstrained.items():
            spec = self._specs[name]
            out[name] = spec.transform(value) if spec.is_constrained else value
        return out

    @property
    def constrained_params(self) -> tuple[str, ...]:
        """Param sites with a non-real constraint."""
        return tuple(n for n in self.param_sites if self._specs[n].is_constrained)

    # ------------------------------------------------------------------ values
    def validate_values(
        self,
        values: Any,
        *,
        argument: str = "values",
        batch_ndim: int = 0,
        required: Iterable[str] | None = None,
        allow_data: bool = True,
        check_continuous: bool = True,
    ) -> dict[str, Any]:
        """Check values of state (and data) sites against the plan; return them as arrays.

        Checked: a dict; every key a state site (or a data site when ``allow_data``); the
        ``required`` sites present; shapes ``(*batch, *site_shape)`` with ``batch_ndim`` leading
        axes of one common size; a real or integer dtype; and, for concrete values, discrete
        values inside the site's support (e.g. 0/1 data for a ``Spins`` site is refused),
        continuous values finite and inside their constraint. Values keep their dtype; use
        :meth:`to_kernel` to cast.

        Args:
            values: dict site -> array.
            argument: the argument's name, for messages.
            batch_ndim: number of leading batch axes (0: one state; 1: a batch of examples).
            required: sites that must be present (default: none).
            allow_data: accept data sites (a conditional model's inputs) too.
            check_continuous: check continuous values for finiteness and their constraint
                (``EnergyModel.energy`` does not: an energy may be evaluated anywhere).

        Returns:
            dict site -> array.

        Raises:
            TypeError: not a dict, or a non-numeric value.
            ValueError: unknown or missing sites, wrong shapes, values outside the support.

        Examples:
            >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
            >>> def ising():
            ...     s = numpyro.sample("s", ebm.Spins(3))
            ...     ebm.energy("E", -jnp.sum(s[1:] * s[:-1]))
            >>> ebm.EnergyModel(ising).plan.validate_values({"s": jnp.array([0.0, 1.0, 1.0])})
            Traceback (most recent call last):
            ...
            ValueError: values['s'] must hold values in {-1, 1} (the support of a binary site), got e.g. [0.0]
        """
        if not isinstance(values, Mapping):
            raise TypeError(f"{argument} must be a dict site -> array, got {type(values).__name__}")
        allowed = self.state_sites + (self.data_sites if allow_data else ())
        unknown = sorted(str(k) for k in values if k not in allowed)
        if unknown:
            raise ValueError(
                f"{argument} has unknown site(s) {unknown}; the model's state sites are "
                f"{list(self.state_sites)}"
                + (f" and data sites {list(self.data_sites)}" if self.data_sites else "")
            )
        missing = [n for n in (required or ()) if n not in values]
        if missing:
            raise ValueError(f"{argument} is missing state site(s) {missing}")
        out: dict[str, Any] = {}
        batch: tuple[int, ...] | None = None
        for name, value in values.items():
            spec = self._specs[name]
            where = f"{argument}[{name!r}]"
            if not _is_array_like(value) and not isinstance(value, (list, tuple)):
                raise TypeError(f"{where} must be an array, got {type(value).__name__}")
            arr = value if isinstance(value, jax.Array) else np.asarray(value)
            dtype = arr.dtype
            if not (
                np.issubdtype(dtype, np.floating)
                or np.issubdtype(dtype, np.integer)
                or np.issubdtype(dtype, np.bool_)
                or jnp.issubdtype(dtype, jnp.floating)
            ):
                raise TypeError(f"{where} must be a real or integer array, got dtype {dtype}")
            shape = tuple(np.shape(arr))
            lead, tail = shape[:batch_ndim], shape[batch_ndim:]
            if len(shape) < batch_ndim or tail != spec.shape:
                want = spec.shape if not batch_ndim else f"({'batch, ' * batch_ndim}*{spec.shape})"
                raise ValueError(f"{where} must have shape {want}, got shape {shape}")
            if batch is None:
                batch = lead
            elif lead != batch:
                raise ValueError(
                    f"{argument}: sites have different batch sizes ({batch} and {lead} at {name!r})"
                )
            if is_concrete(arr) and (check_continuous or spec.is_discrete):
                self._check_support(where, spec, np.asarray(arr))
            out[name] = arr
        return out

    @staticmethod
    def _check_support(where: str, spec: SiteSpec, a: np.ndarray) -> None:
        if spec.support_values is not None:
            ok = np.isin(a, np.asarray(spec.support_values, dtype=np.float64))
            if not np.all(ok):
                bad = a[~ok].ravel()[:3].tolist()
                allowed = ", ".join(f"{v:g}" for v in spec.support_values)
                raise ValueError(
                    f"{where} must hold values in {{{allowed}}} (the support of a {spec.kind} "
                    f"site), got e.g. {bad}"
                )
            return
        if spec.kind == "continuous":
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{where} has non-finite values (NaN or inf)")
            if spec.is_constrained and not bool(np.all(spec.support(a))):
                raise ValueError(f"{where} is outside the site's support {spec.support}")

    def to_kernel(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values as kernels hold them; others unchanged.

        Binary and other discrete values become floats (kernels and gradients work on them);
        categorical values become ``int32`` (energies index with them, NumPyro's ``Categorical``
        needs integers, ``jax.nn.one_hot`` wants them).
        """
        ftype = jnp.result_type(float)
        out = {}
        for n, v in values.items():
            spec = self._specs.get(n)
            if spec is not None and spec.kind == "categorical":
                v = jnp.asarray(v).astype(jnp.int32)
            elif spec is not None and spec.is_discrete:
                v = jnp.asarray(v, ftype)
            out[n] = v
        return out

    def num_states(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """``site -> q`` for the categorical state sites among ``names`` (default all).

        Examples:
            >>> import numpyro, ebm_ppl as ebm
            >>> def m():
            ...     ebm.energy("E", numpyro.sample("c", ebm.Categorical(4, 3)).sum())
            >>> ebm.EnergyModel(m).plan.num_states()
            {'c': 3}
        """
        names = self.categorical_sites if names is None else tuple(names)
        return {
            n: int(self._specs[n].num_states or 0)
            for n in names
            if self._specs[n].kind == "categorical"
        }

    def from_kernel(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values in the dtype the model declares (``int32`` for ``Bernoulli``), for users."""
        out = {}
        for n, v in values.items():
            spec = self._specs.get(n)
            if spec is not None and spec.is_discrete and spec.dtype is not None:
                v = jnp.asarray(v).astype(spec.dtype)
            out[n] = v
        return out
