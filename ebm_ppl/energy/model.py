"""``EnergyModel``: a NumPyro EBM program compiled into pure JAX functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.distribution import (
    Distribution,
    ExpandedDistribution,
    MaskedDistribution,
    Unit,
)
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import log_density

__all__ = ["EnergyModel", "SiteInfo"]

Values = dict[str, jax.Array]


class SiteInfo(NamedTuple):
    """Static description of one site of an energy model.

    Attributes:
        name: site name.
        kind: ``"state"`` (sampled), ``"data"`` (observed), ``"param"`` or ``"energy"`` (a factor).
        shape: shape of one value of the site (plates' batch shape + event shape).
        support: NumPyro constraint of the site (``None`` for energy terms).
        is_discrete: whether the support is discrete (spins, bits, categories).
        dist: the site's distribution as traced (the base measure for state sites).

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Flat(3))
        ...     ebm.energy("E", jnp.sum(x**2))
        >>> ebm.EnergyModel(m).sites["x"].shape
        (3,)
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    support: Any
    is_discrete: bool
    dist: Any


def _unwrap(fn: Any) -> Any:
    while isinstance(fn, (ExpandedDistribution, MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _base_constraint(c: Any) -> Any:
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    return c


def _is_factor(site: Mapping[str, Any]) -> bool:
    return site["type"] == "sample" and isinstance(_unwrap(site["fn"]), Unit)


class EnergyModel:
    """A NumPyro EBM program compiled once into pure JAX functions.

    The model is traced once at construction (with ``init_to_uniform`` values) to find its
    sites. Afterwards every method is a pure function of explicit ``params`` and ``values`` and
    can be ``jit``-ed, ``vmap``-ed and differentiated in both.

    * ``energy(params, values)`` = ``-log`` of the unnormalized joint density: every
      ``energy``/``factor`` term plus the negative log density of every sample site (base
      measures of state sites, and of observed sites). ``exp(-energy)`` is proportional to the
      density of the state.
    * state sites: unobserved sample sites (what samplers move); data sites: observed sample
      sites (fixed by the model's arguments); param sites: ``numpyro.param`` (including
      ``numpyro.contrib.module`` networks, whose parameters are one ``"name$params"`` site).

    Args:
        model: a NumPyro model (callable).
        *args, **kwargs: arguments the model is called with, bound for every method.

    Raises:
        TypeError: if ``model`` is not callable.
        ValueError: if ``model`` has no state sites.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gaussian(dim=2):
        ...     prec = numpyro.param("prec", jnp.eye(dim))
        ...     x = numpyro.sample("x", ebm.Flat((dim,)))
        ...     ebm.energy("E", 0.5 * x @ prec @ x)
        >>> em = ebm.EnergyModel(gaussian, 2)
        >>> params = em.init_params(jax.random.PRNGKey(0))
        >>> float(em.energy(params, {"x": jnp.array([1.0, 1.0])}))
        1.0
        >>> em.score(params, {"x": jnp.array([1.0, 0.0])})["x"].tolist()
        [-1.0, -0.0]
    """

    def __init__(self, model: Callable[..., Any], *args: Any, **kwargs: Any):
        if not callable(model):
            raise TypeError(f"model must be a callable NumPyro model, got {type(model).__name__}")
        if isinstance(model, EnergyModel):
            raise TypeError("model is already an EnergyModel; pass its .model")
        self.model = model
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self._trace = self._prototype_trace()
        sites: dict[str, SiteInfo] = {}
        for name, site in self._trace.items():
            if site["type"] == "param":
                value = site["value"]
                support = site["kwargs"].get("constraint", constraints.real)
                # network parameters (numpyro.contrib.module) are pytrees, not arrays
                shape = (
                    tuple(jnp.shape(value))
                    if hasattr(value, "shape") or jnp.isscalar(value)
                    else ()
                )
                sites[name] = SiteInfo(name, "param", shape, support, False, None)
            elif site["type"] == "sample":
                if _is_factor(site):
                    shape = tuple(site["fn"].batch_shape)
                    sites[name] = SiteInfo(name, "energy", shape, None, False, None)
                    continue
                fn = site["fn"]
                kind = "data" if site["is_observed"] else "state"
                support = fn.support
                sites[name] = SiteInfo(
                    name,
                    kind,
                    tuple(jnp.shape(site["value"])),
                    support,
                    bool(support.is_discrete),
                    fn,
                )
        self._sites = sites
        if not self.state_sites:
            raise ValueError(
                "model has no state sites: declare the state with numpyro.sample(name, base) "
                "(e.g. ebm.Flat(shape), ebm.Spins(shape), ebm.Bits(shape)) without obs="
            )
        self._transforms = {
            name: biject_to(sites[name].support)
            for name in self.continuous_sites
            if _base_constraint(sites[name].support) is not constraints.real
        }
        self._affine: dict[str, bool] | None = None  # see affine_sites (checked on first use)

    # ------------------------------------------------------------------ structure
    def _prototype_trace(self):
        model = handlers.substitute(
            handlers.seed(self.model, rng_seed=0), substitute_fn=init_to_uniform
        )
        return handlers.trace(model).get_trace(*self.args, **self.kwargs)

    @property
    def sites(self) -> dict[str, SiteInfo]:
        """Name -> :class:`SiteInfo` for every param, state, data and energy site."""
        return dict(self._sites)

    def _names(self, predicate: Callable[[SiteInfo], bool]) -> tuple[str, ...]:
        return tuple(n for n, s in self._sites.items() if predicate(s))

    @property
    def state_sites(self) -> tuple[str, ...]:
        """Names of the unobserved sample sites (the sampler's state), in model order."""
        return self._names(lambda s: s.kind == "state")

    @property
    def data_sites(self) -> tuple[str, ...]:
        """Names of observed sample sites (fixed by the model's arguments)."""
        return self._names(lambda s: s.kind == "data")

    @property
    def param_sites(self) -> tuple[str, ...]:
        """Names of ``numpyro.param`` sites (network modules appear as ``"name$params"``)."""
        return self._names(lambda s: s.kind == "param")

    @property
    def energy_sites(self) -> tuple[str, ...]:
        """Names of the ``energy``/``factor`` terms."""
        return self._names(lambda s: s.kind == "energy")

    @property
    def continuous_sites(self) -> tuple[str, ...]:
        """State sites with a continuous support."""
        return self._names(lambda s: s.kind == "state" and not s.is_discrete)

    @property
    def discrete_sites(self) -> tuple[str, ...]:
        """State sites with a discrete support (spins, bits, categories)."""
        return self._names(lambda s: s.kind == "state" and s.is_discrete)

    # ------------------------------------------------------------------ parameters
    def init_params(self, rng_key: jax.Array) -> Values:
        """Initial parameters (constrained values) for every param site.

        Args:
            rng_key: PRNG key used by parameter initializers that are callables (networks).

        Returns:
            dict site name -> array. Empty if the model has no parameters.
        """
        model = handlers.substitute(
            handlers.seed(self.model, rng_seed=rng_key), substitute_fn=init_to_uniform
        )
        tr = handlers.trace(model).get_trace(*self.args, **self.kwargs)
        return {name: tr[name]["value"] for name in self.param_sites}

    # ------------------------------------------------------------------ energies
    def _check_values(self, params: Mapping[str, Any] | None, values: Mapping[str, Any]) -> Values:
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a dict site -> array, got {type(values).__name__}")
        missing = [n for n in self.state_sites if n not in values]
        if missing:
            raise ValueError(
                f"values is missing state site(s) {missing}; expected {list(self.state_sites)}"
            )
        params = dict(params or {})
        missing_p = [n for n in self.param_sites if n not in params]
        if missing_p:
            raise ValueError(
                f"params is missing {missing_p}; get a full set from EnergyModel.init_params(rng_key)"
            )
        return {**params, **values}

    def energy(self, params: Mapping[str, Any] | None, values: Mapping[str, Any]) -> jax.Array:
        """Total energy ``E(x) - log base(x)`` of one state; ``exp(-energy)`` is the unnormalized density.

        Args:
            params: dict of parameters (``init_params`` output, or trained values).
            values: dict state site -> value of that site's shape (no batch axis). Entries for
                data sites override the model's observed values.

        Returns:
            scalar array.
        """
        data = self._check_values(params, values)
        log_joint, _ = log_density(self.model, self.args, self.kwargs, data)
        return -log_joint

    def batch_energy(
        self, params: Mapping[str, Any] | None, values: Mapping[str, Any]
    ) -> jax.Array:
        """``energy`` vmapped over a leading batch axis of every entry of ``values``.

        Args:
            params: dict of parameters (shared by the batch).
            values: dict site -> array of shape ``(batch, *site_shape)``.

        Returns:
            array of shape ``(batch,)``.
        """
        return jax.vmap(self.energy, in_axes=(None, 0))(params, values)

    def score(self, params: Mapping[str, Any] | None, values: Mapping[str, Any]) -> Values:
        """``-∇_x energy`` for the continuous state sites (discrete sites held fixed).

        Returns:
            dict continuous state site -> array of the site's shape.
        """
        cont = {n: jnp.asarray(values[n]) for n in self.continuous_sites if n in values}
        if len(cont) != len(self.continuous_sites):
            self._check_values(params, values)  # raises a message naming the missing site
        rest = {n: v for n, v in values.items() if n not in cont}
        grad = jax.grad(lambda c: self.energy(params, {**rest, **c}))(cont)
        return jax.tree.map(jnp.negative, grad)

    def conditional_logits(
        self, params: Mapping[str, Any] | None, values: Mapping[str, Any], site: str
    ) -> jax.Array:
        """Logits of ``P(x_i = hi | rest)`` for every unit of the binary state site ``site``.

        ``-∂E/∂x_i`` for ``Bits`` and ``-2 ∂E/∂s_i`` for ``Spins`` (one gradient for all units)
        when the energy is affine in each unit (:attr:`affine_sites`); exact energy
        differences (one energy per unit, vmapped) otherwise.

        Returns:
            array of the site's shape.

        Examples:
            >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
            >>> def chain():
            ...     s = numpyro.sample("s", ebm.Spins(3))
            ...     ebm.energy("E", -jnp.sum(s[:-1] * s[1:]))
            >>> em = ebm.EnergyModel(chain)
            >>> em.conditional_logits({}, {"s": jnp.ones(3)}, "s").tolist()
            [2.0, 4.0, 2.0]
        """
        from ebm_ppl.energy.conditionals import binary_levels, conditional_logits

        affine = self.affine_sites
        if site not in affine:
            raise ValueError(f"site must be a binary state site {sorted(affine)}, got {site!r}")
        levels = binary_levels(self._sites[site].support)
        assert levels is not None  # affine_sites holds binary sites only
        data = {**{n: jnp.asarray(v) for n, v in values.items()}}
        return conditional_logits(
            lambda pos: self.energy(params, pos), data, site, levels, affine=affine[site]
        )

    @property
    def affine_sites(self) -> dict[str, bool]:
        """Binary state site -> whether the energy is affine in each of its units.

        Checked once (on first use, then cached) at random states under the initial and
        perturbed parameters: :func:`ebm_ppl.energy.conditionals.check_model_affine`.

        Examples:
            >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
            >>> def m():
            ...     x = numpyro.sample("x", ebm.Bits(2))
            ...     ebm.energy("E", -x[0] * x[1])
            >>> ebm.EnergyModel(m).affine_sites
            {'x': True}
        """
        if self._affine is None:
            from ebm_ppl.energy.conditionals import check_model_affine

            self._affine = check_model_affine(self)
        return dict(self._affine)

    # ------------------------------------------------------------------ samplers' view
    def constrain(self, z: Mapping[str, Any]) -> Values:
        """Map unconstrained values of continuous state sites to their supports."""
        return {n: (self._transforms[n](v) if n in self._transforms else v) for n, v in z.items()}

    def unconstrain(self, values: Mapping[str, Any]) -> Values:
        """Inverse of :meth:`constrain`."""
        return {
            n: (self._transforms[n].inv(v) if n in self._transforms else v)
            for n, v in values.items()
        }

    def potential_fn(self, params: Mapping[str, Any] | None) -> Callable[[Values], jax.Array]:
        """NumPyro-compatible potential ``z -> energy(constrain(z)) - log|det J|``.

        Continuous state sites are on their unconstrained space (identical for ``Flat``);
        discrete sites pass through unchanged.

        Examples:
            >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
            >>> def m():
            ...     x = numpyro.sample("x", ebm.Flat(()))
            ...     ebm.energy("E", x**2)
            >>> float(ebm.EnergyModel(m).potential_fn({})({"x": jnp.array(2.0)}))
            4.0
        """

        def potential(z: Mapping[str, Any]) -> jax.Array:
            values, log_det = {}, jnp.zeros(())
            for name, value in z.items():
                if name in self._transforms:
                    t = self._transforms[name]
                    x = t(value)
                    log_det = log_det + jnp.sum(t.log_abs_det_jacobian(value, x))
                    values[name] = x
                else:
                    values[name] = value
            return self.energy(params, values) - log_det

        return potential

    def init_values(self, rng_key: jax.Array, num_chains: int = 1) -> Values:
        """Random initial states with a leading ``num_chains`` axis (constrained values).

        Continuous sites: uniform on (-2, 2) in unconstrained space (NumPyro's
        ``init_to_uniform``); discrete sites: uniform draws from the base measure.

        Returns:
            dict state site -> array of shape ``(num_chains, *site_shape)``.
        """
        if int(num_chains) < 1:
            raise ValueError(f"num_chains must be >= 1, got {num_chains}")
        keys = jax.random.split(rng_key, len(self.state_sites))
        out = {}
        for key, name in zip(keys, self.state_sites, strict=True):
            info = self._sites[name]
            if info.is_discrete:
                fn: Distribution = info.dist
                out[name] = jnp.broadcast_to(
                    fn.sample(key, (num_chains,)), (num_chains, *info.shape)
                ).astype(jnp.result_type(float))
            else:
                t = biject_to(info.support)
                ushape = t.inverse_shape(info.shape)
                out[name] = t(
                    jax.random.uniform(key, (num_chains, *ushape), minval=-2.0, maxval=2.0)
                )
        return out

    def __repr__(self) -> str:
        states = ", ".join(f"{n}{self._sites[n].shape}" for n in self.state_sites)
        return f"EnergyModel({getattr(self.model, '__name__', 'model')}; state: {states})"
