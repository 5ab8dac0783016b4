"""``EnergyModel``: a NumPyro EBM program compiled into pure JAX functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.distributions.distribution import Distribution
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import log_density

from ebm_ppl.energy.conditionals import (
    categorical_logits,
    check_model_affine,
    check_model_categorical_affine,
    conditional_logits,
)
from ebm_ppl.energy.plan import SitePlan

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
        self.plan = SitePlan.from_trace(self._trace)
        self._sites = {
            name: SiteInfo(
                name,
                spec.role,
                spec.shape,
                spec.support,
                spec.is_discrete,
                spec.dist if spec.role in ("state", "data") else None,
            )
            for name, spec in self.plan.items()
        }
        if not self.state_sites:
            raise ValueError(
                "model has no state sites: declare the state with numpyro.sample(name, base) "
                "(e.g. ebm.Flat(shape), ebm.Spins(shape), ebm.Bits(shape)) without obs="
            )
        self._transforms = {
            name: self.plan[name].transform
            for name in self.continuous_sites
            if self.plan[name].is_constrained
        }
        self._affine: dict[str, bool] | None = None  # see affine_sites (checked on first use)
        self._categorical_affine: dict[str, bool] | None = None  # categorical_affine_sites

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

    @property
    def state_sites(self) -> tuple[str, ...]:
        """Names of the unobserved sample sites (the sampler's state), in model order."""
        return self.plan.state_sites

    @property
    def data_sites(self) -> tuple[str, ...]:
        """Names of observed sample sites (fixed by the model's arguments)."""
        return self.plan.data_sites

    @property
    def param_sites(self) -> tuple[str, ...]:
        """Names of ``numpyro.param`` sites (network modules appear as ``"name$params"``)."""
        return self.plan.param_sites

    @property
    def energy_sites(self) -> tuple[str, ...]:
        """Names of the ``energy``/``factor`` terms."""
        return self.plan.energy_sites

    @property
    def continuous_sites(self) -> tuple[str, ...]:
        """State sites with a continuous support."""
        return self.plan.continuous_sites

    @property
    def discrete_sites(self) -> tuple[str, ...]:
        """State sites with a discrete support (spins, bits, categories)."""
        return self.plan.discrete_sites

    # ------------------------------------------------------------------ parameters
    def init_params(self, rng_key: jax.Array | int) -> Values:
        """Initial parameters (constrained values) for every param site.

        Args:
            rng_key: PRNG key (or an int seed) used by parameter initializers that are callables
                (networks).

        Returns:
            dict site name -> array. Empty if the model has no parameters.
        """
        if isinstance(rng_key, bool) or not (isinstance(rng_key, int) or hasattr(rng_key, "dtype")):
            raise TypeError(f"rng_key must be an int or a PRNG key, got {type(rng_key).__name__}")
        if isinstance(rng_key, int):
            rng_key = jax.random.PRNGKey(rng_key)
        model = handlers.substitute(
            handlers.seed(self.model, rng_seed=rng_key), substitute_fn=init_to_uniform
        )
        tr = handlers.trace(model).get_trace(*self.args, **self.kwargs)
        return {name: tr[name]["value"] for name in self.param_sites}

    # ------------------------------------------------------------------ energies
    def _check_values(self, params: Mapping[str, Any] | None, values: Mapping[str, Any]) -> Values:
        # Structure (keys, shapes, discrete supports) is checked on the host before tracing;
        # concrete parameter values (finite, inside their constraints) are checked too, traced
        # ones cannot be.
        params = self.plan.validate_params(params)
        values = self.plan.validate_values(
            values, required=self.state_sites, check_continuous=False
        )
        return {**params, **values}

    def validate_params(self, params: Any, *, argument: str = "params") -> Values:
        """Check a params dict against the model (:meth:`SitePlan.validate_params`).

        Raises:
            TypeError, ValueError: naming the site (unknown or missing keys, shapes, module
                structure, non-finite values, values outside a ``constraint=``).

        Examples:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist, ebm_ppl as ebm
            >>> def m():
            ...     s = numpyro.param("s", 1.0, constraint=dist.constraints.positive)
            ...     ebm.energy("E", jnp.sum(numpyro.sample("x", ebm.Flat(2)) ** 2) / s)
            >>> ebm.EnergyModel(m).validate_params({"s": -1.0})  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: params['s'] is outside its constraint ...
        """
        return self.plan.validate_params(params, argument=argument)

    def unconstrain_params(self, params: Mapping[str, Any]) -> Values:
        """Parameters on their unconstrained space (:meth:`SitePlan.unconstrain_params`)."""
        return self.plan.unconstrain_params(params)

    def constrain_params(self, unconstrained: Mapping[str, Any]) -> Values:
        """Inverse of :meth:`unconstrain_params`."""
        return self.plan.constrain_params(unconstrained)

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
        if site in self.plan.categorical_sites:
            # q logits per unit, shape site_shape + (q,): energy.conditionals.categorical_logits
            q = self.plan.num_states()[site]
            data = self.plan.to_kernel({n: jnp.asarray(v) for n, v in values.items()})
            return categorical_logits(
                lambda pos: self.energy(params, pos),
                data,
                site,
                q,
                affine=self.categorical_affine_sites[site],
            )
        affine = self.affine_sites
        if site not in affine:
            raise ValueError(f"site must be a binary state site {sorted(affine)}, got {site!r}")
        levels = self.plan[site].levels
        assert levels is not None  # affine_sites holds binary sites only
        data = self.plan.to_kernel({n: jnp.asarray(v) for n, v in values.items()})
        return conditional_logits(
            lambda pos: self.energy(params, pos), data, site, levels, affine=affine[site]
        )

    @property
    def categorical_affine_sites(self) -> dict[str, bool]:
        """Categorical state site -> whether one gradient gives its conditional logits.

        True when the energy is affine in each unit's :func:`ebm_ppl.one_hot` encoding and reads
        the site only through it: :func:`ebm_ppl.energy.conditionals.check_model_categorical_affine`
        (checked once, on first use; a one-hot encoding with the wrong number of states raises).
        """
        if self._categorical_affine is None:
            self._categorical_affine = check_model_categorical_affine(self)
        return dict(self._categorical_affine)

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
                # the model's own dtype (int32 for Bernoulli/Categorical, float for Spins/Bits)
                out[name] = jnp.broadcast_to(
                    fn.sample(key, (num_chains,)), (num_chains, *info.shape)
                ).astype(self.plan[name].dtype)
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
