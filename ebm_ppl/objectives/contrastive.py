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

Latent sites (state sites without data, e.g. the hidden units ``h`` of an RBM, the factors
``z`` of factor analysis) enter the positive phase as samples of ``p(latents | data)``, chosen
from the site plan so that the default gives the likelihood gradient:

* binary latents forming one conditionally independent block of an energy affine in each unit
  (an RBM's hidden layer): their conditional means ``E[h | v]`` (Rao-Blackwellized, exact);
* other binary latents: ``num_positive_steps`` (default 1) kernel transitions from a fixed
  start with the data clamped;
* continuous latents: chains that **persist per training example** (``fit`` passes the data to
  ``build``; a batch's rows are found in it by hashing) and advance ``num_positive_steps``
  (default 10) transitions each time their example is in a batch, with the MALA step size
  adapted toward an acceptance of 0.574 unless ``step_size`` is given. Without the data the
  objective refuses to guess and asks for ``num_positive_steps``.

or they are marginalized when a ``free_energy_fn`` is given. Sampled positive phases report
``pos_acceptance_rate`` and, with 4 or more transitions, ``pos_rhat`` (split-R-hat of each
chain's run against itself, :func:`split_rhat_proxy`) and ``pos_drift_z`` (standardized energy
drift across the chains, :func:`energy_drift_z`) in the metrics (``fit``'s history). The
negative phase samples the joint (and, with a ``free_energy_fn``, scores the negative data
sites by their free energy: the Rao-Blackwellized gradient). Observed sites given in the data
(a conditional EBM's inputs) are clamped in both phases.

The sampler is ``"auto"`` by default: resolved from the site plan by
:func:`ebm_ppl.kernels.resolve.resolve_kernel` (MALA on continuous sites, ULA for the replay
buffer; block Gibbs on binary ones; for mixed models a composite, e.g. block Gibbs with
Gaussian ``v | h`` and Bernoulli ``h | v`` for a Gaussian–Bernoulli RBM). A name (``"mala"``,
``"ula"``, ``"gibbs"``, ``"gwg"``) that cannot move a site is refused, naming the site; a
kernel module or any object with ``init(position, energy_fn)`` and ``build_kernel(**options)``
is used as given. Continuous sites are sampled on their unconstrained space
(``EnergyModel.potential_fn``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ebm_ppl.energy.conditionals import categorical_logits_fn
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.kernels import _random
from ebm_ppl.kernels import tempering as _pt
from ebm_ppl.kernels.gibbs import interaction_colouring, normalize_colours, sweep_uniforms
from ebm_ppl.kernels.resolve import (
    DEFAULT_STEP_SIZE,
    Sampler,
    check_kernel,
    kernel_name,
    resolve_kernel,
)
from ebm_ppl.objectives.base import Objective

__all__ = [
    "CDState",
    "ContrastiveDivergence",
    "PCDState",
    "PersistentContrastiveDivergence",
    "PositiveChains",
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
    *,
    trace: bool = False,
    step_size: Any = None,
) -> tuple[Any, ...]:
    """Run ``num_steps`` transitions on every chain (vmapped).

    Args:
        energy_fn: ``energy_fn(position, fixed) -> scalar`` for one chain.
        positions: dict site -> ``(num_chains, ...)`` start (unconstrained for continuous sites).
        fixed: dict site -> ``(num_chains, ...)`` clamped values (may be empty).
        trace: also return the chains' energies after every transition.
        step_size: a (traced) step size overriding the sampler's own, or ``None``.

    Returns:
        ``(final positions, mean acceptance rate per chain, divergences per chain)``, and with
        ``trace`` the energies ``(num_chains, num_steps)`` as a fourth entry.
    """
    num_chains = jax.tree.leaves(positions)[0].shape[0]
    keys = _random.split(rng_key, num_chains)

    def one_chain(key, position, fixed_values):
        efn = lambda pos: energy_fn(pos, fixed_values)
        state = sampler.init(position, efn)

        def body(state, k):
            if step_size is None:
                state, info = sampler.step(k, state, efn)
            else:
                state, info = sampler.step(k, state, efn, step_size)
            acc = jnp.asarray(getattr(info, "acceptance_rate", 1.0), jnp.float32)
            div = jnp.asarray(getattr(info, "is_divergent", False), jnp.float32)
            energy = jnp.asarray(getattr(state, "energy", 0.0), jnp.float32)
            return state, (jnp.mean(acc), jnp.mean(div), energy)

        state, (acc, div, energies) = jax.lax.scan(body, state, _random.split(key, num_steps))
        return state.position, jnp.mean(acc), jnp.sum(div), energies

    out = jax.vmap(one_chain)(keys, positions, fixed)
    return out if trace else out[:3]


class _Bipartite(NamedTuple):
    """Two blocks of whole binary sites with affine conditionals (an RBM's layers)."""

    blocks: tuple[tuple[str, ...], ...]
    levels: dict[str, tuple[float, float]]
    shapes: dict[str, tuple[int, ...]]


def _bipartite_negative(
    phases: Any, fast: _Bipartite, params: Any, chains: Values, rng_key: jax.Array, num_steps: int
) -> tuple[Values, jax.Array, jax.Array]:
    """``num_steps`` two-block Gibbs sweeps of every chain, each block from one batched product.

    The generic sweep's draws (the same keys and uniforms, the same logits
    ``±(E(flip_i x) − E(x))`` from the gradient), computed for all chains at once: the gradient
    of the summed energies with respect to a block is one matrix product for a bilinear
    coupling (``W h`` for the visible units, ``Wᵀ v`` for the hidden ones), where the vmapped
    per-chain kernel also evaluates the energy. Every draw is kept: the states stay binary
    whatever the logits, and a sweep whose logits are not finite (non-finite parameters, which
    ``fit`` never applies) is counted as rejected and divergent in the metrics, where the
    generic kernel would keep the chain's state. Keeping every draw, and one sweep outside a
    loop, lets XLA share the last block's product with the objective's (the free energy of the
    negatives needs the same ``Wᵀ v``).

    Returns:
        ``(negatives, acceptance per chain, divergences per chain)``.
    """
    pot = phases.potential(jax.lax.stop_gradient(params))
    num_chains = jax.tree.leaves(chains)[0].shape[0]
    # the keys of _run_chains: one per chain, split into one per transition
    keys = jax.vmap(lambda k: _random.split(k, num_steps))(_random.split(rng_key, num_chains))
    dtype = jnp.result_type(*jax.tree.leaves(chains))

    def block_grad(x, names):
        rest = {k: v for k, v in x.items() if k not in names}

        def total(sub):
            return jnp.sum(jax.vmap(lambda row: pot(row, {}))({**rest, **sub}))

        return jax.grad(total)({n: x[n] for n in names})

    def sweep(x, step_keys):
        u = jax.vmap(lambda k: sweep_uniforms(k, fast.shapes, dtype))(step_keys)
        new = dict(x)
        ok = jnp.ones((num_chains,), bool)
        for names in fast.blocks:
            g = block_grad(new, names)
            for n in names:
                lo, hi = fast.levels[n]
                xn = new[n]
                d = (lo + hi - 2.0 * xn) * g[n]
                logit = jnp.where(xn == hi, d, -d)
                ok = ok & jnp.all(jnp.isfinite(logit).reshape(num_chains, -1), axis=1)
                new[n] = jnp.where(u[n] < jax.nn.sigmoid(logit), hi, lo).astype(xn.dtype)
        return new, ok

    if num_steps == 1:
        x, ok = sweep(dict(chains), keys[:, 0])
        ok = ok[None]
    else:
        x, ok = jax.lax.scan(sweep, dict(chains), jnp.swapaxes(keys, 0, 1))
    acc = jnp.mean(ok.astype(jnp.float32), axis=0)
    div = jnp.sum(~ok, axis=0).astype(jnp.float32)
    return jax.lax.stop_gradient(x), acc, div


def split_rhat_proxy(energies: jax.Array) -> jax.Array:
    """Split-R-hat of chains that target *different* conditionals (one per data point).

    Each chain's trajectory (of its energy) is split into halves, and the halves of one chain
    are compared with each other only: ``sqrt(mean_i V_i / mean_i W_i)`` with ``W_i`` the
    within-half variance of chain ``i`` and ``V_i = (n-1)/n W_i + B_i/n`` its split-chain
    variance estimate (Gelman–Rubin with two halves). It is 1 for stationary chains and grows
    when the chains still drift (not yet at their conditional), the failure of too short a
    positive phase. ``NaN`` for fewer than 4 transitions, 1 for constant energies.

    Examples:
        >>> import jax.numpy as jnp
        >>> drift = jnp.tile(jnp.arange(8.0), (3, 1))
        >>> bool(split_rhat_proxy(drift) > 1.5)
        True
    """
    energies = jnp.asarray(energies, jnp.float32)
    k = energies.shape[-1]
    if k < 4:
        return jnp.asarray(jnp.nan, jnp.float32)
    n = k // 2
    a, b = energies[:, :n], energies[:, k - n :]
    within = 0.5 * (jnp.var(a, axis=1, ddof=1) + jnp.var(b, axis=1, ddof=1))
    between = 0.5 * (jnp.mean(a, axis=1) - jnp.mean(b, axis=1)) ** 2 * 2.0  # n * var(means) / n
    var_plus = (n - 1) / n * within + between
    w = jnp.mean(within)
    return jnp.where(w > 0, jnp.sqrt(jnp.mean(var_plus) / jnp.where(w > 0, w, 1.0)), 1.0)


def energy_drift_z(energies: jax.Array) -> jax.Array:
    """Standardized drift of chains' energies between the halves of a run.

    ``mean_i d_i / (sd(d) / sqrt(m))`` with ``d_i`` the mean energy of chain ``i``'s second
    half minus that of its first half, over ``m`` independent chains. Chains at their
    (possibly different) conditionals have ``E[d_i] = 0`` however autocorrelated they are, so
    this is about standard normal; chains still relaxing toward their conditionals (started
    too far, or too few transitions) have a clearly negative value (their energy falls).

    Examples:
        >>> import jax.numpy as jnp
        >>> falling = -jnp.arange(8.0) + jnp.linspace(0.0, 0.1, 5)[:, None]
        >>> bool(energy_drift_z(falling) < -5.0)
        True
    """
    energies = jnp.asarray(energies, jnp.float32)
    m, k = energies.shape
    if k < 2 or m < 2:
        return jnp.asarray(jnp.nan, jnp.float32)
    n = k // 2
    d = jnp.mean(energies[:, k - n :], axis=1) - jnp.mean(energies[:, :n], axis=1)
    se = jnp.std(d, ddof=1) / jnp.sqrt(m)
    return jnp.where(se > 0, jnp.mean(d) / jnp.where(se > 0, se, 1.0), 0.0)


# ---------------------------------------------------------------------------------- examples
def _fmix(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer (uint32 arithmetic wraps)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _row_hashes(rows: Mapping[str, Any], seed: int) -> jax.Array:
    """One uint32 hash per example of the batch ``rows`` (dict site -> ``(n, ...)``).

    Sums (mod 2^32, so the order of the reduction does not matter) of mixed bit patterns of
    every value and its position: identical rows hash identically wherever they are computed.
    """
    total = None
    offset = 0
    for name in sorted(rows):
        x = jnp.asarray(rows[name])
        n = x.shape[0]
        flat = jnp.reshape(x.astype(jnp.float32), (n, -1))
        bits = jax.lax.bitcast_convert_type(flat, jnp.uint32)
        pos = jnp.arange(offset, offset + flat.shape[1], dtype=jnp.uint32)
        mixed = _fmix(bits ^ _fmix(pos * jnp.uint32(0x9E3779B9) + jnp.uint32(seed)))
        part = jnp.sum(mixed, axis=1, dtype=jnp.uint32)
        total = part if total is None else total + part
        offset += flat.shape[1]
    assert total is not None
    return _fmix(total)


class _ExampleIndex:
    """Finds the rows of a batch in the training data (two independent 32-bit row hashes)."""

    def __init__(self, data: Mapping[str, Any]):
        with jax.ensure_compile_time_eval():
            h1 = np.asarray(_row_hashes(data, 0))
            h2 = np.asarray(_row_hashes(data, 1))
        order = np.argsort(h1, kind="stable")
        self.size = int(h1.shape[0])
        self.sites = tuple(sorted(data))
        self._sorted = h1[order]
        self._order = order.astype(np.int32)
        self._h2 = h2

    def lookup(self, batch: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
        """``(index into the data, found)`` of every row of ``batch``."""
        rows = {n: batch[n] for n in self.sites}
        h1, h2 = _row_hashes(rows, 0), _row_hashes(rows, 1)
        sorted_h1 = jnp.asarray(self._sorted)
        pos = jnp.clip(jnp.searchsorted(sorted_h1, h1), 0, self.size - 1)
        idx = jnp.asarray(self._order)[pos]
        found = (sorted_h1[pos] == h1) & (jnp.asarray(self._h2)[idx] == h2)
        return idx, found


# ---------------------------------------------------------------------------------- model view
class _Phases:
    """The model-specific pieces shared by the three objectives (built once in ``build``)."""

    def __init__(self, model: EnergyModel, context: Mapping[str, Any], who: str):
        if not isinstance(model, EnergyModel):
            model = EnergyModel(model)
        self.model = model
        self.plan = model.plan
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
        self.discrete = all(self.plan[n].is_discrete for n in self.sampled)
        self.continuous_latents = tuple(
            n for n in self.latent_sites if not self.plan[n].is_discrete
        )
        data = context.get("data")
        keys = self.data_sites + self.condition_sites
        self.data = (
            {n: data[n] for n in keys}
            if isinstance(data, Mapping) and all(n in data for n in keys)
            else None
        )
        self.who = who
        self._probe: Any = None

    # ------------------------------------------------------------------ kernels
    def affine(self, sites: tuple[str, ...]) -> dict[str, bool]:
        """Binary site -> whether the energy is affine in each unit (checked once per model)."""
        binary = [n for n in sites if self.plan[n].kind == "binary"]
        if not binary:
            return {}
        known = self.model.affine_sites
        return {n: bool(known.get(n, False)) for n in binary}

    def logits_fn(self, sites: tuple[str, ...]) -> Callable[..., Any] | None:
        """Categorical conditionals for the kernels: one gradient where the model allows it."""
        if not any(self.plan[n].kind == "categorical" for n in sites):
            return None
        return categorical_logits_fn(self.model.categorical_affine_sites)

    def needs_probe(self, sites: tuple[str, ...]) -> bool:
        """Whether resolution needs the probe: undeclared binary blocks or declared real ones."""
        for n in sites:
            spec = self.plan[n]
            if spec.kind == "binary" and spec.blocks is None:
                return True
            if spec.kind == "continuous" and spec.blocks is not None:
                return True
        return False

    def probe(self) -> tuple[Callable[[Values], jax.Array], Values]:
        """The energy at generic random parameters and a random state (kernel space).

        Random parameters (standard normal on the unconstrained space), so couplings that
        are initialized at zero still count in the interaction graph.
        """
        if self._probe is None:
            model, plan = self.model, self.plan
            key = jax.random.PRNGKey(0)
            with jax.ensure_compile_time_eval():
                uparams = plan.unconstrain_params(model.init_params(key))
                uparams = jax.tree.map(
                    lambda p: (
                        _random.normal(key, jnp.shape(p), jnp.result_type(float))
                        if jnp.issubdtype(jnp.result_type(p), jnp.floating)
                        else p
                    ),
                    uparams,
                )
                params = plan.constrain_params(uparams)
                values = {n: v[0] for n, v in model.init_values(key, 1).items()}
                position = model.unconstrain(plan.to_kernel(values))
            self._probe = (model.potential_fn(params), position)
        return self._probe

    def sampler(
        self,
        kernel: Any,
        sites: tuple[str, ...],
        step_size: Any,
        options: Mapping[str, Any] | None,
        continuous_kernel: str = "mala",
    ) -> Sampler:
        """The kernel moving ``sites`` (:func:`ebm_ppl.kernels.resolve.resolve_kernel`)."""
        kernel = "auto" if kernel is None else kernel
        try:
            return resolve_kernel(
                kernel,
                plan=self.plan,
                sites=sites,
                purpose="train",
                step_size=step_size,
                kernel_options=options,
                affine=self.affine(sites) if isinstance(kernel, str) else None,
                probe=self.probe() if self.needs_probe(sites) else None,
                continuous_kernel=continuous_kernel,
                logits_fn=self.logits_fn(sites) if isinstance(kernel, str) else None,
            )
        except ValueError as err:
            raise ValueError(f"{self.who}: {err}") from None

    # ------------------------------------------------------------------ energies and values
    def potential(self, params: Any) -> Callable[[Values, Values], jax.Array]:
        """``(z, fixed) -> energy`` on the unconstrained space of continuous sites."""
        pot = self.model.potential_fn(params)
        return lambda z, fixed: pot({**fixed, **z})

    def batch_energy(self, params: Any, values: Values) -> jax.Array:
        return jax.vmap(lambda v: self.model.energy(params, v))(values)

    def fixed(self, batch: Mapping[str, Any]) -> Values:
        return self.plan.to_kernel({n: batch[n] for n in self.condition_sites})

    def data_values(self, batch: Mapping[str, Any]) -> Values:
        return self.plan.to_kernel({n: jnp.asarray(batch[n]) for n in self.data_sites})

    def base_init(self, rng_key: jax.Array, n: int, names: tuple[str, ...]) -> Values:
        values = self.model.init_values(rng_key, n)
        return self.plan.to_kernel({k: values[k] for k in names})

    def latent_start(self, rng_key: jax.Array, n: int) -> Values:
        """Starts of the positive-phase latent chains (constrained values, kernel dtypes).

        Discrete latents start at a fixed feasible state: block Gibbs redraws a conditionally
        independent layer exactly whatever its start, and no random numbers are spent on it.
        Continuous latents start uniformly in (-2, 2) (unconstrained), as ``init_values``.
        """
        plan = self.plan
        out = self.base_init(rng_key, n, self.continuous_latents) if self.continuous_latents else {}
        for name in self.latent_sites:
            if name not in out:
                proto = jnp.zeros((n, *plan[name].shape), jnp.result_type(float))
                out[name] = jnp.asarray(plan[name].support.feasible_like(proto), proto.dtype)
        return out


def _check_int(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


_check_kernel = check_kernel

#: Default positive-phase transitions per update (``num_positive_steps=None``): one block-Gibbs
#: sweep for binary latents (exact for one conditionally independent layer), more for
#: continuous latents, whose chains persist per training example and advance this many steps
#: each time their example is in a batch.
DEFAULT_POSITIVE_STEPS = {"binary": 1, "continuous": 10}


#: Target acceptance rate of the positive-phase MALA chains when their step size adapts, and
#: the rate of the Robbins–Monro update of its logarithm (once per update, on the mean
#: acceptance of the batch's chains).
POSITIVE_TARGET_ACCEPTANCE = 0.574
_POSITIVE_ADAPT_RATE = 0.05


class PositiveChains(NamedTuple):
    """Persistent positive-phase chains: one chain of ``p(latents | example)`` per example.

    Attributes:
        latents: dict latent site -> ``(num_examples, *site_shape)`` (unconstrained values).
        log_step_size: log step size of the chains' Langevin kernel (adapted toward an
            acceptance rate of 0.574 when the objective's ``step_size`` is not given).

    Examples:
        >>> import jax.numpy as jnp
        >>> PositiveChains({"z": jnp.zeros((10, 2))}, jnp.log(0.01)).latents["z"].shape
        (10, 2)
    """

    latents: Values
    log_step_size: jax.Array


class _Positive(NamedTuple):
    """The positive phase of a build: how latents given the data are handled."""

    sampler: Sampler | MeanField | None
    num_steps: int
    examples: _ExampleIndex | None  # per-example persistent chains (None: fresh starts)
    adapt: bool = False  # adapt the chains' step size (MALA, no step_size given)


@dataclasses.dataclass(frozen=True)
class _ContrastiveBase:
    kernel: Any = "auto"
    num_mcmc_steps: int = 1
    step_size: float | None = None
    kernel_options: Mapping[str, Any] | None = None
    num_positive_steps: int | None = None
    free_energy_fn: Callable[..., jax.Array] | None = None
    rao_blackwell: bool = True
    persistent_positive: bool | None = None

    # CD starts its chains at the positive latents, which must then be samples.
    _reuses_positive_latents: ClassVar[bool] = False
    _continuous_kernel: ClassVar[str] = "mala"

    def __post_init__(self):
        _check_kernel(self.kernel)
        _check_int(self.num_mcmc_steps, "num_mcmc_steps")
        _check_int(self.num_positive_steps, "num_positive_steps", allow_none=True)
        if self.step_size is not None and not (
            isinstance(self.step_size, (int, float))
            and np.isfinite(self.step_size)
            and self.step_size > 0
        ):
            raise ValueError(f"step_size must be a positive finite number, got {self.step_size!r}")
        if self.free_energy_fn is not None and not callable(self.free_energy_fn):
            raise TypeError(f"free_energy_fn must be callable, got {self.free_energy_fn!r}")
        if self.persistent_positive not in (None, True, False):
            raise TypeError(
                f"persistent_positive must be None, True or False, got {self.persistent_positive!r}"
            )

    def _kernel_and_options(self, phases: _Phases) -> tuple[Any, dict[str, Any]]:
        kernel = "auto" if self.kernel is None else self.kernel
        return kernel, dict(self.kernel_options or {})

    def _sampler(self, phases: _Phases, sites: tuple[str, ...]) -> Sampler:
        """The kernel for moving ``sites`` (model-derived options such as Gibbs blocks added)."""
        kernel, options = self._kernel_and_options(phases)
        return phases.sampler(
            kernel, sites, self.step_size, options, continuous_kernel=self._continuous_kernel
        )

    def _samplers(self, phases: _Phases) -> tuple[_Positive, Sampler]:
        """``(positive phase of the latents, negative-phase sampler)``."""
        negative = self._sampler(phases, phases.sampled)
        if not phases.latent_sites or self.free_energy_fn is not None:
            return _Positive(None, 0, None), negative
        mean_field = self._mean_field(phases)
        if mean_field is not None:
            return _Positive(mean_field, 0, None), negative
        sampler = self._sampler(phases, phases.latent_sites)
        continuous = bool(phases.continuous_latents)
        steps = self.num_positive_steps
        if steps is None:
            steps = DEFAULT_POSITIVE_STEPS["continuous" if continuous else "binary"]
        persistent = self.persistent_positive
        if persistent is None:
            persistent = continuous and phases.data is not None
        if persistent and phases.data is None:
            raise ValueError(
                f"{type(self).__name__}: persistent_positive=True needs the training data "
                "(ebm.fit passes it to build as data=...)"
            )
        if continuous and not persistent and self.num_positive_steps is None:
            raise ValueError(
                f"{type(self).__name__}: the continuous latent site(s) "
                f"{list(phases.continuous_latents)} need a positive phase that reaches "
                "p(latents | data), and without the training data (ebm.fit passes it to build "
                "as data=...) the chains cannot persist per example: set num_positive_steps "
                "to enough kernel transitions for a fresh chain to mix (check "
                "metrics['pos_rhat'] ~ 1), or build through ebm.fit"
            )
        index = _ExampleIndex(phases.data) if persistent and phases.data is not None else None
        adapt = index is not None and self.step_size is None and "mala" in sampler.block_names
        return _Positive(sampler, int(steps), index, adapt), negative

    def _bipartite(
        self, phases: _Phases, positive: _Positive, negative: Sampler
    ) -> _Bipartite | None:
        """The two-block negative phase (:func:`_bipartite_negative`), when the plan allows it.

        Used automatically by the block Gibbs sampler (``"auto"`` or ``"gibbs"`` without
        kernel options) on models whose sampled sites are binary, declared in two blocks of
        whole sites (:meth:`~ebm_ppl.energy.plan.SitePlan.bipartite_blocks`) with an energy
        affine in every unit, without conditioning sites, and whose latents are marginalized
        or Rao-Blackwellized: an RBM's update is then the few matrix products of the algorithm.
        """
        kernel = "auto" if self.kernel is None else self.kernel
        if not isinstance(kernel, str) or kernel_name(kernel) not in ("auto", "gibbs"):
            return None
        if self.kernel_options or phases.condition_sites or negative.name != "gibbs":
            return None
        if positive.sampler is not None and not isinstance(positive.sampler, MeanField):
            return None
        blocks = phases.plan.bipartite_blocks(phases.sampled)
        if blocks is None:
            return None
        affine = phases.affine(phases.sampled)
        if len(affine) != len(phases.sampled) or not all(affine.values()):
            return None
        plan = phases.plan
        return _Bipartite(
            blocks,
            dict(plan.levels(phases.sampled)),
            {n: tuple(plan[n].shape) for n in phases.sampled},
        )

    def _mean_field(self, phases: _Phases) -> MeanField | None:
        """Rao-Blackwellized positive phase, when it is exact (see ``rao_blackwell``)."""
        if not self.rao_blackwell or self._reuses_positive_latents:
            return None
        kernel, options = self._kernel_and_options(phases)
        if kernel_name(kernel) not in ("auto", "gibbs"):
            return None
        latents = phases.latent_sites
        plan = phases.plan
        if not all(plan[n].kind == "binary" for n in latents):
            return None
        if kernel_name(kernel) == "auto":
            options = dict(options.get("gibbs", options))
        affine = options.get("affine")
        if affine is None:
            affine = phases.affine(latents)
        affine = all(affine.values()) if isinstance(affine, Mapping) else bool(affine)
        if not affine:
            return None
        colours = options.get("colours")
        if colours is None:
            declared = {n: plan[n].blocks for n in latents}
            if all(v is not None for v in declared.values()):
                colours = declared
            else:
                energy_fn, position = phases.probe()
                colours = interaction_colouring(energy_fn, position, plan.levels(latents))
        shapes = {n: plan[n].shape for n in latents}
        _, num_blocks = normalize_colours({n: colours[n] for n in latents}, shapes)
        return MeanField(dict(plan.levels(latents))) if num_blocks == 1 else None

    def _init_positive(
        self, phases: _Phases, positive: _Positive, rng_key
    ) -> PositiveChains | None:
        """Per-example persistent positive chains, or ``None``."""
        if positive.examples is None:
            return None
        start = phases.latent_start(_random.as_key(rng_key), positive.examples.size)
        step = DEFAULT_STEP_SIZE if self.step_size is None else self.step_size
        return PositiveChains(
            phases.model.unconstrain(start), jnp.log(jnp.asarray(step, jnp.float32))
        )

    def _positive(self, phases, positive, params, batch, rng_key, table=None):
        """Positive phase: ``(energies, latent samples, new table, metrics)``.

        Energies are differentiable in ``params``; latents are constrained values (empty when
        marginalized or Rao-Blackwellized); ``table`` the per-example persistent latents.
        """
        sampler = positive.sampler
        sg_params = jax.lax.stop_gradient(params)
        data_values = phases.data_values(batch)
        fixed = {**phases.fixed(batch), **data_values}
        n = jax.tree.leaves(data_values)[0].shape[0]
        latents: Values = {}
        metrics: dict[str, jax.Array] = {}
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

            return jax.vmap(expected_energy)(start, fixed), {}, table, metrics
        if sampler is not None:
            key_init, key_run = _random.split(rng_key)
            start = phases.model.unconstrain(phases.latent_start(key_init, n))
            step_size = None
            if positive.examples is not None and table is not None:
                idx, found = positive.examples.lookup(batch)
                start = {
                    k: jnp.where(
                        found.reshape((n,) + (1,) * (v.ndim - 1)), table.latents[k][idx], v
                    )
                    for k, v in start.items()
                }
                if positive.adapt:
                    step_size = jnp.exp(table.log_step_size)
            # Latents given the data: the data are clamped (part of ``fixed``), only latents move.
            z, acc, _, energies = _run_chains(
                sampler,
                phases.potential(sg_params),
                key_run,
                start,
                fixed,
                positive.num_steps,
                trace=True,
                step_size=step_size,
            )
            z = jax.lax.stop_gradient(z)
            if positive.examples is not None and table is not None:
                slot = jnp.where(found, idx, positive.examples.size)  # not found: dropped
                log_step = table.log_step_size
                if positive.adapt:
                    # Robbins–Monro on log ε toward the target acceptance (once per update).
                    gap = jnp.mean(acc) - POSITIVE_TARGET_ACCEPTANCE
                    log_step = jnp.clip(log_step + _POSITIVE_ADAPT_RATE * gap, -16.0, 4.0)
                table = PositiveChains(
                    {
                        k: t.at[slot].set(z[k].astype(t.dtype), mode="drop")
                        for k, t in table.latents.items()
                    },
                    jax.lax.stop_gradient(log_step),
                )
            latents = phases.model.constrain(z)
            metrics = {"pos_acceptance_rate": jnp.mean(acc)}
            if positive.adapt:
                metrics["pos_step_size"] = jnp.exp(table.log_step_size)
            if positive.num_steps >= 4:
                metrics["pos_rhat"] = split_rhat_proxy(energies)
                metrics["pos_drift_z"] = energy_drift_z(energies)
        if self.free_energy_fn is not None:
            energies = jax.vmap(lambda v: self.free_energy_fn(params, v))(fixed)
        else:
            energies = phases.batch_energy(params, {**fixed, **latents})
        return energies, latents, table, metrics

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
    def _metrics(e_pos, e_neg, acc, div, positive_metrics=None) -> dict[str, jax.Array]:
        pos, neg = jnp.mean(e_pos), jnp.mean(e_neg)
        return {
            "pos_energy": pos,
            "neg_energy": neg,
            "energy_gap": pos - neg,
            "acceptance_rate": jnp.mean(acc),
            "divergences": jnp.sum(div),
            **(positive_metrics or {}),
        }


# ---------------------------------------------------------------------------------- CD-k
class CDState(NamedTuple):
    """State of contrastive divergence when the positive phase persists latents per example.

    Attributes:
        positive: the :class:`PositiveChains` of ``p(latents | example)``, one per example.

    Examples:
        >>> import jax.numpy as jnp
        >>> CDState(PositiveChains({"z": jnp.zeros((100, 2))}, jnp.zeros(()))).positive.latents["z"].shape
        (100, 2)
    """

    positive: PositiveChains


@dataclasses.dataclass(frozen=True)
class ContrastiveDivergence(_ContrastiveBase):
    """Contrastive divergence CD-k: negative chains start at the data batch and run ``k`` steps.

    Loss ``mean E_θ(x⁺) − mean E_θ(x⁻)``, a surrogate whose gradient is the CD-k estimate of the
    likelihood gradient (the negatives ``x⁻`` carry no gradient). For models with latent sites
    the chains start at ``(data, latents | data)``.

    Args:
        kernel: ``"auto"`` (default: from the site plan, see the module docstring),
            ``"gibbs"``, ``"gwg"``, ``"mala"``, ``"ula"``, a kernel module or a compatible
            object; moves the negatives and the sampled positive latents.
        num_mcmc_steps: ``k``, transitions per update.
        step_size: step size of Langevin kernels (default 0.01).
        kernel_options: structural options passed to ``build_kernel``.
        num_positive_steps: kernel transitions sampling the latent sites given the data per
            update (default ``None``: 1 for binary latents, 10 for continuous ones, whose
            chains persist per example; see the module docstring).
        free_energy_fn: optional ``free_energy_fn(params, values) -> scalar``, the energy of the
            data sites with the latents marginalized (``F(v)`` of an RBM); replaces sampling them
            in the positive phase, and scores the negatives' data sites (the chains still
            sample the joint).
        rao_blackwell: unused by CD (its chains start at the sampled positive latents); see
            :class:`PersistentContrastiveDivergence`.
        persistent_positive: keep one positive-phase chain per training example (needs the
            data, which ``fit`` passes to ``build``); default ``None``: for continuous latents.

    Metrics: ``pos_energy``, ``neg_energy``, ``energy_gap`` (pos − neg), ``acceptance_rate``
    (negative sampler), ``divergences``; with sampled latents ``pos_acceptance_rate``,
    ``pos_rhat``, ``pos_drift_z`` (and ``pos_step_size`` when it adapts).

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
        positive, neg_sampler = self._samplers(phases)

        def init(rng_key, params, batch):
            del params, batch
            # CD needs a key only for per-example positive chains (None is fine otherwise)
            table = self._init_positive(phases, positive, rng_key)
            return () if table is None else CDState(table)

        def loss(params, obj_state, batch, rng_key):
            key_pos, key_neg = _random.split(rng_key)
            table = obj_state.positive if isinstance(obj_state, CDState) else None
            e_pos, latents, table, pos_metrics = self._positive(
                phases, positive, params, batch, key_pos, table
            )
            data_values = phases.data_values(batch)
            start = {**data_values, **latents}
            if phases.latent_sites and not latents:  # marginalized positive phase
                n = jax.tree.leaves(data_values)[0].shape[0]
                start.update(phases.base_init(_random.fold_in(key_neg, 1), n, phases.latent_sites))
            fixed = phases.fixed(batch)
            neg, acc, div = self._negative(phases, neg_sampler, params, start, fixed, key_neg)
            e_neg = self._negative_energy(phases, params, fixed, neg)
            value = jnp.mean(e_pos) - jnp.mean(e_neg)
            new_state = obj_state if table is None else CDState(table)
            return value, (new_state, self._metrics(e_pos, e_neg, acc, div, pos_metrics))

        return Objective(init, loss)


# ---------------------------------------------------------------------------------- PCD
class PCDState(NamedTuple):
    """State of persistent contrastive divergence.

    Attributes:
        chains: dict state site -> ``(num_chains, *site_shape)``, the persistent negatives.
        energy_trace: ``(diagnostics_window, num_chains)`` ring buffer of the chains' energies
            at the last updates (for split R-hat / ESS on the training chains).
        num_updates: number of updates done (int32 scalar).
        positive: ``None``, or the :class:`PositiveChains` of ``p(latents | example)``, one per
            training example, when they persist (continuous latents, see
            ``persistent_positive``).
        tempering: ``None``, or with ``tempering=`` the chains' parallel-tempering states
            (:class:`~ebm_ppl.kernels.tempering.TemperingState` batched over chains: replicas,
            schedule, step sizes, adaptation state, round trips); ``chains`` is then their
            ``β = 1`` replica.

    Examples:
        >>> import jax.numpy as jnp
        >>> s = PCDState({"x": jnp.zeros((4, 2))}, jnp.zeros((0, 4)), jnp.zeros((), jnp.int32))
        >>> s.num_updates.shape, s.positive
        ((), None)
    """

    chains: Values
    energy_trace: jax.Array
    num_updates: jax.Array
    positive: PositiveChains | None = None
    tempering: Any = None


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


# ---------------------------------------------------------------------------------- tempering
#: Options of ``PersistentContrastiveDivergence(tempering={...})``.
TEMPERING_OPTIONS = (
    "num_temperatures",
    "betas",
    "reference",
    "swap",
    "num_local_steps",
    "num_warmup",
    "adapt_schedule",
    "adapt_step_size",
    "target_accept_prob",
    "schedule_fraction",
)


def tempering_options(value: Any) -> dict[str, Any] | None:
    """Normalize and check ``PersistentContrastiveDivergence(tempering=...)``.

    ``None`` (no tempering), an int (the number of temperatures) or a dict of options
    (:data:`TEMPERING_OPTIONS`); checked before anything is built, errors name ``tempering``.

    Examples:
        >>> tempering_options(6)
        {'num_temperatures': 6}
        >>> tempering_options({"num_temperatures": 1})
        Traceback (most recent call last):
        ...
        ValueError: tempering: num_temperatures must be >= 2 (the reference and the target), got 1
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"tempering must be None, an int or a dict of options, got {value!r}")
    if isinstance(value, (int, np.integer)):
        opts: dict[str, Any] = {"num_temperatures": int(value)}
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - set(TEMPERING_OPTIONS))
        if unknown:
            raise ValueError(
                f"tempering has unknown option(s) {unknown}; known: {list(TEMPERING_OPTIONS)}"
            )
        opts = dict(value)
    else:
        raise TypeError(
            "tempering must be None, an int (number of temperatures) or a dict of options, "
            f"got {type(value).__name__}"
        )
    try:
        num = opts.get("num_temperatures")
        if opts.get("betas") is not None:
            betas = _pt.check_schedule(opts["betas"], "betas")
            if num is not None and int(num) != betas.shape[0]:
                raise ValueError(
                    f"num_temperatures ({num}) must equal len(betas) ({betas.shape[0]})"
                )
        elif num is not None:
            _pt.default_schedule(num)  # checks the count
        if opts.get("swap", "deo") not in _pt.SWAP_SCHEMES:
            raise ValueError(f"swap must be one of {_pt.SWAP_SCHEMES}, got {opts['swap']!r}")
        _check_int(opts.get("num_local_steps", 1), "num_local_steps")
        _check_int(opts.get("num_warmup"), "num_warmup", minimum=0, allow_none=True)
        for name in ("target_accept_prob", "schedule_fraction"):
            v = opts.get(name)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 < v < 1.0 + 1e-12):
                raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    except (TypeError, ValueError) as err:
        raise type(err)(f"tempering: {err}") from None
    return opts


#: PT iterations of step-size and schedule adaptation of tempered PCD when ``num_warmup`` is not
#: given (the model keeps moving; give about the run's ``num_steps * num_mcmc_steps`` to adapt
#: throughout).
DEFAULT_TEMPERING_WARMUP = 1000


class _Tempered(NamedTuple):
    """The tempered negative phase of a build (one PT iteration kernel, its reference)."""

    sampler: Sampler
    kernel: Callable[..., Any]
    reference_fn: Callable[[Values], jax.Array]
    betas: jax.Array
    step_size: float


def _data_reference(phases: _Phases, opts: Mapping[str, Any]) -> Any:
    """``opts["reference"]``, or for improper (``Flat``) data sites a diagonal Gaussian fitted
    to the training data (mean and standard deviation of every coordinate)."""
    given = opts.get("reference")
    improper = [n for n in phases.sampled if _pt.is_improper(phases.plan[n].dist)]
    if given is not None or not improper or phases.data is None:
        return given
    refs = {}
    for n in improper:
        if n not in phases.data:
            return None  # a latent Flat site: reference_energy names it
        with jax.ensure_compile_time_eval():
            x = np.asarray(phases.data[n], np.float64)
        mean = x.mean(axis=0)
        sd = np.maximum(x.std(axis=0), 1e-3 * max(float(np.max(x.std(axis=0))), 1e-3))
        refs[n] = dist.Normal(
            jnp.asarray(mean, jnp.result_type(float)), jnp.asarray(sd, jnp.result_type(float))
        ).to_event(x.ndim - 1)
    return refs


def _build_tempered(
    phases: _Phases, sampler: Sampler, opts: Mapping[str, Any], step_size: float | None
) -> _Tempered:
    reference = _data_reference(phases, opts)
    try:
        reference_fn, _ = _pt.reference_energy(
            phases.plan, phases.sampled, reference, argument="tempering['reference']"
        )
    except (TypeError, ValueError) as err:
        raise type(err)(f"{phases.who}: {err}") from None
    betas = opts.get("betas")
    if betas is None:
        betas = _pt.default_schedule(int(opts.get("num_temperatures", 8)))
    # A fixed default, not one read off fit's num_steps: a run resumed with more steps must
    # rebuild the same kernel to continue bit for bit.
    num_warmup = opts.get("num_warmup")
    if num_warmup is None:
        num_warmup = DEFAULT_TEMPERING_WARMUP
    kernel = _pt.build_kernel(
        sampler,
        num_warmup=int(num_warmup),
        swap=opts.get("swap", "deo"),
        num_local_steps=int(opts.get("num_local_steps", 1)),
        adapt_step_size=opts.get("adapt_step_size"),
        adapt_schedule=bool(opts.get("adapt_schedule", True)),
        target_acceptance_rate=float(opts.get("target_accept_prob", 0.574)),
        schedule_fraction=float(opts.get("schedule_fraction", 0.75)),
    )
    step = DEFAULT_STEP_SIZE if step_size is None else step_size
    return _Tempered(sampler, kernel, reference_fn, jnp.asarray(betas), float(step))


def _init_tempered(
    phases: _Phases, tempered: _Tempered, params: Any, chains: Values, fixed: Values
) -> Any:
    """Per-chain PT states (vmapped), every replica starting at its chain's start."""
    num = tempered.betas.shape[0]
    _pt.check_schedule(tempered.betas)
    z = phases.model.unconstrain(chains)

    def one(params, position, fx):
        potential = phases.potential(params)
        positions = jax.tree.map(lambda v: jnp.broadcast_to(v, (num, *v.shape)), position)
        return _pt.init(
            positions,
            lambda p: potential(p, fx),
            tempered.reference_fn,
            sampler=tempered.sampler,
            betas=tempered.betas,
            step_size=tempered.step_size,
        )

    # compiled: op by op, the vmapped init of every replica's kernel state takes seconds
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))(params, z, fixed)


def _run_tempered(phases, tempered, params, pt_states, fixed, rng_key, num_steps):
    """``num_steps`` PT iterations on every chain at the current (stop-gradient) parameters.

    Returns ``(negatives (constrained), acceptance per chain, divergences per chain, new PT
    states, metrics)``.
    """
    potential = phases.potential(jax.lax.stop_gradient(params))
    num_chains = pt_states.betas.shape[0]
    keys = _random.split(rng_key, num_chains)

    def one(key, state, fx):
        efn = lambda p: potential(p, fx)
        state = _pt.refresh(state, efn, tempered.reference_fn, sampler=tempered.sampler)

        def body(s, k):
            s, info = tempered.kernel(k, s, efn, tempered.reference_fn)
            acc = jnp.asarray(info.acceptance_rate, jnp.float32)
            div = jnp.asarray(info.is_divergent, jnp.float32)
            return s, (acc, div, info.swap_acceptance.astype(jnp.float32))

        state, (acc, div, swap) = jax.lax.scan(body, state, _random.split(key, num_steps))
        return state, jnp.mean(acc), jnp.sum(div), jnp.mean(swap, axis=0)

    states, acc, div, swap = jax.vmap(one)(keys, pt_states, fixed)
    neg = phases.model.constrain(jax.tree.map(lambda x: x[:, -1], states.states.position))
    swap = jnp.mean(swap, axis=0)  # (T-1,) over chains
    metrics = {
        "swap_acceptance": jnp.mean(swap),
        "min_swap_acceptance": jnp.min(swap),
        # Σ rejection ≈ the global communication barrier Λ of the current schedule
        "barrier": jnp.sum(1.0 - swap),
        "round_trips": jnp.sum(states.round_trips).astype(jnp.float32),
    }
    return jax.lax.stop_gradient(neg), acc, div, states, metrics


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
        num_positive_steps: kernel transitions sampling the latent sites given the data per
            update (default ``None``: 1 for binary latents, 10 for continuous ones, whose
            chains persist per example; see the module docstring).
        free_energy_fn: optional marginal energy of the data sites (see
            :class:`ContrastiveDivergence`).
        rao_blackwell: with the ``"auto"`` or ``"gibbs"`` kernel, binary latents that form one
            block of conditionally independent units of an energy affine in each unit (an
            RBM's hidden layer) enter the positive phase through their conditional means
            ``E[h | v]`` instead of samples: the same expected gradient, lower variance, no
            random numbers.
        persistent_positive: as in :class:`ContrastiveDivergence`.
        num_chains: persistent chains (default: the batch size).
        init: ``"data"`` (start at random training examples, latents from the base measure) or
            ``"base"`` (every site from the base measure, as ``EnergyModel.init_values``).
        diagnostics_window: updates kept in the energy trace of the chains; ``fit`` records their
            split R-hat and ESS (``chain_energy_rhat``, ``chain_energy_ess``) in
            ``history.events`` once the window is full. ``0`` disables the trace.
        tempering: ``None``, or the number of temperatures, or a dict of options
            (:data:`TEMPERING_OPTIONS`: ``num_temperatures`` (default 8), ``betas``,
            ``reference``, ``swap`` (``"deo"`` or ``"reversible"``), ``num_local_steps``,
            ``num_warmup``, ``adapt_schedule``, ``adapt_step_size``, ``target_accept_prob``,
            ``schedule_fraction``): every persistent chain becomes a non-reversible
            parallel-tempering chain (:mod:`ebm_ppl.kernels.tempering`) whose replicas are moved
            by the negative kernel on ``π_β ∝ ref^{1-β} [base e^{-E_θ}]^β`` and swapped
            (deterministic even-odd); ``num_mcmc_steps`` PT iterations per update, at the
            current parameters, and the ``β = 1`` replicas are the negatives. The reference is
            the base measure when it is proper (spins, bits); an improper ``Flat`` data site
            gets a diagonal Gaussian fitted to the training data unless ``reference`` is given.
            Step sizes and schedule adapt during the first ``num_warmup`` PT iterations
            (default 1000; the model moves while it trains, so about ``num_steps *
            num_mcmc_steps`` adapts throughout). The PT states
            live in :attr:`PCDState.tempering`, so ``fit`` checkpoints and resumes them; the
            metrics add ``swap_acceptance``, ``min_swap_acceptance``, ``barrier`` (``Σ`` swap
            rejection, the global barrier ``Λ`` of the schedule) and ``round_trips``.

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
        >>> pt = PersistentContrastiveDivergence("mala", num_chains=4, tempering=3)
        >>> state = pt.build(ebm.EnergyModel(gauss), data=batch).init(
        ...     jax.random.PRNGKey(0), {"mu": 0.0}, batch)
        >>> state.tempering.betas.shape, state.chains["x"].shape
        ((4, 3), (4,))

    References:
        Tieleman, "Training restricted Boltzmann machines using approximations to the
        likelihood gradient", ICML 2008.
    """

    num_chains: int | None = None
    init: str = "data"
    diagnostics_window: int = 100
    tempering: Any = None

    def __post_init__(self):
        super().__post_init__()
        _check_int(self.num_chains, "num_chains", allow_none=True)
        if self.init not in ("data", "base"):
            raise ValueError(f"init must be 'data' or 'base', got {self.init!r}")
        _check_int(self.diagnostics_window, "diagnostics_window", minimum=0)
        tempering_options(self.tempering)

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
        positive, neg_sampler = self._samplers(phases)
        batch_size = context.get("batch_size")
        if phases.condition_sites and self.num_chains not in (None, batch_size):
            raise ValueError(
                "PersistentContrastiveDivergence with conditioning sites "
                f"{list(phases.condition_sites)} needs num_chains == batch_size (each chain is "
                f"clamped to one example), got num_chains={self.num_chains}"
            )
        window = self.diagnostics_window
        opts = tempering_options(self.tempering)
        tempered = (
            None if opts is None else _build_tempered(phases, neg_sampler, opts, self.step_size)
        )
        fast = self._bipartite(phases, positive, neg_sampler) if tempered is None else None

        def init(rng_key, params, batch):
            rng_key = _random.as_key(rng_key)
            data_values = phases.data_values(batch)
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
            table = self._init_positive(phases, positive, _random.fold_in(rng_key, 2))
            pt_states = None
            if tempered is not None:
                pt_states = _init_tempered(phases, tempered, params, chains, phases.fixed(batch))
            return PCDState(chains, trace, jnp.zeros((), jnp.int32), table, pt_states)

        def loss(params, obj_state, batch, rng_key):
            key_pos, key_neg = _random.split(rng_key)
            e_pos, _, table, pos_metrics = self._positive(
                phases, positive, params, batch, key_pos, obj_state.positive
            )
            fixed = phases.fixed(batch)
            pt_states, pt_metrics = None, {}
            if fast is not None:
                neg, acc, div = _bipartite_negative(
                    phases, fast, params, obj_state.chains, key_neg, self.num_mcmc_steps
                )
            elif tempered is None:
                neg, acc, div = self._negative(
                    phases, neg_sampler, params, obj_state.chains, fixed, key_neg
                )
            else:
                neg, acc, div, pt_states, pt_metrics = _run_tempered(
                    phases,
                    tempered,
                    params,
                    obj_state.tempering,
                    fixed,
                    key_neg,
                    self.num_mcmc_steps,
                )
            e_neg = self._negative_energy(phases, params, fixed, neg)
            value = jnp.mean(e_pos) - jnp.mean(e_neg)
            trace = obj_state.energy_trace
            if window:
                trace = trace.at[obj_state.num_updates % window].set(
                    jax.lax.stop_gradient(e_neg).astype(trace.dtype)
                )
            new_state = PCDState(neg, trace, obj_state.num_updates + 1, table, pt_states)
            metrics = self._metrics(e_pos, e_neg, acc, div, pos_metrics)
            metrics.update(pt_metrics)
            return value, (new_state, metrics)

        return Objective(init, loss)


# ---------------------------------------------------------------------------------- replay
class ReplayState(NamedTuple):
    """State of the replay-buffer objective.

    Attributes:
        buffer: dict state site -> ``(buffer_size, *site_shape)``, past negatives (initially noise).
        pointer: next write position (int32 scalar); the buffer is overwritten first-in first-out.
        positive: per-example positive-phase chains of continuous latents (as
            :attr:`PCDState.positive`), or ``None``.

    Examples:
        >>> import jax.numpy as jnp
        >>> ReplayState({"x": jnp.zeros((10, 2))}, jnp.zeros((), jnp.int32)).buffer["x"].shape
        (10, 2)
    """

    buffer: Values
    pointer: jax.Array
    positive: PositiveChains | None = None


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
        kernel: the sampler (default ``"auto"``: as in :class:`ContrastiveDivergence`, with
            ULA on continuous sites).
        num_mcmc_steps: transitions per update (default 20).
        step_size: step size of Langevin kernels (default 0.01).
        kernel_options: structural options passed to ``build_kernel``.
        num_positive_steps, free_energy_fn, persistent_positive: as in
            :class:`ContrastiveDivergence`.
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

    _continuous_kernel: ClassVar[str] = "ula"

    def _kernel_and_options(self, phases: _Phases) -> tuple[Any, dict[str, Any]]:
        kernel = "auto" if self.kernel is None else self.kernel
        options = dict(self.kernel_options or {})
        if self.clip_grad_norm is not None:
            if kernel_name(kernel) == "auto":  # the ULA block of whatever "auto" builds
                options["ula"] = {
                    **dict(options.get("ula", {})),
                    "clip_grad_norm": self.clip_grad_norm,
                }
            else:
                options["clip_grad_norm"] = self.clip_grad_norm
        return kernel, options

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the pure :class:`Objective` for ``model`` (``fit`` passes the data context)."""
        phases = _Phases(model, context, "ReplayBuffer")
        positive, neg_sampler = self._samplers(phases)
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
            rng_key = _random.as_key(rng_key)
            table = self._init_positive(phases, positive, _random.fold_in(rng_key, 2))
            return ReplayState(noise(rng_key, size), jnp.zeros((), jnp.int32), table)

        def loss(params, obj_state, batch, rng_key):
            key_pos, key_pick, key_reinit, key_noise, key_neg = _random.split(rng_key, 5)
            e_pos, _, table, pos_metrics = self._positive(
                phases, positive, params, batch, key_pos, obj_state.positive
            )
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
            new_state = ReplayState(buffer, (obj_state.pointer + num) % size, table)
            metrics = self._metrics(e_pos, e_neg, acc, div, pos_metrics)
            metrics["reinit_fraction"] = jnp.mean(fresh.astype(jnp.float32))
            return value, (new_state, metrics)

        return Objective(init, loss)
