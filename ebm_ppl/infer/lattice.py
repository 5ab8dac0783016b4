"""NumPyro adapters of the lattice kernels: :class:`LatticeGibbs` and :class:`SwendsenWang`.

A model whose state site declares its nearest-neighbour lattice
(``infer={"lattice": ebm.Lattice.ising(...)}`` or ``ebm.Lattice.potts(...)``, as
``models.ising.model`` and ``models.potts.model`` do) is sampled by ``ebm.sample`` with

* ``kernel="gibbs"`` (and ``"auto"``, which picks Gibbs for such a model): the compact
  checkerboard heat bath (:mod:`ebm_ppl.kernels.lattice`; an ``(L, L/2)`` array per colour,
  each colour's units updated from the other colour only) when the lattice is a periodic
  ``L x L`` torus with ``L`` even, otherwise the generic block Gibbs kernel (the same
  stationary distribution);
* ``kernel="swendsen_wang"``: Swendsen–Wang cluster updates (:mod:`ebm_ppl.kernels.cluster`)
  on any periodic two-dimensional lattice with ``β J >= 0``.

Both kernels come from the one kernel resolution
(:func:`ebm_ppl.kernels.resolve.resolve_kernel` with ``compact=True``). ``β``, ``J`` and ``h``
are read from the model's declaration at every step, so ``numpyro.param`` values are dynamic
arguments of ``sample``'s compiled chunks. Before anything compiles, ``sample`` checks
(:func:`check_declared_lattice`) that the declared energy equals the model's at a few states:
a model whose energy is not the declared lattice's (e.g. an added term) is refused. Built by
hand (e.g. under ``numpyro.infer.MCMC``), the adapters trust the declaration: call
:func:`check_declared_lattice` first.

Examples:
    >>> import ebm_ppl as ebm
    >>> from ebm_ppl.models import potts
    >>> idata = ebm.sample(potts.model, kernel="swendsen_wang", model_args=((4, 4), 3),
    ...                    num_chains=2, num_warmup=10, num_samples=20, progress=False)
    >>> idata.posterior["s"].shape, str(idata.posterior["s"].dtype)
    ((2, 20, 4, 4), 'int32')
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform

from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.plan import SitePlan
from ebm_ppl.infer.adapter import KernelAdapter, content_key
from ebm_ppl.infer.discrete import _trace_plan, _with_param_init
from ebm_ppl.infer.registry import register_kernel
from ebm_ppl.kernels import cluster, compact, gibbs
from ebm_ppl.kernels.resolve import resolve_kernel

__all__ = ["LatticeGibbs", "SwendsenWang", "check_declared_lattice", "lattice_kernel_factory"]

#: Relative tolerance of the check that the model's energy is the declared lattice's.
RTOL = 1e-5
_NUM_CHECKS = 3


def _lattice_site(plan: SitePlan) -> str | None:
    """The state site of a model whose only state site declares a lattice, else ``None``."""
    sites = plan.state_sites
    if len(sites) == 1 and getattr(plan[sites[0]], "lattice", None) is not None:
        return sites[0]
    return None


def _declaration(
    model: Callable[..., Any],
    site: str,
    value: Any,
    model_args: tuple,
    model_kwargs: Mapping[str, Any],
) -> Any:
    """The lattice the model declares on ``site`` at its current parameters (as traced)."""
    tr = handlers.trace(
        handlers.seed(handlers.substitute(model, data={site: value}), rng_seed=0)
    ).get_trace(*model_args, **dict(model_kwargs))
    declared = tr[site].get("infer", {}).get("lattice")
    if declared is None:
        raise ValueError(f"site {site!r} declares no lattice (infer={{'lattice': ...}})")
    return declared


def _energy_of(declared: Any, site: str) -> compact.LatticeEnergy:
    ftype = jnp.result_type(float)
    field = declared.field
    if declared.kind == "ising" and field is None:
        field = 0.0
    return compact.LatticeEnergy(
        site,
        declared.kind,
        int(declared.num_states),
        jnp.asarray(declared.beta, ftype),
        jnp.asarray(declared.coupling, ftype),
        None if field is None else jnp.asarray(field, ftype),
    )


def check_declared_lattice(
    em: EnergyModel, params: Mapping[str, Any] | None, method: str, *, site: str | None = None
) -> Any:
    """Check, before compiling, that ``method`` can run the lattice ``em``'s site declares.

    The declaration is read at ``params``; the compact kernel's restrictions are checked with
    its own checks (:func:`ebm_ppl.kernels.compact.check`), then the declared energy
    (:meth:`ebm_ppl.Lattice.energy`) is compared with the model's energy up to an additive
    constant: their changes from an ordered state to ``3`` uniformly drawn states (seeded),
    relative to the largest of the energies' magnitudes, at ``1e-5``.

    Args:
        em: the energy model.
        params: its parameters (constrained values; ``None`` for none).
        method: ``"gibbs"`` or ``"swendsen_wang"``.
        site: the lattice site (default: the model's only state site).

    Returns:
        the declaration (:class:`ebm_ppl.Lattice`) at ``params``.

    Raises:
        ValueError: the kernel cannot run the lattice (open boundaries, an odd side for the
            heat bath, ...), or the model's energy is not the declared lattice's (the message
            names the site).

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def ising_plus(shape=(4, 4)):
        ...     lat = ebm.Lattice.ising(shape, beta=0.4)
        ...     s = numpyro.sample("s", ebm.Spins(shape), infer={"lattice": lat})
        ...     ebm.energy("E", lat.energy(s) + 0.1 * s[0, 0])      # one more term
        >>> check_declared_lattice(ebm.EnergyModel(ising_plus), {}, "gibbs")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: site 's': the energy is not the declared lattice's...
    """
    plan = em.plan
    site = _lattice_site(plan) if site is None else site
    if site is None:
        raise ValueError("the model has no state site that declares a lattice")
    spec = plan[site]
    params = dict(params or {})
    value = np.zeros(spec.shape, spec.dtype)
    model = handlers.substitute(em.model, data=params) if params else em.model
    declared = _declaration(model, site, value, em.args, em.kwargs)
    compact.check(method, declared)
    rng = np.random.default_rng(0)
    support = np.asarray(spec.support_values, spec.dtype)
    states = [np.full(spec.shape, support[-1], spec.dtype)]
    states += [rng.choice(support, size=spec.shape) for _ in range(_NUM_CHECKS)]
    batch = np.stack(states).astype(spec.dtype)
    model_energy = np.asarray(em.batch_energy(params, {site: batch}), np.float64)
    declared_energy = np.asarray(jax.vmap(declared.energy)(jnp.asarray(batch)), np.float64)
    # up to an additive constant (a uniform base measure such as dist.Categorical(logits=0)
    # adds one): the changes from the uniform state are compared
    model_change = model_energy - model_energy[0]
    declared_change = declared_energy - declared_energy[0]
    scale = max(float(np.max(np.abs(model_energy))), float(np.max(np.abs(declared_energy))))
    diff = np.abs(model_change - declared_change)
    tiny = float(np.finfo(np.float32).tiny)
    bad = np.flatnonzero(~(diff <= RTOL * max(scale, tiny)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"site {site!r}: the energy is not the declared lattice's: from the uniform state to "
            f"a random one the model's energy changes by {model_change[i]:.6g} and the declared "
            f"{declared.kind} lattice's by {declared_change[i]:.6g} (relative difference "
            f"{diff[i] / scale:.2g} > {RTOL:g}); declare a lattice only on a model whose energy "
            "is that lattice's up to a constant, or use kernel='auto'/'gibbs' without the "
            "declaration"
        )
    return declared


class _LatticeAdapter(KernelAdapter):
    """Shared parts: one lattice site, the declaration read from the model at every step."""

    unconstrained = False
    _uses_step_size = False
    _method = "gibbs"

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        init_strategy: Callable[..., Any] = init_to_uniform,
        kernel_options: Mapping[str, Any] | None = None,
    ):
        if model is None:
            raise ValueError(
                f"{type(self).__name__} needs model= (a model whose state site declares its "
                "lattice)"
            )
        super().__init__(model, params=params, init_strategy=init_strategy)
        self._kernel_options = dict(kernel_options or {})
        self._plan: SitePlan | None = None
        self._site: str | None = None

    def _bound_model(self) -> Callable[..., Any]:
        model = super()._bound_model()
        return model if self._params is not None else _with_param_init(model)

    def _initialize_model(self, rng_key, init_params, model_args, model_kwargs):
        position = super()._initialize_model(rng_key, init_params, model_args, model_kwargs)
        position = {n: jnp.asarray(v) for n, v in dict(position).items()}
        plan = _trace_plan(self._bound_model(), position, model_args, model_kwargs)
        site = _lattice_site(plan)
        if site is None:
            raise ValueError(
                f"{type(self).__name__} samples a model whose only state site declares its "
                f"lattice (infer={{'lattice': ebm.Lattice...}}); the model's state sites are "
                f"{list(plan.state_sites)}"
            )
        compact.check(self._method, plan[site].lattice)
        self._plan, self._site = plan, site
        self._postprocess_fn_gen = lambda *args, **kwargs: plan.from_kernel
        return plan.to_kernel(position)

    def get_potential_fn(
        self, model_args: tuple = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> Callable[[Any], jax.Array]:
        """The declared lattice's energy at the current parameters: a
        :class:`~ebm_ppl.kernels.compact.LatticeEnergy` (requires :meth:`init`).

        Examples:
            >>> import jax
            >>> from ebm_ppl.models import ising
            >>> k = LatticeGibbs(ising.model)
            >>> _ = k.init(jax.random.PRNGKey(0), 0, None, ((4, 4),), {"beta": 0.3})
            >>> float(k.get_potential_fn(((4, 4),), {"beta": 0.3}).beta)
            0.3
        """
        if self._plan is None or self._site is None:
            raise RuntimeError("get_potential_fn requires init to have run")
        spec = self._plan[self._site]
        value = jnp.zeros(spec.shape, spec.dtype)
        declared = _declaration(
            self._bound_model(), self._site, value, tuple(model_args), dict(model_kwargs or {})
        )
        return _energy_of(declared, self._site)

    def _build(self):
        assert self._plan is not None, "init sets the plan"
        sampler = resolve_kernel(
            self._method,
            plan=self._plan,
            sites=(self._site,),
            purpose="sample",
            kernel_options=self._kernel_options,
            compact=True,
        )
        return sampler.init, sampler.step


class LatticeGibbs(_LatticeAdapter):
    """The compact checkerboard heat bath on a declared ``L x L`` torus (``L`` even).

    Each sweep redraws the black units from the white ones, then the white units from the new
    black ones, from their exact conditionals, working on ``(L, L/2)`` arrays per colour
    (:func:`ebm_ppl.kernels.lattice.build_kernel`, ``build_potts_kernel``): no logit is
    computed for a unit that is not updated. Ising spins are stored as ``int8``.

    Args:
        model: a NumPyro model whose only state site declares its lattice
            (``models.ising.model``, ``models.potts.model``, or ``infer={"lattice": ...}``).
        params: dict of parameter values for the model's ``numpyro.param`` sites.
        init_strategy: NumPyro init strategy.
        kernel_options: ``{"uniform_bits": 16}`` for two uniforms per random word.

    Raises:
        ValueError: at :meth:`init`, a model without a declared lattice, or one the heat bath
            cannot run (open boundaries, an odd side, a per-site field).

    Examples:
        >>> import jax
        >>> from ebm_ppl.models import ising
        >>> kernel = LatticeGibbs(ising.model)
        >>> state = kernel.init(jax.random.PRNGKey(0), 0, None, ((4, 4),), {"beta": 0.4})
        >>> state = kernel.sample(state, ((4, 4),), {"beta": 0.4})
        >>> state.z["s"].shape, state.kernel_state.inner.black.dtype.name
        ((4, 4), 'int8')
    """

    _method = "gibbs"

    def _info_cls(self) -> type:
        return gibbs.GibbsInfo


class SwendsenWang(_LatticeAdapter):
    """Swendsen–Wang cluster updates on a declared periodic two-dimensional lattice.

    One sweep bonds equal neighbours with probability ``1 - exp(-β J)`` (``-2 β J`` for Ising),
    labels the clusters and gives each a new state (:mod:`ebm_ppl.kernels.cluster`): it
    decorrelates near the critical point in a few sweeps where single-site updates need
    thousands. Needs ``β J >= 0``.

    Args:
        model: a NumPyro model whose only state site declares its lattice.
        params: dict of parameter values for the model's ``numpyro.param`` sites.
        init_strategy: NumPyro init strategy.

    Raises:
        ValueError: at :meth:`init`, a model without a declared lattice, or one the cluster
            kernel cannot run (open boundaries, not two-dimensional, an Ising field that is
            not a scalar).

    Examples:
        >>> import jax
        >>> from ebm_ppl.models import potts
        >>> kernel = SwendsenWang(potts.model)
        >>> state = kernel.init(jax.random.PRNGKey(0), 0, None, ((3, 3), 3), {})
        >>> kernel.sample(state, ((3, 3), 3), {}).z["s"].dtype.name
        'int32'
    """

    _method = "swendsen_wang"

    def _info_cls(self) -> type:
        return cluster.ClusterInfo

    def _init_info(self, kernel_state: Any) -> Any:
        dtype = jnp.result_type(kernel_state.energy)
        zero = jnp.zeros((), jnp.int32)
        return cluster.ClusterInfo(
            jnp.zeros((), dtype), jnp.array(False), jnp.array(False), zero, zero
        )


def lattice_kernel_factory(
    kernel_name: str, em: EnergyModel, params: Mapping[str, Any] | None, *, tempering: Any = None
) -> Callable[..., Any] | None:
    """The factory ``sample`` uses for ``kernel_name`` on a model that declares its lattice.

    ``"gibbs"`` on a model whose only state site declares a lattice the compact heat bath can
    run gives :class:`LatticeGibbs` (other lattices, tempered chains: ``None``, the registered
    block Gibbs kernel); ``"swendsen_wang"`` gives :class:`SwendsenWang`. The declaration is
    checked at ``params`` (:func:`check_declared_lattice`) before anything compiles.

    Raises:
        ValueError: ``"swendsen_wang"`` with tempering or on a lattice it cannot run; a model
            whose energy is not the declared lattice's.

    Examples:
        >>> import ebm_ppl as ebm
        >>> from ebm_ppl.models import ising
        >>> em = ebm.EnergyModel(ising.model, (4, 4), beta=0.3)
        >>> lattice_kernel_factory("gibbs", em, {}) is not None
        True
        >>> lattice_kernel_factory("gibbs", ebm.EnergyModel(ising.model, (3, 3)), {}) is None
        True
    """
    if kernel_name not in compact.METHODS:
        return None
    if tempering is not None:
        if kernel_name == "swendsen_wang":
            raise ValueError(
                "kernel='swendsen_wang' cannot be tempered: tempering wraps 'mala', 'ula', "
                "'gibbs', 'gwg' or 'composite'"
            )
        return None
    site = _lattice_site(em.plan)
    if site is None:
        return None
    if kernel_name == "gibbs":
        try:
            compact.check("gibbs", em.plan[site].lattice)
        except ValueError:
            return None  # the generic block Gibbs kernel: the same distribution
    key = _check_key(em, params, kernel_name)
    if key is None or key not in _CHECKED:
        check_declared_lattice(em, params, kernel_name, site=site)
        if key is not None:
            _CHECKED[key] = None
            while len(_CHECKED) > _CHECKED_SIZE:
                _CHECKED.popitem(last=False)
    return _FACTORIES[kernel_name]


# Configurations whose declaration passed the check (a repeated ``sample`` call skips its
# eager energy evaluations: about 0.2 s at L = 1024), least recently added dropped.
_CHECKED: OrderedDict[Any, None] = OrderedDict()
_CHECKED_SIZE = 64


def _check_key(em: EnergyModel, params: Mapping[str, Any] | None, method: str) -> Any:
    """A content key of the model, its arguments and parameters (``None`` if not hashable)."""
    try:
        return (em.model, method, content_key((em.args, em.kwargs, dict(params or {}))))
    except TypeError:
        return None


def _gibbs_factory(model: Callable[..., Any], params: Mapping[str, Any]) -> LatticeGibbs:
    return LatticeGibbs(model, params=params or None)


def _swendsen_wang_factory(model: Callable[..., Any], params: Mapping[str, Any]) -> SwendsenWang:
    return SwendsenWang(model, params=params or None)


_FACTORIES = {"gibbs": _gibbs_factory, "swendsen_wang": _swendsen_wang_factory}

register_kernel("swendsen_wang", _swendsen_wang_factory)
