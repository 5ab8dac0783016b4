"""Maximum likelihood by MCMC gradients: contrastive divergence, persistent CD, replay buffer.

The gradient of the negative log-likelihood of an EBM ``p(x) = exp(-E_θ(x)) / Z(θ)`` is

.. math::

    \\nabla_θ \\mathrm{NLL} = \\mathbb E_{x^+ \\sim p_D}[\\nabla_θ E_θ(x^+)]
                             - \\mathbb E_{x^- \\sim p_θ}[\\nabla_θ E_θ(x^-)],

a *positive phase* on data and a *negative phase* on samples of the model. The losses here are
surrogates whose gradient is that estimate: ``mean E_θ(x⁺) - mean E_θ(x⁻)`` with the negatives
``x⁻`` produced by an MCMC kernel under ``stop_gradient`` (no gradient flows through the
chain). The loss *value* is therefore not a likelihood; real diagnostics (positive and negative
energies, their gap, the sampler's acceptance) are reported as metrics.

* :class:`ContrastiveDivergence` (CD-k, Hinton 2002): chains start at the data batch and run
  ``k`` steps.
* :class:`PersistentContrastiveDivergence` (PCD, Tieleman 2008): chains persist across
  updates in the objective state.
* :class:`ReplayBuffer` (Du & Mordatch 2019): chains restart from a buffer of past negatives,
  or with probability ``reinit_prob`` from noise; optional ``α (E(x⁺)² + E(x⁻)²)`` regularizer
  and Langevin with a clipped gradient.

Latent sites (state sites without data, e.g. the hidden units ``h`` of an RBM) are sampled
given the data in the positive phase (``num_positive_steps`` steps of the kernel with the data
clamped: one block-Gibbs sweep is exact for an RBM), or marginalized when a ``free_energy_fn``
is given; the negative phase samples the joint (and, with a ``free_energy_fn``, scores the
negative data sites by their free energy: the Rao-Blackwellized gradient). Observed sites
given in the data (a conditional EBM's inputs) are clamped in both phases.

The negative sampler is any kernel of :mod:`ebm_ppl.kernels` (the module, e.g.
``ebm_ppl.kernels.mala``, or its name ``"mala"``, ``"ula"``, ``"gibbs"``), or any object with
``init(position, energy_fn)`` and ``build_kernel(**options)`` following the same contract.
Continuous sites are sampled on their unconstrained space (``EnergyModel.potential_fn``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.energy.conditionals import binary_levels
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.kernels import _random
from ebm_ppl.kernels.gibbs import interaction_colouring, normalize_colours
from ebm_ppl.kernels.resolve import (
    Sampler,
    check_kernel,
    kernel_name,
    resolve_kernel,
)
from ebm_ppl.objectives.base import Objective

__all__ = [
    "ContrastiveDivergence",
    "PCDState",
    "PersistentContrastiveDivergence",
    "ReplayBuffer",
    "ReplayState",
    "Sampler",
    "resolve_kernel",
]

Values = dict[str, jax.Array]


# ---------------------------------------------------------------------------------- samplers
class MeanField(NamedTuple):
    """Positive phase by conditional means of binary latents (``levels``: site -> (lo, hi))."""

    levels: dict[str, tuple[float, float]]


_kernel_name = kernel_name


def _run_chains(
    sampler: Sampler,
    energy_fn: Callable[[Values, Values], jax.Array],
    rng_key: jax.Array,
    positions: Values,
    fixed: Values,
    num_steps: int,
) -> tuple[Values, jax.Array, jax.Array]:
    """Run ``num_steps`` transitions on every chain (vmapped).

    Args:
        energy_fn: ``energy_fn(position, fixed) -> scalar`` for one chain.
        positions: dict site -> ``(num_chains, ...)`` start (unconstrained for continuous sites).
        fixed: dict site -> ``(num_chains, ...)`` clamped values (may be empty).

    Returns:
        ``(final positions, mean acceptance rate per chain, divergences per chain)``.
    """
    num_chains = jax.tree.leaves(positions)[0].shape[0]
    keys = _random.split(rng_key, num_chains)

    def one_chain(key, position, fixed_values):
        efn = lambda pos: energy_fn(pos, fixed_values)
        state = sampler.init(position, efn)

        def body(state, k):
            state, info = sampler.step(k, state, efn)
            acc = jnp.asarray(getattr(info, "acceptance_rate", 1.0), jnp.float32)
            div = jnp.asarray(getattr(info, "is_divergent", False), jnp.float32)
            return state, (jnp.mean(acc), jnp.mean(div))

        state, (acc, div) = jax.lax.scan(body, state, _random.split(key, num_steps))
        return state.position, jnp.mean(acc), jnp.sum(div)

    return jax.vmap(one_chain)(keys, positions, fixed)


# ---------------------------------------------------------------------------------- model view
class _Phases:
    """The model-specific pieces shared by the three objectives (built once in ``build``)."""

    def __init__(self, model: EnergyModel, context: Mapping[str, Any], who: str):
        if not isinstance(model, EnergyModel):
            model = EnergyModel(model)
        self.model = model
        state = model.state_sites
        # Without fit's context (a direct ``build(model)``), every state site is data.
        self.data_sites = tuple(context.get("data_sites") or state)
        self.latent_sites = tuple(n for n in state if n not in self.data_sites)
        self.condition_sites = tuple(context.get("condition_sites", ()) or ())
        self.sampled = tuple(n for n in state if n in self.data_sites or n in self.latent_sites)
        unknown = [n for n in self.data_sites if n not in state]
        if unknown:
            raise ValueError(
                f"{who}: data site(s) {unknown} are not state sites of the model {list(state)}"
            )
        discrete = [n for n in self.sampled if n in model.discrete_sites]
        if discrete and len(discrete) != len(self.sampled):
            raise ValueError(
                f"{who}: the model mixes discrete {discrete} and continuous "
                f"{[n for n in self.sampled if n not in discrete]} state sites; no single kernel "
                "samples both"
            )
        self.discrete = bool(discrete)
        self.who = who

    def default_kernel(self) -> str:
        return "gibbs" if self.discrete else "mala"

    def gibbs_options(
        self, sites: tuple[str, ...], given: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``colours``, ``levels`` and ``affine`` for :func:`ebm_ppl.kernels.gibbs.build_kernel`.

        Blocks come from the sites' ``infer={"blocks": colours}`` when every moved site declares
        them (an RBM's two layers); otherwise from the interaction graph of the energy (Hessian
        sparsity) at generic random parameters, so couplings initialized at zero still count.
        Options already ``given`` (``kernel_options``) are not recomputed.
        """
        given = given or {}
        model = self.model
        info = model.sites
        found = {n: binary_levels(info[n].support) for n in sites}
        bad = [n for n, lv in found.items() if lv is None]
        if bad:
            raise ValueError(
                f"{self.who}: kernel 'gibbs' samples binary (Bits/Spins) sites only; "
                f"site(s) {bad} are not binary"
            )
        levels = {n: lv for n, lv in found.items() if lv is not None}
        # Energies affine in each unit get all conditionals from one gradient; otherwise (or
        # without that information) exact energy differences, always correct.
        affine = given.get("affine")
        if affine is None:
            affine_of = getattr(model, "affine_sites", None) or {}
            affine = {n: bool(affine_of.get(n, False)) for n in sites}
        trace = getattr(model, "_trace", {})
        declared = {n: (trace.get(n, {}).get("infer") or {}).get("blocks") for n in sites}
        if "colours" in given:
            colours = given["colours"]
        elif all(v is not None for v in declared.values()):
            colours = {n: np.asarray(v) for n, v in declared.items()}
        else:
            key = jax.random.PRNGKey(0)
            params = jax.tree.map(
                lambda p: (
                    _random.normal(key, jnp.shape(p), jnp.result_type(float))
                    if jnp.issubdtype(jnp.result_type(p), jnp.floating)
                    else p
                ),
                model.init_params(key),
            )
            values = {n: v[0] for n, v in model.init_values(key, 1).items()}
            colours = interaction_colouring(lambda pos: model.energy(params, pos), values, levels)
        return {"colours": colours, "levels": levels, "affine": affine}

    def potential(self, params: Any) -> Callable[[Values, Values], jax.Array]:
        """``(z, fixed) -> energy`` on the unconstrained space of continuous sites."""
        pot = self.model.potential_fn(params)
        return lambda z, fixed: pot({**fixed, **z})

    def batch_energy(self, params: Any, values: Values) -> jax.Array:
        return jax.vmap(lambda v: self.model.energy(params, v))(values)

    def fixed(self, batch: Mapping[str, Any]) -> Values:
        return {n: batch[n] for n in self.condition_sites}

    def base_init(self, rng_key: jax.Array, n: int, names: tuple[str, ...]) -> Values:
        values = self.model.init_values(rng_key, n)
        return {k: values[k] for k in names}

    def latent_start(self, rng_key: jax.Array, n: int) -> Values:
        """Starts of the positive-phase latent chains (constrained values).

        Discrete latents start at a fixed feasible state: block Gibbs redraws a conditionally
        independent layer exactly whatever its start, and no random numbers are spent on it.
        Continuous latents start uniformly in (-2, 2) (unconstrained), as ``init_values``.
        """
        info = self.model.sites
        continuous = tuple(n_ for n_ in self.latent_sites if not info[n_].is_discrete)
        out = self.base_init(rng_key, n, continuous) if continuous else {}
        for name in self.latent_sites:
            if name not in out:
                proto = jnp.zeros((n, *info[name].shape), jnp.result_type(float))
                out[name] = jnp.asarray(info[name].support.feasible_like(proto), proto.dtype)
        return out


def _check_int(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


_check_kernel = check_kernel


@dataclasses.dataclass(frozen=True)
class _ContrastiveBase:
    kernel: Any = None
    num_mcmc_steps: int = 1
    step_size: float | None = None
    kernel_options: Mapping[str, Any] | None = None
    num_positive_steps: int = 1
    free_energy_fn: Callable[..., jax.Array] | None = None
    rao_blackwell: bool = True

    # CD starts its chains at the positive latents, which must then be samples.
    _reuses_positive_latents: ClassVar[bool] = False

    def __post_init__(self):
        _check_kernel(self.kernel)
        _check_int(self.num_mcmc_steps, "num_mcmc_steps")
        _check_int(self.num_positive_steps, "num_positive_steps")
        if self.step_size is not None and not (
            isinstance(self.step_size, (int, float))
            and np.isfinite(self.step_size)
            and self.step_size > 0
        ):
            raise ValueError(f"step_size must be a positive finite number, got {self.step_size!r}")
        if self.free_energy_fn is not None and not callable(self.free_energy_fn):
            raise TypeError(f"free_energy_fn must be callable, got {self.free_energy_fn!r}")

    def _kernel_and_options(self, phases: _Phases) -> tuple[Any, dict[str, Any]]:
        kernel = self.kernel if self.kernel is not None else phases.default_kernel()
        return kernel, dict(self.kernel_options or {})

    def _sampler(self, phases: _Phases, sites: tuple[str, ...]) -> Sampler:
        """The kernel for moving ``sites`` (model-derived options such as Gibbs blocks added)."""
        kernel, options = self._kernel_and_options(phases)
        if _kernel_name(kernel) == "gibbs":
            options = {**phases.gibbs_options(sites, given=options), **options}
        return resolve_kernel(kernel, step_size=self.step_size, kernel_options=options)

    def _samplers(self, phases: _Phases) -> tuple[Sampler | MeanField | None, Sampler]:
        """``(positive-phase sampler of the latents or None, negative-phase sampler)``."""
        positive = None
        if phases.latent_sites and self.free_energy_fn is None:
            positive = self._mean_field(phases) or self._sampler(phases, phases.latent_sites)
        return positive, self._sampler(phases, phases.sampled)

    def _mean_field(self, phases: _Phases) -> MeanField | None:
        """Rao-Blackwellized positive phase, when it is exact (see ``rao_blackwell``)."""
        if not self.rao_blackwell or self._reuses_positive_latents:
            return None
        kernel, options = self._kernel_and_options(phases)
        if _kernel_name(kernel) != "gibbs":
            return None
        opts = {**phases.gibbs_options(phases.latent_sites, given=options), **options}
        affine = opts["affine"]
        affine = all(affine.values()) if isinstance(affine, Mapping) else bool(affine)
        shapes = {n: phases.model.sites[n].shape for n in phases.latent_sites}
        _, num_blocks = normalize_colours(
            {n: opts["colours"][n] for n in phases.latent_sites}, shapes
        )
        return MeanField(dict(opts["levels"])) if affine and num_blocks == 1 else None

    def _positive(self, phases, sampler, params, batch, rng_key):
        """Positive-phase energies (differentiable in ``params``) and the latent samples."""
        sg_params = jax.lax.stop_gradient(params)
        data_values = {n: batch[n] for n in phases.data_sites}
        fixed = {**phases.fixed(batch), **data_values}
        n = jax.tree.leaves(data_values)[0].shape[0]
        latents: Values = {}
        if isinstance(sampler, MeanField):
            # The energy is affine in each latent unit and the latents are conditionally
            # independent given the data (no latent-latent terms), so it is affine in the latents:
            # E(v, h) = E(v, h0) + g·(h - h0) with g = ∇_h E(v, h0) at any binary h0. Hence
            # E_{h|v}[E(v, h)] = E(v, h0) + g·(m - h0), m = E[h | v] under stop_gradient, whose
            # θ-gradient is exactly E_{h|v}[∇θ E(v, h)]: no sampling, lower variance.
            potential = phases.potential(params)
            start = phases.latent_start(rng_key, n)

            def expected_energy(row_start, row_fixed):
                e0, g = jax.value_and_grad(lambda lat: potential(lat, row_fixed))(row_start)
                total = e0
                for k, (lo, hi) in sampler.levels.items():
                    logit = -(hi - lo) * jax.lax.stop_gradient(g[k])
                    mean = lo + (hi - lo) * jax.nn.sigmoid(logit)
                    total = total + jnp.sum(g[k] * (mean - row_start[k]))
                return total

            return jax.vmap(expected_energy)(start, fixed), {}
        if phases.latent_sites and self.free_energy_fn is None:
            key_init, key_run = _random.split(rng_key)
            start = phases.model.unconstrain(phases.latent_start(key_init, n))
            # Latents given the data: the data are clamped (part of ``fixed``), only latents move.
            z, _, _ = _run_chains(
                sampler, phases.potential(sg_params), key_run, start, fixed, self.num_positive_steps
            )
            latents = jax.lax.stop_gradient(phases.model.constrain(z))
        if self.free_energy_fn is not None:
            energies = jax.vmap(lambda v: self.free_energy_fn(params, v))(fixed)
        else:
            energies = phases.batch_energy(params, {**fixed, **latents})
        return energies, latents

    def _negative(self, phases, sampler, params, start, fixed, rng_key):
        """Run the negative chains from ``start`` (constrained values) under ``stop_gradient``."""
        sg_params = jax.lax.stop_gradient(params)
        z, acc, div = _run_chains(
            sampler,
            phases.potential(sg_params),
            rng_key,
            phases.model.unconstrain(start),
            fixed,
            self.num_mcmc_steps,
        )
        # The negatives are samples, not functions of θ: the CD/PCD loss is a surrogate whose
        # gradient is E_data[∇E] - E_model[∇E], so no gradient may flow through the chain.
        return jax.lax.stop_gradient(phases.model.constrain(z)), acc, div

    def _negative_energy(self, phases, params, fixed, neg):
        """Energies of the negatives, or their free energies when ``free_energy_fn`` is given.

        ``∇θ F(v) = E_{h|v}[∇θ E(v, h)]``: the free energy of the negative visibles gives the
        Rao-Blackwellized negative statistics (scikit-learn's ``BernoulliRBM`` uses the same),
        and it is the quantity the positive phase reports, so ``energy_gap`` compares like
        with like.
        """
        if self.free_energy_fn is None:
            return phases.batch_energy(params, {**fixed, **neg})
        values = {**fixed, **{n: neg[n] for n in phases.data_sites}}
        return jax.vmap(lambda v: self.free_energy_fn(params, v))(values)

    @staticmethod
    def _metrics(e_pos, e_neg, acc, div) -> dict[str, jax.Array]:
        pos, neg = jnp.mean(e_pos), jnp.mean(e_neg)
        return {
            "pos_energy": pos,
            "neg_energy": neg,
            "energy_gap": pos - neg,
            "acceptance_rate": jnp.mean(acc),
            "divergences": jnp.sum(div),
        }


# ---------------------------------------------------------------------------------- CD-k
@dataclasses.dataclass(frozen=True)
class ContrastiveDivergence(_ContrastiveBase):
    """Contrastive divergence CD-k: negative chains start at the data batch and run ``k`` steps.

    Loss ``mean E_θ(x⁺) − mean E_θ(x⁻)``, a surrogate whose gradient is the CD-k estimate of the
    likelihood gradient (the negatives ``x⁻`` carry no gradient). For models with latent sites
    the chains start at ``(data, latents | data)``.

    Args:
        kernel: the negative sampler: ``"gibbs"``, ``"mala"``, ``"ula"``, a kernel module or a
            compatible object. Default: ``"gibbs"`` for discrete models, ``"mala"`` otherwise.
        num_mcmc_steps: ``k``, transitions per update.
        step_size: step size of Langevin kernels (default 0.01).
        kernel_options: structural options passed to ``build_kernel``.
        num_positive_steps: kernel transitions sampling the latent sites given the data.
        free_energy_fn: optional ``free_energy_fn(params, values) -> scalar``, the energy of the
            data sites with the latents marginalized (``F(v)`` of an RBM); replaces sampling them
            in the positive phase, and scores the negatives' data sites (the chains still
            sample the joint).
        rao_blackwell: unused by CD (its chains start at the sampled positive latents); see
            :class:`PersistentContrastiveDivergence`.

    Metrics: ``pos_energy``, ``neg_energy``, ``energy_gap`` (pos − neg), ``acceptance_rate``
    (negative sampler), ``divergences``.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     mu = numpyro.param("mu", 0.0)
        ...     x = numpyro.sample("x", ebm.Flat(()))
        ...     ebm.energy("E", 0.5 * (x - mu) ** 2)
        >>> cd = ContrastiveDivergence("mala", num_mcmc_steps=5, step_size=0.5)
        >>> obj = cd.build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jnp.linspace(-1.0, 1.0, 8)}
        >>> state = obj.init(jax.random.PRNGKey(0), {"mu": 0.0}, batch)
        >>> loss, (state, metrics) = obj.loss({"mu": 0.0}, state, batch, jax.random.PRNGKey(1))
        >>> sorted(metrics)
        ['acceptance_rate', 'divergences', 'energy_gap', 'neg_energy', 'pos_energy']

    References:
        Hinton, "Training products of experts by minimizing contrastive divergence", Neural
        Computation 14(8), 2002.
    """

    _reuses_positive_latents: ClassVar[bool] = True

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the pure :class:`Objective` for ``model`` (``fit`` passes the data context)."""
        phases = _Phases(model, context, "ContrastiveDivergence")
        pos_sampler, neg_sampler = self._samplers(phases)

        def init(rng_key, params, batch):
            del rng_key, params, batch
            return ()

        def loss(params, obj_state, batch, rng_key):
            key_pos, key_neg = _random.split(rng_key)
            e_pos, latents = self._positive(phases, pos_sampler, params, batch, key_pos)
            data_values = {n: batch[n] for n in phases.data_sites}
            start = {**data_values, **latents}
            if phases.latent_sites and not latents:  # marginalized positive phase
                n = jax.tree.leaves(data_values)[0].shape[0]
                start.update(phases.base_init(_random.fold_in(key_neg, 1), n, phases.latent_sites))
            fixed = phases.fixed(batch)
            neg, acc, div = self._negative(phases, neg_sampler, params, start, fixed, key_neg)
            e_neg = self._negative_energy(phases, params, fixed, neg)
            value = jnp.mean(e_pos) - jnp.mean(e_neg)
            return value, (obj_state, self._metrics(e_pos, e_neg, acc, div))

        return Objective(init, loss)


# ---------------------------------------------------------------------------------- PCD
class PCDState(NamedTuple):
    """State of persistent contrastive divergence.

    Attributes:
        chains: dict state site -> ``(num_chains, *site_shape)``, the persistent negatives.
        energy_trace: ``(diagnostics_window, num_chains)`` ring buffer of the chains' energies
            at the last updates (for split R-hat / ESS on the training chains).
        num_updates: number of updates done (int32 scalar).

    Examples:
        >>> import jax.numpy as jnp
        >>> s = PCDState({"x": jnp.zeros((4, 2))}, jnp.zeros((0, 4)), jnp.zeros((), jnp.int32))
        >>> s.num_updates.shape
        ()
    """

    chains: Values
    energy_trace: jax.Array
    num_updates: jax.Array


def _trace_diagnostics(trace: np.ndarray, count: int) -> dict[str, float]:
    """Split R-hat and ESS of the chains' energies over the filled ring buffer."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    window, num_chains = trace.shape
    if window < 4 or count < window or num_chains < 2:
        return {}
    start = count % window
    ordered = np.concatenate([trace[start:], trace[:start]], axis=0).T  # (chains, draws)
    if not np.all(np.isfinite(ordered)) or np.all(ordered == ordered[:, :1]):
        return {}
    return {
        "chain_energy_rhat": float(split_gelman_rubin(ordered)),
        "chain_energy_ess": float(effective_sample_size(ordered)),
    }


@dataclasses.dataclass(frozen=True)
class PersistentContrastiveDivergence(_ContrastiveBase):
    """Persistent contrastive divergence (PCD, "stochastic maximum likelihood").

    ``num_chains`` negative chains live in the objective state and advance ``num_mcmc_steps``
    transitions per update with the current parameters (Tieleman 2008). Loss
    ``mean E_θ(x⁺) − mean E_θ(x⁻)`` with ``x⁻`` under ``stop_gradient`` (a surrogate; see the
    module docstring).

    Args:
        kernel: the negative sampler (see :class:`ContrastiveDivergence`).
        num_mcmc_steps: transitions per update.
        step_size: step size of Langevin kernels (default 0.01).
        kernel_options: structural options passed to ``build_kernel``.
        num_positive_steps: kernel transitions sampling the latent sites given the data.
        free_energy_fn: optional marginal energy of the data sites (see
            :class:`ContrastiveDivergence`).
        rao_blackwell: with the ``"gibbs"`` kernel, binary latents that form one block of
            conditionally independent units of an energy affine in each unit (an RBM's hidden
            layer) enter the positive phase through their conditional means ``E[h | v]``
            instead of samples: the same expected gradient, lower variance, no random numbers.
        num_chains: persistent chains (default: the batch size).
        init: ``"data"`` (start at random training examples, latents from the base measure) or
            ``"base"`` (every site from the base measure, as ``EnergyModel.init_values``).
        diagnostics_window: updates kept in the energy trace of the chains; ``fit`` records their
            split R-hat and ESS (``chain_energy_rhat``, ``chain_energy_ess``) in
            ``history.events`` once the window is full. ``0`` disables the trace.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     mu = numpyro.param("mu", 0.0)
        ...     x = numpyro.sample("x", ebm.Flat(()))
        ...     ebm.energy("E", 0.5 * (x - mu) ** 2)
        >>> pcd = PersistentContrastiveDivergence("mala", step_size=0.5, num_chains=16)
        >>> obj = pcd.build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jnp.linspace(-1.0, 1.0, 8)}
        >>> state = obj.init(jax.random.PRNGKey(0), {"mu": 0.0}, batch)
        >>> state.chains["x"].shape
        (16,)

    References:
        Tieleman, "Training restricted Boltzmann machines using approximations to the
        likelihood gradient", ICML 2008.
    """

    num_chains: int | None = None
    init: str = "data"
    diagnostics_window: int = 100

    def __post_init__(self):
        super().__post_init__()
        _check_int(self.num_chains, "num_chains", allow_none=True)
        if self.init not in ("data", "base"):
            raise ValueError(f"init must be 'data' or 'base', got {self.init!r}")
        _check_int(self.diagnostics_window, "diagnostics_window", minimum=0)

    def diagnose(self, obj_state: PCDState) -> dict[str, float]:
        """Split R-hat and bulk ESS of the persistent chains' energies over the last window.

        Called by ``fit`` between chunks; empty until the window is full. The chains follow a
        moving target while training, so these measure mixing relative to the learning rate.

        Examples:
            >>> import jax.numpy as jnp
            >>> PersistentContrastiveDivergence().diagnose(
            ...     PCDState({}, jnp.zeros((0, 2)), jnp.zeros((), jnp.int32)))
            {}
        """
        trace = np.asarray(obj_state.energy_trace)
        return _trace_diagnostics(trace, int(obj_state.num_updates))

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the pure :class:`Objective` for ``model`` (``fit`` passes the data context)."""
        phases = _Phases(model, context, "PersistentContrastiveDivergence")
        pos_sampler, neg_sampler = self._samplers(phases)
        batch_size = context.get("batch_size")
        if phases.condition_sites and self.num_chains not in (None, batch_size):
            raise ValueError(
                "PersistentContrastiveDivergence with conditioning sites "
                f"{list(phases.condition_sites)} needs num_chains == batch_size (each chain is "
                f"clamped to one example), got num_chains={self.num_chains}"
            )
        window = self.diagnostics_window

        def init(rng_key, params, batch):
            del params
            data_values = {n: jnp.asarray(batch[n]) for n in phases.data_sites}
            n_batch = jax.tree.leaves(data_values)[0].shape[0]
            num_chains = self.num_chains or n_batch
            key_pick, key_base = _random.split(rng_key)
            chains = phases.base_init(key_base, num_chains, phases.sampled)
            if self.init == "data":
                idx = jax.random.choice(
                    key_pick, n_batch, (num_chains,), replace=num_chains > n_batch
                )
                chains.update({n: v[idx] for n, v in data_values.items()})
            trace = jnp.zeros((window, num_chains), jnp.float32)
            return PCDState(chains, trace, jnp.zeros((), jnp.int32))

        def loss(params, obj_state, batch, rng_key):
            key_pos, key_neg = _random.split(rng_key)
            e_pos, _ = self._positive(phases, pos_sampler, params, batch, key_pos)
            fixed = phases.fixed(batch)
            neg, acc, div = self._negative(
                phases, neg_sampler, params, obj_state.chains, fixed, key_neg
            )
            e_neg = self._negative_energy(phases, params, fixed, neg)
            value = jnp.mean(e_pos) - jnp.mean(e_neg)
            trace = obj_state.energy_trace
            if window:
                trace = trace.at[obj_state.num_updates % window].set(
                    jax.lax.stop_gradient(e_neg).astype(trace.dtype)
                )
            new_state = PCDState(neg, trace, obj_state.num_updates + 1)
            return value, (new_state, self._metrics(e_pos, e_neg, acc, div))

        return Objective(init, loss)


# ---------------------------------------------------------------------------------- replay
class ReplayState(NamedTuple):
    """State of the replay-buffer objective.

    Attributes:
        buffer: dict state site -> ``(buffer_size, *site_shape)``, past negatives (initially noise).
        pointer: next write position (int32 scalar); the buffer is overwritten first-in first-out.

    Examples:
        >>> import jax.numpy as jnp
        >>> ReplayState({"x": jnp.zeros((10, 2))}, jnp.zeros((), jnp.int32)).buffer["x"].shape
        (10, 2)
    """

    buffer: Values
    pointer: jax.Array


@dataclasses.dataclass(frozen=True)
class ReplayBuffer(_ContrastiveBase):
    """Short-run MCMC restarted from a replay buffer of past negatives (Du & Mordatch 2019).

    Each update draws ``num_chains`` starts from the buffer, replaces each with a fresh noise
    sample with probability ``reinit_prob``, runs ``num_mcmc_steps`` transitions (Langevin with
    an optional clipped gradient by default), writes the negatives back (first in, first out)
    and minimizes

    .. math::

        \\overline{E_θ(x^+)} - \\overline{E_θ(x^-)} + α\\,\\overline{E_θ(x^+)^2 + E_θ(x^-)^2}

    with ``x⁻`` under ``stop_gradient``.

    Args:
        kernel: the negative sampler (default ``"ula"`` for continuous models, ``"gibbs"`` for
            discrete ones).
        num_mcmc_steps: transitions per update (default 20).
        step_size: step size of Langevin kernels (default 0.01).
        kernel_options: structural options passed to ``build_kernel``.
        num_positive_steps, free_energy_fn: as in :class:`ContrastiveDivergence`.
        rao_blackwell: as in :class:`PersistentContrastiveDivergence`.
        buffer_size: number of stored negatives.
        reinit_prob: probability that a chain restarts from noise.
        num_chains: negatives per update (default: the batch size).
        l2_reg: ``α``, weight of the energy-magnitude regularizer.
        clip_grad_norm: clip the energy gradient's global norm in Langevin steps (ULA only;
            passed to ``build_kernel``).
        noise_fn: ``noise_fn(rng_key, n) -> dict site -> (n, *site_shape)``; default: the base
            measure (uniform bits/spins) or uniform on ``(-2, 2)`` for real sites
            (``EnergyModel.init_values``).

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     mu = numpyro.param("mu", jnp.zeros(2))
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))
        >>> obj = ReplayBuffer(buffer_size=64, l2_reg=0.1).build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jnp.zeros((8, 2))}
        >>> state = obj.init(jax.random.PRNGKey(0), {"mu": jnp.zeros(2)}, batch)
        >>> loss, (state, m) = obj.loss({"mu": jnp.zeros(2)}, state, batch, jax.random.PRNGKey(1))
        >>> int(state.pointer), state.buffer["x"].shape
        (8, (64, 2))

    References:
        Du & Mordatch, "Implicit generation and modeling with energy-based models", NeurIPS 2019.
    """

    num_mcmc_steps: int = 20
    buffer_size: int = 10000
    reinit_prob: float = 0.05
    num_chains: int | None = None
    l2_reg: float = 0.0
    clip_grad_norm: float | None = None
    noise_fn: Callable[..., Values] | None = None

    def __post_init__(self):
        super().__post_init__()
        _check_int(self.buffer_size, "buffer_size")
        _check_int(self.num_chains, "num_chains", allow_none=True)
        if not (isinstance(self.reinit_prob, (int, float)) and 0.0 <= self.reinit_prob <= 1.0):
            raise ValueError(f"reinit_prob must be in [0, 1], got {self.reinit_prob!r}")
        if not (isinstance(self.l2_reg, (int, float)) and self.l2_reg >= 0.0):
            raise ValueError(f"l2_reg must be >= 0, got {self.l2_reg!r}")
        if self.clip_grad_norm is not None and not (
            isinstance(self.clip_grad_norm, (int, float)) and self.clip_grad_norm > 0
        ):
            raise ValueError(f"clip_grad_norm must be > 0, got {self.clip_grad_norm!r}")
        if self.noise_fn is not None and not callable(self.noise_fn):
            raise TypeError(f"noise_fn must be callable, got {self.noise_fn!r}")

    def _kernel_and_options(self, phases: _Phases) -> tuple[Any, dict[str, Any]]:
        kernel = self.kernel if self.kernel is not None else ("gibbs" if phases.discrete else "ula")
        options = dict(self.kernel_options or {})
        if self.clip_grad_norm is not None:
            options["clip_grad_norm"] = self.clip_grad_norm
        return kernel, options

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the pure :class:`Objective` for ``model`` (``fit`` passes the data context)."""
        phases = _Phases(model, context, "ReplayBuffer")
        pos_sampler, neg_sampler = self._samplers(phases)
        batch_size = context.get("batch_size")
        if phases.condition_sites and self.num_chains not in (None, batch_size):
            raise ValueError(
                f"ReplayBuffer with conditioning sites {list(phases.condition_sites)} needs "
                f"num_chains == batch_size, got num_chains={self.num_chains}"
            )
        if self.num_chains is not None and self.num_chains > self.buffer_size:
            raise ValueError(
                f"num_chains ({self.num_chains}) must be <= buffer_size ({self.buffer_size})"
            )
        size = self.buffer_size

        def noise(rng_key, n):
            if self.noise_fn is None:
                return phases.base_init(rng_key, n, phases.sampled)
            values = self.noise_fn(rng_key, n)
            return {k: jnp.asarray(values[k], jnp.result_type(float)) for k in phases.sampled}

        def init(rng_key, params, batch):
            del params, batch
            return ReplayState(noise(rng_key, size), jnp.zeros((), jnp.int32))

        def loss(params, obj_state, batch, rng_key):
            key_pos, key_pick, key_reinit, key_noise, key_neg = _random.split(rng_key, 5)
            e_pos, _ = self._positive(phases, pos_sampler, params, batch, key_pos)
            n_batch = jax.tree.leaves(batch)[0].shape[0]
            num = self.num_chains or n_batch
            idx = jax.random.randint(key_pick, (num,), 0, size)
            fresh = jax.random.bernoulli(key_reinit, self.reinit_prob, (num,))
            new = noise(key_noise, num)
            start = {
                n: jnp.where(fresh.reshape((num,) + (1,) * (b.ndim - 1)), new[n], b[idx])
                for n, b in obj_state.buffer.items()
            }
            fixed = phases.fixed(batch)
            neg, acc, div = self._negative(phases, neg_sampler, params, start, fixed, key_neg)
            e_neg = self._negative_energy(phases, params, fixed, neg)
            value = jnp.mean(e_pos) - jnp.mean(e_neg)
            if self.l2_reg:
                value = value + self.l2_reg * (jnp.mean(e_pos**2) + jnp.mean(e_neg**2))
            slots = (obj_state.pointer + jnp.arange(num)) % size
            buffer = {
                n: b.at[slots].set(neg[n].astype(b.dtype)) for n, b in obj_state.buffer.items()
            }
            new_state = ReplayState(buffer, (obj_state.pointer + num) % size)
            metrics = self._metrics(e_pos, e_neg, acc, div)
            metrics["reinit_fraction"] = jnp.mean(fresh.astype(jnp.float32))
            return value, (new_state, metrics)

        return Objective(init, loss)
