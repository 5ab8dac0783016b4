"""Langevin samplers as NumPyro kernels: :class:`ULA`, :class:`MALA`, :class:`SGLD`.

Each class only maps its constructor arguments onto a pure kernel of :mod:`ebm_ppl.kernels`;
everything NumPyro needs (``model=``/``potential_fn=``, ``params=``, warmup adaptation,
vectorized chains, Gibbs blocks, sample statistics) comes from
:class:`~ebm_ppl.infer.adapter.KernelAdapter`. Importing this module registers the names
``"ula"``, ``"mala"`` and ``"sgld"`` for ``ebm_ppl.sample(kernel=...)``.

Examples:
    >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
    >>> from numpyro.infer import MCMC
    >>> from ebm_ppl.infer.langevin import MALA
    >>> def double_well():
    ...     x = numpyro.sample("x", ebm.Flat(()))
    ...     ebm.energy("E", 2.0 * (x**2 - 1.0) ** 2)
    >>> mcmc = MCMC(MALA(double_well), num_warmup=20, num_samples=30, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    >>> mcmc.get_samples()["x"].shape
    (30,)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import potential_energy

from ebm_ppl.infer.adapter import AdapterState, KernelAdapter
from ebm_ppl.infer.registry import register_kernel
from ebm_ppl.kernels import mala, sgld, ula
from ebm_ppl.kernels.ula import check_step_size

__all__ = ["MALA", "SGLD", "ULA"]


class MALA(KernelAdapter):
    """Metropolis-adjusted Langevin kernel for ``numpyro.infer.MCMC`` and ``ebm_ppl.sample``.

    Proposal ``z' = z - ε M⁻¹∇E(z) + sqrt(2ε M⁻¹) ξ`` with a Metropolis–Hastings correction
    (:mod:`ebm_ppl.kernels.mala`), on NumPyro's unconstrained space. The step size is tuned
    during warmup by dual averaging toward ``target_accept_prob`` (0.574, the optimal rate of
    Roberts & Rosenthal 1998).

    Divergence (``state.diverging``, ``extra_fields=("diverging",)``) follows NumPyro's HMC: a
    transition is divergent when its energy error, ``-log α`` of the Metropolis–Hastings ratio
    (``+inf`` for a non-finite proposal), exceeds ``max_delta_energy``; such a proposal has
    acceptance below ``e^-max_delta_energy`` and is rejected. ``state.potential_energy`` is
    ``E(z)`` on the unconstrained space, as NumPyro's HMC reports it.

    Args:
        model: NumPyro (energy) model; exactly one of ``model`` and ``potential_fn``.
        potential_fn: energy ``z -> scalar`` of a pytree ``z``.
        params: constrained values of the model's ``numpyro.param`` sites.
        step_size: initial step size ``ε > 0``.
        adapt_step_size: dual averaging during warmup (default ``True``).
        target_accept_prob: acceptance target of the adaptation.
        adapt_mass_matrix: windowed diagonal mass adaptation during warmup.
        inverse_mass_matrix: initial diagonal ``(d,)``; identity if ``None``.
        init_strategy: NumPyro init strategy for ``model=``.
        max_delta_energy: divergence threshold on the energy error (NumPyro's default 1000).

    Numbers may be traced (a kernel built inside ``jax.jit``); they are checked when concrete.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from numpyro.infer import MCMC
        >>> kernel = MALA(potential_fn=lambda z: 0.5 * jnp.sum(z**2), step_size=1.0)
        >>> mcmc = MCMC(kernel, num_warmup=20, num_samples=20, num_chains=2,
        ...             chain_method="vectorized", progress_bar=False)
        >>> mcmc.run(jax.random.PRNGKey(0), init_params=jnp.zeros((2, 3)))
        >>> mcmc.get_samples(group_by_chain=True).shape
        (2, 20, 3)
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], jax.Array] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        step_size: float = 0.1,
        adapt_step_size: bool = True,
        target_accept_prob: float = 0.574,
        adapt_mass_matrix: bool = False,
        inverse_mass_matrix: Any = None,
        init_strategy: Callable[..., Any] = init_to_uniform,
        max_delta_energy: float = 1000.0,
    ):
        super().__init__(
            model,
            potential_fn,
            params=params,
            step_size=step_size,
            adapt_step_size=adapt_step_size,
            target_accept_prob=target_accept_prob,
            adapt_mass_matrix=adapt_mass_matrix,
            inverse_mass_matrix=inverse_mass_matrix,
            init_strategy=init_strategy,
            max_delta_energy=max_delta_energy,
        )

    def _build(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        return mala.init, mala.build_kernel(max_delta_energy=self._max_delta_energy)

    def _info_cls(self) -> type:
        return mala.MALAInfo


class ULA(KernelAdapter):
    """Unadjusted Langevin kernel (no Metropolis correction, so biased at any step size).

    ``z' = z - ε M⁻¹∇E(z) + sqrt(2ε M⁻¹) ξ`` (:mod:`ebm_ppl.kernels.ula`), optionally with the
    gradient norm and the state clipped, as in EBM training. On ``N(0, s²)`` the stationary
    variance is ``s² / (1 - ε / (2 s²))``.

    Divergence: a step whose energy rises by more than ``max_delta_energy`` (NumPyro's HMC
    threshold, 1000) is flagged ``diverging`` (and still taken: ULA has no rejection); a step
    to a point with a non-finite energy or gradient is refused and flagged.

    Args:
        model: NumPyro (energy) model; exactly one of ``model`` and ``potential_fn``.
        potential_fn: energy ``z -> scalar``.
        params: constrained values of the model's ``numpyro.param`` sites.
        step_size: step size ``ε > 0``.
        adapt_step_size: must be ``False``: ULA has no acceptance signal to adapt to.
        adapt_mass_matrix: windowed diagonal mass adaptation during warmup.
        inverse_mass_matrix: diagonal ``(d,)``; identity if ``None``.
        clip_grad_norm: clip the gradient's global norm to this value.
        clip_position: ``(low, high)`` box the state is clipped into.
        init_strategy: NumPyro init strategy for ``model=``.
        max_delta_energy: divergence threshold on the rise of the energy in one step.

    Raises:
        ValueError: ``adapt_step_size=True``; see also :class:`KernelAdapter`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> kernel = ULA(potential_fn=lambda z: 0.5 * jnp.sum(z**2), step_size=0.1,
        ...              clip_position=(-3.0, 3.0))
        >>> state = kernel.init(jax.random.PRNGKey(0), 0, jnp.zeros(2), (), {})
        >>> state = kernel.sample(state, (), {})
        >>> float(state.info.acceptance_rate)
        1.0
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], jax.Array] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        step_size: float = 0.01,
        adapt_step_size: bool = False,
        adapt_mass_matrix: bool = False,
        inverse_mass_matrix: Any = None,
        clip_grad_norm: float | None = None,
        clip_position: tuple[float, float] | None = None,
        init_strategy: Callable[..., Any] = init_to_uniform,
        max_delta_energy: float = 1000.0,
    ):
        if adapt_step_size:
            raise ValueError(
                "adapt_step_size must be False for ULA: without a Metropolis correction there is "
                "no acceptance rate to adapt the step size to (use MALA)"
            )
        # validates the clipping options now rather than at init
        ula.build_kernel(clip_grad_norm=clip_grad_norm, clip_position=clip_position)
        self._clip_grad_norm = clip_grad_norm
        self._clip_position = clip_position
        super().__init__(
            model,
            potential_fn,
            params=params,
            step_size=step_size,
            adapt_step_size=False,
            adapt_mass_matrix=adapt_mass_matrix,
            inverse_mass_matrix=inverse_mass_matrix,
            init_strategy=init_strategy,
            max_delta_energy=max_delta_energy,
        )

    def _build(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        kernel = ula.build_kernel(
            clip_grad_norm=self._clip_grad_norm,
            clip_position=self._clip_position,
            max_delta_energy=self._max_delta_energy,
        )
        return ula.init, kernel

    def _info_cls(self) -> type:
        return ula.ULAInfo


class SGLD(KernelAdapter):
    """Stochastic gradient Langevin dynamics (Welling & Teh 2011) on minibatches.

    With ``model=``, minibatches come from the model's own ``numpyro.plate(name, N,
    subsample_size=B)``: each step reseeds the model, so the plate draws new indices and
    NumPyro scales the subsampled terms by ``N/B`` (an unbiased energy estimate). With
    ``potential_fn=``, ``potential_fn(z, idx)`` must return the sum of the per-example energies
    over the indices ``idx`` (shape ``(batch_size,)``, drawn without replacement from
    ``range(data_size)``); it is rescaled by ``data_size / batch_size`` and
    ``prior_potential_fn(z)`` is added unscaled.

    Args:
        model: NumPyro model with a subsampled plate; exactly one of ``model``/``potential_fn``.
        potential_fn: ``(z, idx) -> scalar`` minibatch energy.
        params: constrained values of the model's ``numpyro.param`` sites.
        step_size: a constant ``ε > 0`` or a schedule ``t -> ε_t`` (e.g.
            :func:`ebm_ppl.kernels.sgld.polynomial_schedule`), ``t`` counting all iterations.
        data_size: ``N``; required with ``potential_fn``.
        batch_size: ``B``; required with ``potential_fn``.
        prior_potential_fn: optional unscaled energy term ``z -> scalar`` for ``potential_fn``.
        clip_grad_norm: optional clipping of the estimated gradient's global norm.
        inverse_mass_matrix: diagonal ``(d,)`` preconditioner; identity if ``None``.
        adapt_step_size: must be ``False`` (no acceptance signal).
        init_strategy: NumPyro init strategy for ``model=``.

    Raises:
        ValueError: ``potential_fn`` without ``data_size`` or ``batch_size``; ``batch_size >
            data_size``; ``adapt_step_size=True``; a non-positive constant step size.

    ``potential_energy`` (``state.potential_energy``, and in :meth:`sample_stats`) is the
    minibatch estimate of ``E`` at the point the last step started from (at the start, the
    estimate at the initial point on one minibatch): SGLD evaluates nothing at the new point.
    For the same reason a step is ``diverging`` only when the minibatch energy, its gradient or
    the new point is not finite (the chain then stays); there is no energy error to threshold.
    Every chain must start where the minibatch energy is finite (else :meth:`init` raises).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from ebm_ppl.kernels.sgld import polynomial_schedule
        >>> data = jnp.linspace(-1.0, 1.0, 100)
        >>> kernel = SGLD(potential_fn=lambda z, idx: jnp.sum(0.5 * (z - data[idx]) ** 2),
        ...               data_size=100, batch_size=10, step_size=polynomial_schedule(0.01))
        >>> state = kernel.init(jax.random.PRNGKey(0), 0, jnp.zeros(()), (), {})
        >>> state = jax.jit(lambda s: kernel.sample(s, (), {}))(state)
        >>> round(float(kernel.sample_stats(state)["step_size"]), 5)  # 0.01 * 2 ** -0.55
        0.00683
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any, jax.Array], jax.Array] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        step_size: float | Callable[[Any], jax.Array] = 1e-3,
        data_size: int | None = None,
        batch_size: int | None = None,
        prior_potential_fn: Callable[[Any], jax.Array] | None = None,
        clip_grad_norm: float | None = None,
        inverse_mass_matrix: Any = None,
        adapt_step_size: bool = False,
        init_strategy: Callable[..., Any] = init_to_uniform,
    ):
        if adapt_step_size:
            raise ValueError(
                "adapt_step_size must be False for SGLD: it has no acceptance rate to adapt to; "
                "pass a decreasing schedule as step_size instead"
            )
        if potential_fn is not None and model is None:
            if data_size is None:
                raise ValueError(
                    "data_size is required with potential_fn= (the minibatch energy is rescaled "
                    "by data_size / batch_size)"
                )
            if batch_size is None:
                raise ValueError("batch_size is required with potential_fn=")
            for name, value in (("data_size", data_size), ("batch_size", batch_size)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be a positive int, got {value!r}")
            if batch_size > data_size:
                raise ValueError(f"batch_size ({batch_size}) must be <= data_size ({data_size})")
        elif model is not None and (data_size is not None or prior_potential_fn is not None):
            raise ValueError(
                "data_size and prior_potential_fn are only used with potential_fn=; with model= "
                "use numpyro.plate(name, N, subsample_size=B)"
            )
        self._schedule = step_size if callable(step_size) else None
        self._data_size = data_size
        self._batch_size = batch_size
        self._prior_potential_fn = prior_potential_fn
        self._clip_grad_norm = clip_grad_norm
        if clip_grad_norm is not None:
            check_step_size(clip_grad_norm, "clip_grad_norm")
        super().__init__(
            model,
            potential_fn,
            params=params,
            step_size=1.0 if callable(step_size) else step_size,
            adapt_step_size=False,
            inverse_mass_matrix=inverse_mass_matrix,
            init_strategy=init_strategy,
        )

    def _build(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        kernel = sgld.build_kernel(
            data_size=None if self._model is not None else self._data_size,
            prior_energy_fn=self._prior_potential_fn,
            clip_grad_norm=self._clip_grad_norm,
        )
        return sgld.init, kernel

    def _info_cls(self) -> type:
        return sgld.SGLDInfo

    def _init_info(self, kernel_state: Any) -> Any:
        dtype = jnp.result_type(float)
        zero = jnp.zeros((), dtype)
        return sgld.SGLDInfo(zero, jnp.array(False), jnp.array(False), zero)

    def _energy_estimate(
        self, rng_key: jax.Array, position: Any, model_args: tuple, model_kwargs: dict
    ) -> jax.Array:
        """The minibatch estimate of ``E(position)`` the pure kernel would compute."""
        energy_fn, batch = self._minibatch(rng_key, model_args, model_kwargs)
        value = energy_fn(position, batch)
        if self._model is None:
            assert self._data_size is not None and self._batch_size is not None
            value = value * (self._data_size / self._batch_size)
            if self._prior_potential_fn is not None:
                value = value + self._prior_potential_fn(position)
        return value

    def _init_from_position(
        self, rng_key: jax.Array, position: Any, model_args: tuple, model_kwargs: dict
    ) -> AdapterState:
        state = super()._init_from_position(rng_key, position, model_args, model_kwargs)
        # the energy at the start (reported and checked); the chain's own key stream is untouched
        key = jax.random.fold_in(rng_key, 1)
        energy = self._energy_estimate(key, position, model_args, model_kwargs)
        energy = jnp.asarray(energy, jnp.result_type(state.info.energy))
        return state._replace(info=state.info._replace(energy=energy))

    def _minibatch(
        self, rng_key: jax.Array, model_args: tuple, model_kwargs: dict
    ) -> tuple[Callable[..., jax.Array], Any]:
        if self._model is None:
            assert self._data_size is not None and self._batch_size is not None
            idx = jax.random.choice(rng_key, self._data_size, (self._batch_size,), replace=False)
            return self._potential_fn, idx  # type: ignore[return-value]
        model = self._bound_model()

        # the "batch" is the key that seeds the model's subsampled plate (new indices each step)
        def energy_fn(z: Any, key: jax.Array) -> jax.Array:
            seeded = handlers.seed(model, rng_seed=key)
            return potential_energy(seeded, model_args, model_kwargs, z)

        return energy_fn, rng_key

    def _step(
        self, rng_key: jax.Array, state: AdapterState, model_args: tuple, model_kwargs: dict
    ) -> tuple[Any, Any]:
        key_batch, key_step = jax.random.split(rng_key)
        energy_fn, batch = self._minibatch(key_batch, model_args, model_kwargs)
        tuning = state.adapt_state
        step_size = tuning.step_size if self._schedule is None else self._schedule(state.i)
        return self._pure_pair()[1](
            key_step, state.kernel_state, energy_fn, batch, step_size, tuning.inverse_mass_matrix
        )

    def _init_kernel_state(self, position: Any, energy_fn: Callable[..., Any]) -> Any:
        return sgld.init(position)

    def get_potential_fn(
        self, model_args: tuple = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> Callable[[Any], jax.Array]:
        """Not used by SGLD's steps (they see minibatch energies); kept for the interface."""
        if self._model is None:
            return lambda z: jnp.zeros(())
        return super().get_potential_fn(model_args, model_kwargs)

    def refresh(
        self, state: AdapterState, model_args: tuple, model_kwargs: Mapping[str, Any] | None
    ) -> AdapterState:
        """Identity: SGLD caches nothing."""
        return state

    def sample_stats(self, state: AdapterState) -> dict[str, jax.Array]:
        stats = super().sample_stats(state)
        if self._schedule is not None:
            # the step size the next transition will use
            stats["step_size"] = jnp.asarray(self._schedule(state.i), jnp.result_type(float))
        return stats


register_kernel("mala", lambda model, params: MALA(model, params=params))
register_kernel("ula", lambda model, params: ULA(model, params=params))
register_kernel("sgld", lambda model, params: SGLD(model, params=params))
