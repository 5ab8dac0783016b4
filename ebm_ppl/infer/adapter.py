"""One adapter turning a pure ``(init, build_kernel)`` sampler into a NumPyro ``MCMCKernel``.

:class:`KernelAdapter` is abstract: concrete kernels (:class:`~ebm_ppl.infer.langevin.MALA`,
``ULA``, ``SGLD``, the discrete samplers) subclass it and only map their constructor arguments
onto a pure kernel from :mod:`ebm_ppl.kernels`. What the adapter provides once, for all of them:

* ``model=`` xor ``potential_fn=``; ``params=`` (a dict of constrained parameter values,
  e.g. ``EnergyModel.init_params``) substituted into the model's ``numpyro.param`` sites;
* the potential is rebuilt inside :meth:`sample` from ``(model_args, model_kwargs)``, so
  ``jit_model_args``, changing data and Gibbs conditioning work;
* warmup-only step size (dual averaging) and diagonal mass adaptation from
  :mod:`ebm_ppl.kernels.adaptation`, gated by the counter ``state.i < num_warmup``, so a
  continued state never adapts again;
* vectorized chains: given a batch of keys, :meth:`init` vmaps itself (as NumPyro's HMC does);
* ``sample_field = "z"`` (a property of the state: ``kernel_state.position``),
  :meth:`postprocess_fn`, :meth:`refresh` and :meth:`wrap_model` (so it can be a block of
  ``numpyro.infer.Gibbs``), :meth:`get_diagnostics_str`, :meth:`sample_stats` (ArviZ names) and
  ``__getstate__`` (pickling drops closures).

Extension points (override in a subclass):

* ``_build(self) -> (init_fn, kernel_fn)`` **required**: the pure pair, e.g.
  ``(mala.init, mala.build_kernel())``.
* ``unconstrained`` (class attribute, default ``True``): continuous kernels move on NumPyro's
  unconstrained space (``initialize_model``); set ``False`` for discrete kernels, whose position
  is the dict of constrained site values and whose potential is ``-log_density``.
* ``_initialize_model(self, rng_key, init_params, model_args, model_kwargs) -> position``
  (``model=`` only): sets ``_potential_fn_gen``/``_postprocess_fn_gen`` and returns one chain's
  initial position; may run under ``jit``/``vmap`` (positions can be tracers). Under
  ``numpyro.infer.Gibbs`` (model kwargs hold ``_gibbs_sites``) ``init_params`` are constrained
  values and are unconstrained here.
* ``_bound_model(self)``: the model actually traced (default: ``params=`` substituted).
* ``_init_kernel_state(self, position, energy_fn)``: default ``init_fn(position, energy_fn)``.
* ``_step(self, rng_key, state, model_args, model_kwargs) -> (kernel_state, info)``: one pure
  transition; default ``kernel_fn(rng_key, state.kernel_state, energy_fn, step_size,
  inverse_mass_matrix)`` with the current adapted step size and mass.
* ``_init_info(self, kernel_state)``: an info pytree of the kernel's ``XInfo`` type with the
  dtypes of a real step (state shapes are stable from the first step); the default fills
  ``acceptance_rate=0``, ``is_accepted=is_divergent=False`` and any other field with a 0
  scalar of the energy's dtype.
* ``_validate_position(self, position)``: checks at :meth:`init` (default: the mass matrix
  size); called on each chain's concrete position when :meth:`init` gets concrete keys, on a
  traced one inside an enclosing ``jit``/``vmap``.
* ``_uses_step_size`` (class attribute, default ``True``): ``False`` for kernels without a step
  size (Gibbs sweeps); then ``step_size`` is not reported.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from numpyro.infer import MCMC
    >>> from ebm_ppl.infer.langevin import MALA  # a KernelAdapter subclass
    >>> kernel = MALA(potential_fn=lambda z: 0.5 * jnp.sum(z["x"] ** 2), step_size=0.5)
    >>> mcmc = MCMC(kernel, num_warmup=20, num_samples=20, num_chains=2,
    ...             chain_method="vectorized", progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0), init_params={"x": jnp.zeros((2, 3))})
    >>> mcmc.get_samples(group_by_chain=True)["x"].shape
    (2, 20, 3)
"""

from __future__ import annotations

import copy
import hashlib
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model, log_density, unconstrain_fn
from numpyro.util import identity, is_prng_key

from ebm_ppl.kernels import adaptation
from ebm_ppl.kernels.ula import check_max_delta_energy, check_step_size

__all__ = [
    "AdapterState",
    "KernelAdapter",
    "MAX_INIT_TRIES",
    "check_finite_starts",
    "redraw_until_finite",
]

_GIBBS_SITES_KWARG = "_gibbs_sites"  # numpyro.infer.gibbs.GIBBS_SITES_KWARG

#: Draws of the init strategy tried per chain for a start with a finite energy (as NumPyro's
#: ``find_valid_initial_params``).
MAX_INIT_TRIES = 100


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


class AdapterState(NamedTuple):
    """State of a :class:`KernelAdapter` chain (a namedtuple with ``rng_key``, as NumPyro needs).

    Attributes:
        i: iteration counter; warmup adaptation runs while ``i < num_warmup``.
        kernel_state: the pure kernel's state (``position``, ``energy``, ...).
        info: the pure kernel's info of the last transition.
        adapt_state: :class:`ebm_ppl.kernels.adaptation.AdaptationState` (step size and
            inverse mass matrix in use).
        mean_accept_prob: running mean acceptance rate (restarted after warmup).
        rng_key: PRNG key of the chain.

    Properties (readable by ``numpyro.infer.MCMC(...).run(extra_fields=...)``, as NumPyro's
    ``HMCState`` fields):

    * ``z`` (the ``sample_field``): ``kernel_state.position``;
    * ``potential_energy``: the energy ``E(z)`` (the potential on the kernel's space, as
      NumPyro's HMC reports it): ``kernel_state.energy``, or for kernels that cache no energy
      (SGLD) the energy estimate ``info.energy`` of the last transition;
    * ``diverging``: ``info.is_divergent`` of the last transition (``False`` at the start).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from ebm_ppl.kernels import mala
        >>> s = AdapterState(jnp.array(0), mala.init(jnp.ones(2), jnp.sum), None, None,
        ...                  jnp.zeros(()), jax.random.PRNGKey(0))
        >>> s.z.tolist()
        [1.0, 1.0]
    """

    i: jax.Array
    kernel_state: Any
    info: Any
    adapt_state: Any
    mean_accept_prob: jax.Array
    rng_key: jax.Array

    @property
    def z(self) -> Any:
        """The chain's position (unconstrained for continuous kernels)."""
        return self.kernel_state.position

    @property
    def potential_energy(self) -> jax.Array:
        """The energy ``E(z)`` (for SGLD, the minibatch estimate of the last transition)."""
        energy = getattr(self.kernel_state, "energy", None)
        return self.info.energy if energy is None else energy

    @property
    def diverging(self) -> jax.Array:
        """Whether the last transition was divergent (``info.is_divergent``)."""
        return self.info.is_divergent


def redraw_until_finite(
    rng_key: jax.Array,
    draw_fn: Callable[[jax.Array], Any],
    energy_fn: Callable[[Any], jax.Array],
    max_tries: int = MAX_INIT_TRIES,
) -> Any:
    """A start ``draw_fn(key)`` with a finite energy, redrawn up to ``max_tries`` times.

    The first draw uses ``rng_key``, the ``k``-th redraw ``fold_in(rng_key, k)``. Runs under
    ``jit``/``vmap`` (a ``lax.while_loop``); if no draw has a finite energy the last one is
    returned, and the caller's check of the start reports the chain.

    Args:
        rng_key: PRNG key of the chain's initialization.
        draw_fn: ``key -> position``.
        energy_fn: ``position -> scalar`` energy.
        max_tries: draws in total (>= 1).

    Returns:
        the position.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> draw = lambda key: jax.random.uniform(key, (), minval=-2.0, maxval=2.0)
        >>> energy = lambda x: jnp.where(x > 0.0, jnp.inf, 0.5 * x**2)
        >>> x = redraw_until_finite(jax.random.PRNGKey(0), draw, energy)
        >>> bool(jnp.isfinite(energy(x)))
        True
    """
    position = draw_fn(rng_key)

    def cond(carry: tuple[Any, ...]) -> jax.Array:
        i, _, energy = carry
        return (i < max_tries) & ~jnp.isfinite(energy)

    def body(carry: tuple[Any, ...]) -> tuple[Any, ...]:
        i, _, _ = carry
        new = draw_fn(jax.random.fold_in(rng_key, i))
        return i + 1, new, jnp.asarray(energy_fn(new))

    init = (jnp.ones((), jnp.int32), position, jnp.asarray(energy_fn(position)))
    return jax.lax.while_loop(cond, body, init)[1]


def check_finite_starts(
    potential_energy: Any, source: str | None = None, chain_offset: int = 0
) -> None:
    """Raise ``ValueError`` naming the chains whose start has a non-finite energy.

    Args:
        potential_energy: the energy at the start, a scalar (one chain) or ``(num_chains,)``;
            traced values are not checked.
        source: the argument that gave the starts (e.g. ``"init_params"``), or ``None`` for
            starts drawn by the init strategy; for the message.
        chain_offset: global index of the first chain (chains are named ``offset + i``).

    Examples:
        >>> import jax.numpy as jnp
        >>> check_finite_starts(jnp.array([1.0, 2.0]), "init_params")
        >>> check_finite_starts(jnp.array([1.0, jnp.inf, jnp.nan]), "init_params")
        Traceback (most recent call last):
        ...
        ValueError: init_params give chain(s) [1, 2] a start with a non-finite energy
        ([inf, nan]); every chain must start where the energy is finite
    """
    if _is_traced(potential_energy):
        return
    energy = np.asarray(potential_energy)
    bad = np.flatnonzero(~np.isfinite(energy.reshape(-1)))
    if bad.size == 0:
        return
    values = energy.reshape(-1)[bad].tolist()
    # one chain initialized on its own (e.g. NumPyro's sequential chains): no index to name
    chains = "the chain" if energy.ndim == 0 else f"chain(s) {(bad + chain_offset).tolist()}"
    if source is not None:
        raise ValueError(
            f"{source} give {chains} a start with a non-finite energy ({values}); "
            "every chain must start where the energy is finite"
        )
    raise ValueError(
        f"no start with a finite energy found for {chains} in {MAX_INIT_TRIES} draws of the "
        "init strategy; give init values where the energy is finite, or check the model"
    )


def _source(init_params: Any) -> str | None:
    return None if init_params is None else "init_params"


def _latent_sites(trace: Mapping[str, Any]) -> list[str]:
    return [
        name
        for name, site in trace.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site["infer"].get("is_auxiliary", False)
    ]


class KernelAdapter(MCMCKernel):
    """Abstract NumPyro ``MCMCKernel`` around a pure kernel of :mod:`ebm_ppl.kernels`.

    Subclasses implement ``_build`` (see the module docstring for every extension point).

    Args:
        model: NumPyro model (energy model). Exactly one of ``model`` and ``potential_fn``.
        potential_fn: ``z -> scalar`` energy (``-log`` unnormalized density) of a pytree ``z``;
            :meth:`init` then needs ``init_params``.
        params: dict of constrained values for the model's ``numpyro.param`` sites.
        step_size: initial step size ``> 0``.
        adapt_step_size: dual averaging during warmup.
        target_accept_prob: target mean acceptance of the adaptation, in ``(0, 1)``.
        adapt_mass_matrix: windowed diagonal mass adaptation during warmup.
        inverse_mass_matrix: optional initial diagonal ``(d,)`` (``d`` the flat size of ``z``).
        init_strategy: NumPyro init strategy for ``model=``.
        max_delta_energy: divergence threshold on a transition's energy error, as NumPyro's
            HMC (default 1000); used by kernels that have an energy error (MALA, ULA, GWG).

    Numbers (``step_size``, ``target_accept_prob``, ``max_delta_energy``, the mass matrix) may
    be traced values, so a kernel can be built inside ``jax.jit``; they are validated only
    when they are concrete.

    Raises:
        ValueError: both or neither of ``model``/``potential_fn``; a non-positive
            ``step_size`` or ``max_delta_energy``; a ``target_accept_prob`` outside ``(0, 1)``.
        TypeError: a non-callable ``model``/``potential_fn`` or non-dict ``params``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from ebm_ppl.infer.langevin import MALA
        >>> kernel = MALA(potential_fn=lambda z: 0.5 * jnp.sum(z**2))
        >>> state = kernel.init(jax.random.PRNGKey(0), 10, jnp.zeros(2), (), {})
        >>> state = jax.jit(lambda s: kernel.sample(s, (), {}))(state)
        >>> sorted(kernel.sample_stats(state))
        ['acceptance_rate', 'diverging', 'potential_energy', 'step_size']
    """

    unconstrained: bool = True
    _uses_step_size: bool = True

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[..., jax.Array] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        step_size: float = 0.1,
        adapt_step_size: bool = False,
        target_accept_prob: float = 0.574,
        adapt_mass_matrix: bool = False,
        inverse_mass_matrix: Any = None,
        init_strategy: Callable[..., Any] = init_to_uniform,
        max_delta_energy: float = 1000.0,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError(
                "exactly one of model and potential_fn must be given, got "
                + ("both" if model is not None else "neither")
            )
        if model is not None and not callable(model):
            raise TypeError(f"model must be a callable NumPyro model, got {type(model).__name__}")
        if potential_fn is not None and not callable(potential_fn):
            raise TypeError(f"potential_fn must be callable, got {type(potential_fn).__name__}")
        if params is not None:
            if not isinstance(params, Mapping):
                raise TypeError(f"params must be a dict site -> value, got {type(params).__name__}")
            if model is None:
                raise ValueError("params is only used with model=; bind them into potential_fn")
        if self._uses_step_size:
            check_step_size(step_size)
        check_max_delta_energy(max_delta_energy)
        if not _is_traced(target_accept_prob):
            try:
                target = float(target_accept_prob)
            except (TypeError, ValueError):
                raise TypeError(
                    f"target_accept_prob must be a number, got {target_accept_prob!r}"
                ) from None
            if not 0.0 < target < 1.0:
                raise ValueError(
                    f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}"
                )
        if inverse_mass_matrix is not None:
            shape = jnp.shape(inverse_mass_matrix)
            if len(shape) != 1:
                raise ValueError(
                    f"inverse_mass_matrix must be a 1-D diagonal, got shape {tuple(shape)}"
                )
            if not _is_traced(inverse_mass_matrix):
                values = np.asarray(inverse_mass_matrix, dtype=np.float64)
                if not np.all(np.isfinite(values) & (values > 0)):
                    raise ValueError("inverse_mass_matrix must have positive finite entries")
        self._model = model
        self._potential_fn = potential_fn
        self._params = None if params is None else dict(params)
        self._step_size = step_size
        self._adapt_step_size = bool(adapt_step_size)
        self._target_accept_prob = target_accept_prob
        self._max_delta_energy = max_delta_energy
        self._adapt_mass_matrix = bool(adapt_mass_matrix)
        self._inverse_mass_matrix = inverse_mass_matrix
        self._init_strategy = init_strategy
        self._reset()

    def _reset(self) -> None:
        """Drop every closure built at :meth:`init` (NumPyro calls ``init`` again when
        ``_sample_fn`` is ``None``)."""
        self._num_warmup = 0
        self._pure: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        self._adapt_init: Callable[..., Any] | None = None
        self._adapt_update: Callable[..., Any] | None = None
        self._potential_fn_gen: Callable[..., Any] | None = None
        self._postprocess_fn_gen: Callable[..., Any] | None = None
        self._sample_fn: Callable[..., Any] | None = None

    # ------------------------------------------------------------------ extension points
    @abstractmethod
    def _build(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """The pure ``(init, kernel)`` pair of the concrete sampler."""

    def _pure_pair(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        if self._pure is None:
            self._pure = self._build()
        return self._pure

    def _init_kernel_state(self, position: Any, energy_fn: Callable[..., Any]) -> Any:
        return self._pure_pair()[0](position, energy_fn)

    def _step(
        self, rng_key: jax.Array, state: AdapterState, model_args: tuple, model_kwargs: dict
    ) -> tuple[Any, Any]:
        energy_fn = self.get_potential_fn(model_args, model_kwargs)
        tuning = state.adapt_state
        return self._pure_pair()[1](
            rng_key, state.kernel_state, energy_fn, tuning.step_size, tuning.inverse_mass_matrix
        )

    @abstractmethod
    def _info_cls(self) -> type:
        """The pure kernel's ``XInfo`` NamedTuple class."""

    def _init_info(self, kernel_state: Any) -> Any:
        dtype = jnp.result_type(kernel_state.energy)
        values = {
            "acceptance_rate": jnp.zeros((), dtype),
            "is_accepted": jnp.array(False),
            "is_divergent": jnp.array(False),
        }
        cls = self._info_cls()
        fields = cls._fields  # type: ignore[attr-defined]  # a NamedTuple class
        return cls(*(values.get(f, jnp.zeros((), dtype)) for f in fields))

    def _validate_position(self, position: Any) -> None:
        if self._inverse_mass_matrix is not None:
            size = ravel_pytree(position)[0].shape[0]
            if jnp.shape(self._inverse_mass_matrix) != (size,):
                raise ValueError(
                    f"inverse_mass_matrix must have shape ({size},) (the flat size of the state), "
                    f"got {tuple(jnp.shape(self._inverse_mass_matrix))}"
                )

    # ------------------------------------------------------------------ NumPyro interface
    @property
    def model(self) -> Callable[..., Any] | None:
        """The user's model (``None`` for a potential-only kernel); ArviZ reads it."""
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z",)

    def _bound_model(self) -> Callable[..., Any]:
        assert self._model is not None
        if self._params:
            return handlers.substitute(self._model, data=self._params)
        return self._model

    def get_potential_fn(
        self, model_args: tuple = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> Callable[[Any], jax.Array]:
        """The energy on the kernel's space for these model arguments (requires :meth:`init`
        for ``model=``).

        Examples:
            >>> import jax.numpy as jnp
            >>> from ebm_ppl.infer.langevin import MALA
            >>> k = MALA(potential_fn=lambda z: jnp.sum(z**2))
            >>> float(k.get_potential_fn()(jnp.ones(2)))
            2.0
        """
        if self._model is None:
            return self._potential_fn  # type: ignore[return-value]
        if self._potential_fn_gen is None:
            raise RuntimeError("get_potential_fn requires init to have run")
        return self._potential_fn_gen(*model_args, **dict(model_kwargs or {}))

    def postprocess_fn(self, model_args: tuple, model_kwargs: Mapping[str, Any] | None) -> Callable:
        """Map ``z`` to constrained site values (plus deterministic sites) for ``model=``."""
        if self._model is None or self._postprocess_fn_gen is None:
            return identity
        return self._postprocess_fn_gen(*model_args, **dict(model_kwargs or {}))

    def _initialize_model(
        self, rng_key: jax.Array, init_params: Any, model_args: tuple, model_kwargs: dict
    ) -> Any:
        """Set the potential/postprocess generators; return the initial position of one chain."""
        model = self._bound_model()
        if self.unconstrained:
            info = initialize_model(
                rng_key,
                model,
                dynamic_args=True,
                init_strategy=self._init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
            )
            self._potential_fn_gen = info.potential_fn
            self._postprocess_fn_gen = info.postprocess_fn
            if init_params is None:
                return info.param_info.z
            if _GIBBS_SITES_KWARG in model_kwargs:
                # numpyro.infer.Gibbs hands non-HMC blocks constrained values
                return unconstrain_fn(model, model_args, model_kwargs, init_params)
            return init_params

        def potential_fn_gen(*args: Any, **kwargs: Any) -> Callable[[Any], jax.Array]:
            return lambda z: -log_density(model, args, kwargs, z)[0]

        def postprocess_fn_gen(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
            return identity

        self._potential_fn_gen = potential_fn_gen
        self._postprocess_fn_gen = postprocess_fn_gen
        if init_params is not None:
            return init_params

        def draw(key: jax.Array) -> dict[str, Any]:
            seeded = handlers.seed(model, rng_seed=key)
            trace = handlers.trace(
                handlers.substitute(seeded, substitute_fn=self._init_strategy)
            ).get_trace(*model_args, **model_kwargs)
            return {name: jnp.asarray(trace[name]["value"]) for name in _latent_sites(trace)}

        # NumPyro's initialize_model redraws continuous starts until the potential is finite;
        # do the same for the constrained (discrete) starts drawn here.
        energy_fn = potential_fn_gen(*model_args, **model_kwargs)
        return redraw_until_finite(rng_key, draw, energy_fn)

    def _init_position(
        self, key_model: jax.Array, init_params: Any, model_args: tuple, model_kwargs: dict
    ) -> Any:
        if self._model is not None:
            return self._initialize_model(key_model, init_params, model_args, model_kwargs)
        if init_params is None:
            raise ValueError("init_params must be given with potential_fn=")
        return init_params

    def _init_from_position(
        self, rng_key: jax.Array, position: Any, model_args: tuple, model_kwargs: dict
    ) -> AdapterState:
        energy_fn = self.get_potential_fn(model_args, model_kwargs)
        kernel_state = self._init_kernel_state(position, energy_fn)
        size = ravel_pytree(position)[0].shape[0]
        assert self._adapt_init is not None, "init sets the adaptation"
        adapt_state = self._adapt_init(self._step_size, self._inverse_mass_matrix, size)
        return AdapterState(
            jnp.zeros((), jnp.int32),
            kernel_state,
            self._init_info(kernel_state),
            adapt_state,
            jnp.zeros((), jnp.result_type(float)),
            rng_key,
        )

    def init(
        self,
        rng_key: jax.Array,
        num_warmup: int,
        init_params: Any = None,
        model_args: tuple = (),
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> AdapterState:
        """Initial state of one chain (a single key) or of a batch of chains (a batch of keys;
        ``init_params`` then has a leading chain axis).

        With concrete keys, the model initialization is compiled (NumPyro's initialization run
        op by op costs seconds; the first energy evaluation is cheaper eager than compiled), and
        ``_validate_position`` sees the concrete initial position of every chain. Under an
        enclosing trace (e.g. the chains of ``ebm_ppl.sample``) everything is traced inline.

        Every chain must start where the energy is finite. Drawn starts are redrawn up to
        :data:`MAX_INIT_TRIES` times (NumPyro's ``initialize_model`` does this for continuous
        sites, :func:`redraw_until_finite` for discrete ones); with concrete keys a chain still
        without a finite start, or an ``init_params`` start with a non-finite energy, is a
        ``ValueError`` naming the chains (under an enclosing trace, ``ebm_ppl.sample`` checks
        the returned state).

        Raises:
            ValueError: ``potential_fn=`` without ``init_params``; a mass matrix of the wrong size;
                a start with a non-finite energy.
        """
        model_args = tuple(model_args)
        model_kwargs = dict(model_kwargs or {})
        self._num_warmup = int(num_warmup)
        self._adapt_init, self._adapt_update = adaptation.window_adaptation(
            max(self._num_warmup, 0),
            target_acceptance_rate=self._target_accept_prob,
            adapt_step_size=self._adapt_step_size,
            adapt_mass_matrix=self._adapt_mass_matrix,
        )
        if self._model is None and init_params is None:
            raise ValueError("init_params must be given with potential_fn=")
        single = is_prng_key(rng_key)
        self._sample_fn = (
            self._sample_one if single else jax.vmap(self._sample_one, in_axes=(0, None, None))
        )

        def position_of(key: jax.Array, params: Any) -> Any:
            return self._init_position(key, params, model_args, model_kwargs)

        def state_of(key: jax.Array, position: Any) -> AdapterState:
            return self._init_from_position(key, position, model_args, model_kwargs)

        if isinstance(rng_key, jax.core.Tracer):
            # inside an enclosing jit/vmap: trace inline
            keys = jax.random.split(rng_key) if single else jax.vmap(jax.random.split)(rng_key)
            if single:
                position = position_of(keys[1], init_params)
                self._validate_position(position)
                return state_of(keys[0], position)
            in_axes = (0, None if init_params is None else 0)
            positions = jax.vmap(position_of, in_axes=in_axes)(keys[:, 1], init_params)
            self._validate_position(jax.tree.map(lambda x: x[0], positions))
            return jax.vmap(state_of)(keys[:, 0], positions)

        # One compiled single-chain initialization, called per chain: compiling the vmapped
        # model initialization (while loops over init attempts) costs several times more.
        position_jit = jax.jit(position_of) if self._model is not None else position_of
        if single:
            key_state, key_model = jax.random.split(rng_key)
            position = position_jit(key_model, init_params)
            self._validate_position(position)
            state = state_of(key_state, position)
            check_finite_starts(state.potential_energy, _source(init_params))
            return state
        keys = jax.vmap(jax.random.split)(rng_key)
        positions = []
        for c in range(keys.shape[0]):
            params_c = (
                None if init_params is None else jax.tree.map(lambda x, c=c: x[c], init_params)
            )
            position = position_jit(keys[c, 1], params_c)
            self._validate_position(position)
            positions.append(position)
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *positions)
        state = jax.vmap(state_of)(keys[:, 0], stacked)
        check_finite_starts(state.potential_energy, _source(init_params))
        return state

    def _sample_one(
        self, state: AdapterState, model_args: tuple, model_kwargs: Mapping[str, Any] | None
    ) -> AdapterState:
        model_kwargs = dict(model_kwargs or {})
        rng_key, key_step = jax.random.split(state.rng_key)
        kernel_state, info = self._step(key_step, state, model_args, model_kwargs)
        adapt_state = state.adapt_state
        num_warmup = self._num_warmup
        if num_warmup > 0 and (self._adapt_step_size or self._adapt_mass_matrix):
            update = self._adapt_update
            assert update is not None
            flat = ravel_pytree(kernel_state.position)[0] if self._adapt_mass_matrix else None
            # gated by the counter, so a continued (post-warmup) state never adapts again
            adapt_state = jax.lax.cond(
                state.i < num_warmup,
                lambda s: update(state.i, s, info.acceptance_rate, flat),
                lambda s: s,
                adapt_state,
            )
        i = state.i + 1
        n = jnp.where(i <= num_warmup, i, i - num_warmup).astype(state.mean_accept_prob.dtype)
        acc = jnp.asarray(info.acceptance_rate, state.mean_accept_prob.dtype)
        mean_accept_prob = state.mean_accept_prob + (acc - state.mean_accept_prob) / n
        return AdapterState(i, kernel_state, info, adapt_state, mean_accept_prob, rng_key)

    def sample(
        self, state: AdapterState, model_args: tuple, model_kwargs: Mapping[str, Any] | None
    ) -> AdapterState:
        """One transition (vectorized over chains if :meth:`init` got a batch of keys)."""
        assert self._sample_fn is not None, "init must be called before sample"
        return self._sample_fn(state, tuple(model_args), model_kwargs)

    def refresh(
        self, state: AdapterState, model_args: tuple, model_kwargs: Mapping[str, Any] | None
    ) -> AdapterState:
        """Recompute the cached energy (and gradient) at ``state.z`` for new conditioning."""
        energy_fn = self.get_potential_fn(tuple(model_args), model_kwargs)
        return state._replace(kernel_state=self._init_kernel_state(state.z, energy_fn))

    def wrap_model(
        self, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]
    ) -> KernelAdapter:
        """A copy bound to ``wrapper(model)`` (``numpyro.infer.Gibbs`` installs conditioning)."""
        if self._model is None:
            raise ValueError("wrap_model is not supported for kernels built from potential_fn")
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._reset()
        return kernel

    def sample_stats(self, state: AdapterState) -> dict[str, jax.Array]:
        """Per-step statistics in ArviZ's names: ``potential_energy`` (= E(z)),
        ``acceptance_rate``, ``diverging`` (see the kernel's divergence rule) and ``step_size``
        (when the kernel has one)."""
        stats = {
            "potential_energy": state.potential_energy,
            "acceptance_rate": state.info.acceptance_rate,
            "diverging": state.diverging,
        }
        if self._uses_step_size:
            stats["step_size"] = state.adapt_state.step_size
        return stats

    def get_diagnostics_str(self, state: AdapterState) -> str:
        if self._uses_step_size:
            return (
                f"step size {float(state.adapt_state.step_size):.2e}. "
                f"acc. prob={float(state.mean_accept_prob):.2f}"
            )
        return f"acc. prob={float(state.mean_accept_prob):.2f}"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in (
            "_pure",
            "_adapt_init",
            "_adapt_update",
            "_potential_fn_gen",
            "_postprocess_fn_gen",
            "_sample_fn",
        ):
            state[name] = None
        return state


def content_key(tree: Any) -> tuple[Any, ...]:
    """Hashable content key of a pytree of arrays and hashable values (arrays by their bytes).

    What ``sample`` keys its compiled chunks and its checked declarations on.

    Raises:
        TypeError: a leaf that is neither an array nor hashable.

    Examples:
        >>> import numpy as np
        >>> content_key((np.ones(2), 3)) == content_key((np.ones(2), 3))
        True
    """
    leaves, treedef = jax.tree.flatten(tree)
    out: list[Any] = [treedef]
    for leaf in leaves:
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            arr = np.asarray(leaf)
            out.append((arr.shape, str(arr.dtype), hashlib.sha1(arr.tobytes()).hexdigest()))
        else:
            try:
                hash(leaf)
            except TypeError:
                raise TypeError(
                    f"model arguments must be arrays or hashable values, got {leaf!r}"
                ) from None
            out.append((type(leaf).__name__, leaf))
    return tuple(out)
