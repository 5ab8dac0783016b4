"""``ParallelTempering``: non-reversible parallel tempering around any kernel adapter.

The NumPyro face of :mod:`ebm_ppl.kernels.tempering`. It wraps a kernel adapter built on a
model (:class:`~ebm_ppl.infer.langevin.MALA`, :class:`~ebm_ppl.infer.discrete.BlockGibbs`,
:class:`~ebm_ppl.infer.discrete.GibbsWithGradients`, :class:`~ebm_ppl.infer.composite.Composite`,
...): every chain carries ``num_temperatures`` replicas on the path
``π_β ∝ ref^{1-β} [base · e^{-E}]^β``, each moved by the wrapped kernel on its tempered
energy, with deterministic even-odd swaps of adjacent replicas. The chain's draws are the
``β = 1`` replica's. Per-temperature step sizes and the schedule are adapted during warmup
(``docs/tempering.md``).

For a proper base measure (spins, bits, a NumPyro distribution) the reference is the base;
an improper ``Flat`` base needs ``reference=`` (a NumPyro distribution, or a dict site ->
distribution) with the site's shape and support.

Examples:
    >>> import jax, jax.numpy as jnp, numpyro
    >>> import numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> import ebm_ppl as ebm
    >>> from ebm_ppl.infer import MALA, ParallelTempering
    >>> def double_well():
    ...     x = numpyro.sample("x", ebm.Flat(()))
    ...     ebm.energy("E", 4.0 * (x**2 - 1.0) ** 2)
    >>> kernel = ParallelTempering(MALA(double_well), num_temperatures=4,
    ...                            reference=dist.Normal(0.0, 2.0))
    >>> mcmc = MCMC(kernel, num_warmup=50, num_samples=50, num_chains=2,
    ...             chain_method="vectorized", progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    >>> mcmc.get_samples(group_by_chain=True)["x"].shape
    (2, 50)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from ebm_ppl.infer.adapter import KernelAdapter, check_finite_starts
from ebm_ppl.infer.discrete import _stand_in, _trace_plan
from ebm_ppl.kernels import tempering

__all__ = [
    "PTState",
    "ParallelTempering",
    "check_tempering",
    "tempered_kernel",
    "tempering_options",
]


class PTState(NamedTuple):
    """State of a :class:`ParallelTempering` chain.

    Attributes:
        pt_state: :class:`ebm_ppl.kernels.tempering.TemperingState` (replicas, schedule,
            step sizes, swap statistics, round trips).
        info: :class:`ebm_ppl.kernels.tempering.TemperingInfo` of the last iteration.
        rng_key: PRNG key of the chain.
        reference: with ``reference="pilot"``, the chain's fitted Gaussian references (dict
            site -> :class:`~ebm_ppl.kernels.tempering.DiagonalGaussian`); else ``None``.

    Properties: ``z`` (the ``β = 1`` replica's position), ``potential_energy`` (its energy
    ``E(z)``), ``diverging`` (its last local transition), ``i`` (iterations done).

    Examples:
        >>> PTState._fields
        ('pt_state', 'info', 'rng_key', 'reference')
    """

    pt_state: tempering.TemperingState
    info: tempering.TemperingInfo
    rng_key: jax.Array
    reference: Any = None

    @property
    def z(self) -> Any:
        return self.pt_state.position

    @property
    def potential_energy(self) -> jax.Array:
        return self.pt_state.energy[..., -1]

    @property
    def diverging(self) -> jax.Array:
        return self.info.is_divergent

    @property
    def i(self) -> jax.Array:
        return self.pt_state.iteration


class _Inner(NamedTuple):
    """The wrapped adapter's pure pair as a ``Sampler`` of :mod:`ebm_ppl.kernels.tempering`."""

    init: Callable[..., Any]
    step: Callable[..., Any]
    uses_step_size: bool


_OPTIONS = (
    "num_temperatures",
    "betas",
    "reference",
    "swap",
    "num_local_steps",
    "adapt_schedule",
    "adapt_step_size",
    "target_accept_prob",
    "schedule_fraction",
)


def tempering_options(tempering_arg: Any, argument: str = "tempering") -> dict[str, Any]:
    """Normalize ``sample(tempering=...)``: an int (the number of temperatures) or a dict of
    :class:`ParallelTempering` options.

    Raises:
        TypeError, ValueError: naming ``argument``.

    Examples:
        >>> tempering_options(8)
        {'num_temperatures': 8}
        >>> tempering_options({"num_temperatures": 4, "swap": "reversible"})
        {'num_temperatures': 4, 'swap': 'reversible'}
    """
    if isinstance(tempering_arg, bool):
        raise TypeError(f"{argument} must be an int or a dict of options, got {tempering_arg!r}")
    if isinstance(tempering_arg, (int, np.integer)):
        return {"num_temperatures": int(tempering_arg)}
    if isinstance(tempering_arg, Mapping):
        unknown = sorted(set(tempering_arg) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"{argument} has unknown option(s) {unknown}; known: {list(_OPTIONS)}")
        return dict(tempering_arg)
    raise TypeError(
        f"{argument} must be an int (number of temperatures) or a dict of options, got "
        f"{type(tempering_arg).__name__}"
    )


def _check_options(
    num_temperatures: Any,
    betas: Any,
    swap: str,
    num_local_steps: Any,
    schedule_fraction: Any,
) -> int:
    if betas is not None:
        b = tempering.check_schedule(betas, "betas")
        if num_temperatures is not None and int(num_temperatures) != b.shape[0]:
            raise ValueError(
                f"num_temperatures ({num_temperatures}) must equal len(betas) ({b.shape[0]})"
            )
        num_temperatures = b.shape[0]
    num = tempering._check_num_temperatures(8 if num_temperatures is None else num_temperatures)
    if swap not in tempering.SWAP_SCHEMES:
        raise ValueError(f"swap must be one of {tempering.SWAP_SCHEMES}, got {swap!r}")
    if (
        isinstance(num_local_steps, bool)
        or not isinstance(num_local_steps, (int, np.integer))
        or num_local_steps < 1
    ):
        raise ValueError(f"num_local_steps must be an int >= 1, got {num_local_steps!r}")
    if not 0.0 < float(schedule_fraction) <= 1.0:
        raise ValueError(f"schedule_fraction must be in (0, 1], got {schedule_fraction!r}")
    return num


def check_tempering(tempering_arg: Any, plan: Any, argument: str = "tempering") -> dict[str, Any]:
    """Check ``sample(tempering=...)`` against the model's plan before anything compiles.

    Returns:
        the options as a dict.

    Raises:
        TypeError, ValueError: bad options; an improper base without a reference; a
            reference of the wrong shape or support (naming the argument).
    """
    opts = tempering_options(tempering_arg, argument)
    _check_options(
        opts.get("num_temperatures"),
        opts.get("betas"),
        opts.get("swap", "deo"),
        opts.get("num_local_steps", 1),
        opts.get("schedule_fraction", 0.75),
    )
    _check_reference(plan, opts.get("reference"))
    return opts


def _check_reference(plan: Any, reference: Any) -> float | None:
    """Check ``reference`` against the plan; return ``log Z`` of the reference."""
    return tempering.reference_energy(plan, reference=reference, argument="reference")[1]


_NOT_TEMPERED = ("nuts", "hmc", "sgld")


def tempered_kernel(
    kernel: str, kernel_name: str, plan: Any, tempering_arg: Any
) -> tuple[str, dict[str, Any]]:
    """The kernel ``sample(kernel=..., tempering=...)`` wraps, and the checked options.

    ``kernel="auto"`` on an all-continuous model tempers MALA (NUTS is NumPyro's and not
    wrapped); NUTS, HMC and SGLD named explicitly are refused.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     s = numpyro.sample("s", ebm.Spins(3))
        ...     ebm.energy("E", -jnp.sum(s[1:] * s[:-1]))
        >>> tempered_kernel("auto", "gibbs", ebm.EnergyModel(m).plan, 4)
        ('gibbs', {'num_temperatures': 4})
    """
    if kernel_name in _NOT_TEMPERED:
        if str(kernel).lower() == "auto" and kernel_name == "nuts":
            kernel_name = "mala"
        else:
            raise ValueError(
                f"kernel={kernel_name!r} cannot be tempered: tempering wraps 'mala', 'ula', "
                "'gibbs', 'gwg' or 'composite' (or build ParallelTempering(kernel) yourself)"
            )
    return kernel_name, check_tempering(tempering_arg, plan)


class ParallelTempering(MCMCKernel):
    """Non-reversible parallel tempering (Syed et al. 2022) around a kernel adapter.

    Args:
        kernel: a kernel adapter of :mod:`ebm_ppl.infer` built with ``model=`` (``MALA``,
            ``ULA``, ``BlockGibbs``, ``GibbsWithGradients``, ``Composite``, ...). Its
            initial step size starts every temperature; its own adaptation is not used.
        num_temperatures: replicas per chain, ``N + 1 >= 2`` (default 8; or ``len(betas)``).
        betas: initial schedule, strictly increasing from 0 to 1 (default equally spaced).
        reference: the path's reference: ``None`` (the base measure; improper ``Flat``
            sites need one), a NumPyro distribution, a dict site -> distribution, or
            ``"pilot"``: for each improper site a diagonal Gaussian fitted to a 200-step pilot
            run of the kernel on the model from the replicas' starts (mean, 2 x standard
            deviation), per chain (:func:`ebm_ppl.kernels.tempering.pilot_reference`).
        swap: ``"deo"`` (deterministic even-odd, non-reversible) or ``"reversible"``.
        num_local_steps: transitions of the wrapped kernel per replica between swaps.
        adapt_schedule: re-fit the schedule in doubling rounds during warmup.
        adapt_step_size: per-temperature dual averaging during warmup (default: when the
            kernel has a step size).
        target_accept_prob: target of that adaptation (default: the wrapped kernel's).
        schedule_fraction: share of the warmup spent on schedule rounds.

    ``sample_stats`` (ArviZ names, per draw): ``potential_energy``, ``acceptance_rate``,
    ``diverging`` and ``step_size`` of the ``β = 1`` replica, plus ``beta`` ``(T,)``,
    ``swap_acceptance`` ``(T-1,)`` (``min(1, α)`` of every adjacent pair), ``replica`` ``(T,)``
    (which replica sits at each temperature), ``round_trips`` (since warmup) and
    ``energy_gap`` ``(T,)`` (``E - E_ref`` at each temperature; the stepping-stone input).

    Raises:
        TypeError: ``kernel`` is not a kernel adapter.
        ValueError: bad options (naming them); at :meth:`init`, an improper base without a
            reference or a reference of the wrong shape or support.

    Examples:
        >>> import numpyro, numpyro.distributions as dist, ebm_ppl as ebm
        >>> from ebm_ppl.infer import MALA
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", ((x**2 - 1.0) ** 2).sum())
        >>> pt = ParallelTempering(MALA(m), 6, reference=dist.Normal(0.0, 2.0).expand((2,)).to_event(1))
        >>> pt.num_temperatures, type(pt.inner_kernel).__name__
        (6, 'MALA')
        >>> ParallelTempering(MALA(m), betas=[0.0, 0.5, 0.4, 1.0])
        Traceback (most recent call last):
        ...
        ValueError: betas must be strictly increasing, got [0.0, 0.5, 0.4, 1.0]
    """

    def __init__(
        self,
        kernel: KernelAdapter,
        num_temperatures: int | None = None,
        *,
        betas: Any = None,
        reference: Any = None,
        swap: str = "deo",
        num_local_steps: int = 1,
        adapt_schedule: bool = True,
        adapt_step_size: bool | None = None,
        target_accept_prob: float | None = None,
        schedule_fraction: float = 0.75,
    ):
        if not isinstance(kernel, KernelAdapter):
            raise TypeError(
                "kernel must be a kernel adapter of ebm_ppl.infer built with model= (MALA, "
                f"BlockGibbs, GibbsWithGradients, Composite, ...), got {type(kernel).__name__}"
            )
        if kernel.model is None:
            raise ValueError("kernel must be built with model= (the reference is read off it)")
        if type(kernel).__name__ == "SGLD":
            raise ValueError("kernel SGLD has a minibatch energy; temper MALA or ULA instead")
        self._num_temperatures = _check_options(
            num_temperatures, betas, swap, num_local_steps, schedule_fraction
        )
        self._inner = kernel
        self._betas = None if betas is None else np.asarray(betas, dtype=float)
        self._reference = reference
        self._swap = swap
        self._num_local_steps = int(num_local_steps)
        self._adapt_schedule = bool(adapt_schedule)
        self._adapt_step_size = adapt_step_size
        target = kernel._target_accept_prob if target_accept_prob is None else target_accept_prob
        if not 0.0 < float(target) < 1.0:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target!r}")
        self._target = float(target)
        self._schedule_fraction = float(schedule_fraction)
        self._reset()

    def _reset(self) -> None:
        self._sample_fn: Callable[..., Any] | None = None
        self._pt_kernel: Callable[..., Any] | None = None
        self._sampler: _Inner | None = None
        self._reference_fn: Callable[..., Any] | None = None
        self._plan: Any = None
        self._sites: tuple[str, ...] = ()
        self.log_z_reference: float | None = None

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> Callable[..., Any] | None:
        return self._inner.model

    @property
    def inner_kernel(self) -> KernelAdapter:
        """The wrapped kernel adapter."""
        return self._inner

    @property
    def num_temperatures(self) -> int:
        return self._num_temperatures

    @property
    def sample_field(self) -> str:
        return "z"

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z",)

    # ------------------------------------------------------------------ init
    def _setup(self, model_args: tuple, model_kwargs: dict) -> None:
        inner = self._inner
        args, kwargs = jax.tree.map(_stand_in, (model_args, model_kwargs))
        plan = _trace_plan(inner._bound_model(), {}, args, kwargs)
        sites = plan.state_sites
        self._plan, self._sites = plan, sites
        fn, log_z = tempering.reference_energy(plan, sites, self._reference, argument="reference")
        self._reference_fn = fn
        self.log_z_reference = log_z
        init_fn, kernel_fn = inner._pure_pair()
        if inner._uses_step_size:

            def step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None):
                return kernel_fn(rng_key, state, energy_fn, step_size)

        else:

            def step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None):
                return kernel_fn(rng_key, state, energy_fn)

        self._sampler = _Inner(inner._init_kernel_state, step, bool(inner._uses_step_size))

    def _init_one(
        self, rng_key: jax.Array, init_params: Any, model_args: tuple, model_kwargs: dict
    ) -> PTState:
        inner = self._inner
        num = self._num_temperatures
        key_state, key_model = jax.random.split(rng_key)
        key_pilot = jax.random.fold_in(rng_key, 1)
        if init_params is None:
            keys = jax.random.split(key_model, num)
            positions = jax.vmap(lambda k: inner._init_position(k, None, model_args, model_kwargs))(
                keys
            )
        else:
            position = inner._init_position(key_model, init_params, model_args, model_kwargs)
            positions = jax.tree.map(lambda x: jnp.broadcast_to(x, (num, *jnp.shape(x))), position)
        inner._validate_position(jax.tree.map(lambda x: x[-1], positions))
        if self._sampler is None:
            self._setup(model_args, model_kwargs)
        assert self._sampler is not None and self._reference_fn is not None
        energy_fn = inner.get_potential_fn(model_args, model_kwargs)
        fitted = None
        reference_fn = self._reference_fn
        if isinstance(self._reference, str):  # "pilot": fitted per chain
            fitted = tempering.pilot_reference(
                key_pilot,
                positions,
                energy_fn,
                sampler=self._sampler,
                plan=self._plan,
                sites=self._sites,
                step_size=inner._step_size,
                target_acceptance_rate=self._target,
            )
            reference_fn = self._reference_of(fitted)
        betas = tempering.default_schedule(num) if self._betas is None else jnp.asarray(self._betas)
        pt_state = tempering.init(
            positions,
            energy_fn,
            reference_fn,
            sampler=self._sampler,
            betas=betas,
            step_size=inner._step_size,
        )
        return PTState(pt_state, self._init_info(pt_state), key_state, fitted)

    def _reference_of(self, fitted: Any) -> Callable[..., Any]:
        if fitted is None:
            assert self._reference_fn is not None
            return self._reference_fn
        return tempering.reference_energy(self._plan, self._sites, dict(fitted))[0]

    def _init_info(self, pt_state: tempering.TemperingState) -> tempering.TemperingInfo:
        num = self._num_temperatures
        dtype = pt_state.betas.dtype
        return tempering.TemperingInfo(
            jnp.zeros((), dtype),
            jnp.array(False),
            jnp.array(False),
            jnp.zeros((num,), dtype),
            jnp.zeros((num - 1,), dtype),
            jnp.zeros((num - 1,), bool),
            jnp.zeros((num - 1,), bool),
        )

    def init(
        self,
        rng_key: jax.Array,
        num_warmup: int,
        init_params: Any = None,
        model_args: tuple = (),
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> PTState:
        """Initial state of one chain (a single key) or a batch of chains (a batch of keys;
        ``init_params`` then has a leading chain axis). Every replica of a chain starts at the
        chain's ``init_params`` when given, else at its own draw of the init strategy."""
        model_args = tuple(model_args)
        model_kwargs = dict(model_kwargs or {})
        self._sampler = None
        self._pt_kernel = None
        single = is_prng_key(rng_key)

        def one(key, params):
            return self._init_one(key, params, model_args, model_kwargs)

        fn = one if single else jax.vmap(one, in_axes=(0, None if init_params is None else 0))
        if not isinstance(rng_key, jax.core.Tracer):
            # NumPyro's model initialization run op by op costs seconds: compile it
            fn = jax.jit(fn)
        state = fn(rng_key, init_params)
        assert self._sampler is not None
        self._pt_kernel = tempering.build_kernel(
            self._sampler,
            num_warmup=int(num_warmup),
            swap=self._swap,
            num_local_steps=self._num_local_steps,
            adapt_step_size=self._adapt_step_size,
            adapt_schedule=self._adapt_schedule,
            target_acceptance_rate=self._target,
            schedule_fraction=self._schedule_fraction,
        )
        self._sample_fn = (
            self._sample_one if single else jax.vmap(self._sample_one, in_axes=(0, None, None))
        )
        energy = state.pt_state.energy
        if not isinstance(energy, jax.core.Tracer):
            # a chain whose replicas do not all start at a finite energy is named
            finite = np.all(np.isfinite(np.asarray(energy)), axis=-1)
            check_finite_starts(
                np.where(finite, 0.0, np.inf), None if init_params is None else "init_params"
            )
        return state

    # ------------------------------------------------------------------ transitions
    def _sample_one(self, state: PTState, model_args: tuple, model_kwargs: Any) -> PTState:
        assert self._pt_kernel is not None and self._reference_fn is not None
        rng_key, key_step = jax.random.split(state.rng_key)
        energy_fn = self._inner.get_potential_fn(tuple(model_args), dict(model_kwargs or {}))
        reference_fn = self._reference_of(state.reference)
        pt_state, info = self._pt_kernel(key_step, state.pt_state, energy_fn, reference_fn)
        return PTState(pt_state, info, rng_key, state.reference)

    def sample(self, state: PTState, model_args: tuple, model_kwargs: Any) -> PTState:
        """One tempering iteration (vectorized over chains if :meth:`init` got a batch of keys)."""
        assert self._sample_fn is not None, "init must be called before sample"
        return self._sample_fn(state, tuple(model_args), model_kwargs)

    def postprocess_fn(self, model_args: tuple, model_kwargs: Any) -> Callable:
        """Map the target replica's ``z`` to constrained site values."""
        return self._inner.postprocess_fn(model_args, model_kwargs)

    def get_potential_fn(self, model_args: tuple = (), model_kwargs: Any = None) -> Callable:
        """The model's energy on the kernel's space (the ``β = 1`` replica's)."""
        return self._inner.get_potential_fn(model_args, model_kwargs)

    def refresh(self, state: PTState, model_args: tuple, model_kwargs: Any) -> PTState:
        """Recompute every replica's cached energies for new conditioning."""
        assert self._sampler is not None and self._reference_fn is not None
        energy_fn = self._inner.get_potential_fn(tuple(model_args), model_kwargs)

        def one(pt_state, fitted):
            reference_fn = self._reference_of(fitted)
            return tempering.refresh(pt_state, energy_fn, reference_fn, sampler=self._sampler)

        pt, fitted = state.pt_state, state.reference
        pt = one(pt, fitted) if pt.betas.ndim == 1 else jax.vmap(one)(pt, fitted)
        return state._replace(pt_state=pt)

    def wrap_model(self, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]):
        """A copy around ``kernel.wrap_model(wrapper)`` (for ``numpyro.infer.Gibbs``)."""
        new = copy.copy(self)
        new._inner = self._inner.wrap_model(wrapper)
        new._reset()
        return new

    def sample_stats(self, state: PTState) -> dict[str, jax.Array]:
        """Per-draw statistics (see the class docstring)."""
        pt = state.pt_state
        stats = {
            "potential_energy": state.potential_energy,
            "acceptance_rate": state.info.acceptance_rate,
            "diverging": state.diverging,
        }
        if self._inner._uses_step_size:
            stats["step_size"] = pt.step_sizes[..., -1]
        stats.update(
            beta=pt.betas,
            swap_acceptance=state.info.swap_acceptance,
            replica=pt.replica,
            round_trips=pt.round_trips,
            energy_gap=pt.energy - pt.reference_energy,
        )
        return stats

    def get_diagnostics_str(self, state: PTState) -> str:
        swap = float(jnp.mean(state.info.swap_acceptance))
        return f"swap acc. {swap:.2f}, round trips {int(state.pt_state.round_trips)}"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_sample_fn", "_pt_kernel", "_sampler", "_reference_fn"):
            state[name] = None
        return state
