"""Non-reversible parallel tempering (NRPT) over any kernel of :mod:`ebm_ppl.kernels`.

One chain carries ``T = N + 1`` *replicas* on the tempered path

.. math::

    \\pi_\\beta(x) \\propto \\mathrm{ref}(x)^{1-\\beta}\\,[\\mathrm{base}(x) e^{-E(x)}]^{\\beta}
    = e^{-E_\\mathrm{ref}(x) - \\beta V(x)}, \\qquad V = E_\\mathrm{target} - E_\\mathrm{ref},

for ``0 = β_0 < β_1 < ... < β_N = 1``, where ``E_target = energy_fn`` is the full energy (base
measure included) and ``E_ref = reference_energy_fn`` the negative log density of a proper
reference (for a proper base measure, the base itself, so ``π_β ∝ base(x) e^{-βE(x)}``). Slot
``i`` of the state always holds the replica at ``β_i``. One iteration

1. advances every slot by the wrapped kernel on ``E_{β_i} = (1-β_i) E_ref + β_i E_target``
   (``jax.vmap`` over slots; ``num_local_steps`` transitions) with the slot's own step size;
2. proposes swaps of adjacent slots: the deterministic even-odd scheme (DEO, non-reversible:
   pairs ``(i, i+1)`` with ``i`` of the iteration's parity) or, with ``swap="reversible"``, a
   random parity each iteration (stochastic even-odd). A swap of ``(i, i+1)`` is accepted with
   probability ``min(1, exp((β_{i+1} - β_i)(V(x_{i+1}) - V(x_i))))``;
3. rebuilds every slot's kernel state at its (possibly new) position with ``init`` at its
   ``β`` (cached energies and gradients depend on ``β``).

During the first ``num_warmup`` iterations (counted in the state, so a continued state never
adapts again) the per-slot step sizes follow dual averaging toward ``target_acceptance_rate``,
and the schedule is re-fitted at the end of doubling rounds (Syed et al. 2022, Algorithm 4):
the swap rejection rates ``r_i`` of a round give the cumulative barrier
``Λ(β_k) = Σ_{i<k} r_i``; the new ``β_k`` solve ``Λ(β_k) = k Λ(1) / N`` on the monotone
(piecewise-linear) interpolation of ``Λ``, which equalizes the rejection rates. Step sizes are
carried over to the new schedule by interpolating ``log ε`` in ``β``. The schedule rounds fill
the first ``schedule_fraction`` of the warmup; the rest tunes the step sizes on the final
schedule.

Diagnostics kept in the state: the swap rejection rates since the last schedule update
(``rejection_sum / swap_count``; after warmup they estimate ``r_i`` on the final schedule, so
``Λ ≈ Σ r_i`` and ``λ(β)`` is their density), the replica at each slot, and the round trips
(a replica that reached ``β = 1`` and then ``β = 0``; the rate per iteration, summed over
replicas, tends to ``1 / (2 + 2Λ)`` for DEO with an adapted schedule, ``N`` large).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from ebm_ppl.kernels import tempering
    >>> from ebm_ppl.kernels.resolve import resolve_kernel
    >>> energy_fn = lambda x: 8.0 * jnp.sum((x**2 - 1.0) ** 2)    # double well
    >>> reference_energy_fn = lambda x: 0.5 * jnp.sum(x**2)       # N(0, 1) reference
    >>> sampler = resolve_kernel("mala", step_size=0.1)
    >>> betas = tempering.default_schedule(6)
    >>> state = tempering.init(jnp.zeros((6, 1)), energy_fn, reference_energy_fn,
    ...                        sampler=sampler, betas=betas, step_size=0.1)
    >>> kernel = tempering.build_kernel(sampler, num_warmup=100)
    >>> step = jax.jit(lambda k, s: kernel(k, s, energy_fn, reference_energy_fn))
    >>> state, info = step(jax.random.PRNGKey(0), state)
    >>> info.swap_acceptance.shape, state.replica.shape
    ((5,), (6,))

References:
    Syed, Bouchard-Côté, Deligiannidis & Doucet (2022), Non-reversible parallel tempering: a
    scalable highly parallel MCMC scheme. JRSS B 84(2). Surjanovic et al. (2023), Pigeons.jl:
    distributed sampling from intractable distributions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.kernels import _random
from ebm_ppl.kernels.adaptation import (
    DualAveragingState,
    dual_averaging_init,
    dual_averaging_update,
)

__all__ = [
    "SWAP_SCHEMES",
    "TemperingInfo",
    "TemperingState",
    "barrier_estimates",
    "build_kernel",
    "DiagonalGaussian",
    "check_schedule",
    "default_schedule",
    "improper_sites",
    "init",
    "is_improper",
    "pilot_reference",
    "reference_energy",
    "refresh",
    "schedule_rounds",
    "tempered_energy",
    "update_schedule",
]

ArrayTree = Any
EnergyFn = Callable[[ArrayTree], jax.Array]
SWAP_SCHEMES = ("deo", "reversible")


class TemperingState(NamedTuple):
    """State of one parallel-tempering chain (a pytree; vmap it over chains).

    Attributes:
        states: the wrapped kernel's states stacked over slots (leading axis ``T``); slot
            ``i`` targets ``π_{β_i}``, slot ``T - 1`` the model.
        energy: ``(T,)`` target energy ``E(x_i)`` of each slot's position.
        reference_energy: ``(T,)`` reference energy ``E_ref(x_i)``.
        betas: ``(T,)`` schedule, increasing from 0 to 1.
        step_sizes: ``(T,)`` step size of each slot (unused by kernels without one).
        da_state: :class:`~ebm_ppl.kernels.adaptation.DualAveragingState` batched over slots.
        replica: ``(T,)`` int32, which replica sits at each slot (a permutation of ``0..T-1``).
        last_end: ``(T,)`` int32 per replica: ``-1`` none yet, ``0`` last end reached was the
            reference, ``1`` the target.
        round_trips: int32 scalar, round trips completed (all replicas, since the start).
        rejection_sum: ``(T-1,)`` summed swap rejection probabilities of each adjacent pair
            since the last schedule update.
        swap_count: int32 scalar, iterations summed in ``rejection_sum``.
        iteration: int32 scalar, iterations done (warmup while ``< num_warmup``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from ebm_ppl.kernels.resolve import resolve_kernel
        >>> s = init(jnp.zeros((3, 2)), lambda x: jnp.sum(x**2), lambda x: jnp.sum(x**2) / 2,
        ...          sampler=resolve_kernel("mala"), betas=default_schedule(3))
        >>> s.betas.tolist(), s.replica.tolist()
        ([0.0, 0.5, 1.0], [0, 1, 2])
    """

    states: Any
    energy: jax.Array
    reference_energy: jax.Array
    betas: jax.Array
    step_sizes: jax.Array
    da_state: DualAveragingState
    replica: jax.Array
    last_end: jax.Array
    round_trips: jax.Array
    rejection_sum: jax.Array
    swap_count: jax.Array
    iteration: jax.Array

    @property
    def position(self) -> ArrayTree:
        """The target replica's position (slot ``T - 1``, ``β = 1``; leading chain axes kept)."""
        index = (slice(None),) * (jnp.ndim(self.betas) - 1) + (-1,)
        return jax.tree.map(lambda x: x[index], self.states.position)


class TemperingInfo(NamedTuple):
    """Information about one parallel-tempering iteration.

    Attributes:
        acceptance_rate: local acceptance of the target slot (``β = 1``).
        is_accepted: whether the target slot's local proposal was accepted.
        is_divergent: whether the target slot's local transition diverged.
        local_acceptance: ``(T,)`` local acceptance of every slot.
        swap_acceptance: ``(T-1,)`` swap acceptance probability ``min(1, α_i)`` of every
            adjacent pair at this iteration's states (whether or not attempted).
        swap_attempted: ``(T-1,)`` bool, the pairs of this iteration's parity.
        swap_accepted: ``(T-1,)`` bool, the swaps done.

    Examples:
        >>> TemperingInfo._fields[:3]
        ('acceptance_rate', 'is_accepted', 'is_divergent')
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    local_acceptance: jax.Array
    swap_acceptance: jax.Array
    swap_attempted: jax.Array
    swap_accepted: jax.Array


# ------------------------------------------------------------------------------ schedule
def default_schedule(num_temperatures: int) -> jax.Array:
    """Equally spaced ``β_i = i / N`` for ``T = N + 1`` temperatures (the first round's).

    Examples:
        >>> default_schedule(5).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    num_temperatures = _check_num_temperatures(num_temperatures)
    return jnp.linspace(0.0, 1.0, num_temperatures, dtype=jnp.result_type(float))


def _check_num_temperatures(num_temperatures: Any) -> int:
    if isinstance(num_temperatures, bool) or not isinstance(num_temperatures, (int, np.integer)):
        raise TypeError(f"num_temperatures must be an int, got {num_temperatures!r}")
    if num_temperatures < 2:
        raise ValueError(
            f"num_temperatures must be >= 2 (the reference and the target), got {num_temperatures}"
        )
    return int(num_temperatures)


def check_schedule(betas: Any, argument: str = "betas") -> np.ndarray:
    """Check a concrete schedule: 1-D, at least 2 values, strictly increasing from 0 to 1.

    Returns:
        the schedule as a NumPy float array.

    Raises:
        ValueError: naming ``argument`` and the problem.

    Examples:
        >>> check_schedule([0.0, 0.3, 1.0]).tolist()
        [0.0, 0.3, 1.0]
        >>> check_schedule([0.0, 0.5, 0.4, 1.0])
        Traceback (most recent call last):
        ...
        ValueError: betas must be strictly increasing, got [0.0, 0.5, 0.4, 1.0]
    """
    b = np.asarray(betas, dtype=float)
    if b.ndim != 1 or b.shape[0] < 2:
        raise ValueError(
            f"{argument} must be a 1-D schedule of at least 2 values (the reference and the "
            f"target), got shape {b.shape}"
        )
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{argument} must be finite, got {b.tolist()}")
    if b[0] != 0.0 or b[-1] != 1.0:
        raise ValueError(f"{argument} must start at 0 and end at 1, got {b.tolist()}")
    if np.any(np.diff(b) <= 0):
        raise ValueError(f"{argument} must be strictly increasing, got {b.tolist()}")
    return b


def schedule_rounds(num_warmup: int, *, schedule_fraction: float = 0.75) -> np.ndarray:
    """Iterations (0-based) at whose end the schedule is re-fitted: doubling rounds.

    The first ``schedule_fraction`` of the warmup is cut into rounds of lengths
    ``b, 2b, 4b, ...`` (at most 10 rounds, ``b >= 4``); the last round ends at
    ``round(schedule_fraction * num_warmup)``. None below 8 warmup iterations.

    Examples:
        >>> schedule_rounds(1000).tolist()
        [5, 17, 40, 88, 182, 371, 749]
        >>> schedule_rounds(4).tolist()
        []
    """
    num_warmup = int(num_warmup)
    if not 0.0 < schedule_fraction <= 1.0:
        raise ValueError(f"schedule_fraction must be in (0, 1], got {schedule_fraction!r}")
    span = int(round(schedule_fraction * num_warmup))
    if span < 8:
        return np.zeros(0, dtype=np.int64)
    num_rounds = int(min(10, np.floor(np.log2(span / 4 + 1))))
    base = span / (2**num_rounds - 1)
    ends = np.round(base * (2 ** np.arange(1, num_rounds + 1) - 1)).astype(np.int64) - 1
    return np.unique(ends)


def barrier_estimates(
    betas: jax.Array, rejection: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Communication barrier estimates from swap rejection rates.

    Args:
        betas: ``(..., T)`` schedule.
        rejection: ``(..., T-1)`` mean swap rejection probability of each adjacent pair.

    Returns:
        ``(global_barrier, cumulative, local)``: ``Λ = Σ r_i`` ``(...)``, the cumulative
        barrier ``Λ(β_k)`` at every ``β_k`` ``(..., T)``, and the local barrier
        ``λ ≈ r_i / (β_{i+1} - β_i)`` on each interval ``(..., T-1)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> lam, cum, loc = barrier_estimates(jnp.array([0.0, 0.5, 1.0]), jnp.array([0.2, 0.1]))
        >>> round(float(lam), 6), [round(float(c), 6) for c in cum], [round(float(v), 6) for v in loc]
        (0.3, [0.0, 0.2, 0.3], [0.4, 0.2])
    """
    zero = jnp.zeros_like(rejection[..., :1])
    cumulative = jnp.concatenate([zero, jnp.cumsum(rejection, axis=-1)], axis=-1)
    local = rejection / jnp.diff(betas, axis=-1)
    return cumulative[..., -1], cumulative, local


def update_schedule(betas: jax.Array, rejection: jax.Array) -> jax.Array:
    """Syed et al.'s schedule update: equalize the rejection rates along the path.

    ``Λ(β)`` is interpolated piecewise-linearly (monotone) through ``(β_k, Σ_{i<k} r_i)`` and
    inverted at ``k Λ(1) / N``. A small floor on ``r_i`` keeps the interpolation strictly
    increasing when some pairs never reject.

    Args:
        betas: ``(T,)`` current schedule.
        rejection: ``(T-1,)`` mean swap rejection probabilities on it.

    Returns:
        ``(T,)`` new schedule, from 0 to 1, non-decreasing.

    Examples:
        >>> import jax.numpy as jnp
        >>> new = update_schedule(jnp.array([0.0, 0.5, 1.0]), jnp.array([0.6, 0.2]))
        >>> [round(float(b), 3) for b in new]
        [0.0, 0.333, 1.0]
    """
    r = jnp.clip(rejection, 1e-6, 1.0)
    _, cumulative, _ = barrier_estimates(betas, r)
    targets = jnp.linspace(0.0, 1.0, betas.shape[0], dtype=betas.dtype) * cumulative[-1]
    new = jnp.interp(targets, cumulative, betas)
    # exact end points (interp rounding), so the target replica is the model
    return new.at[0].set(0.0).at[-1].set(1.0)


# ------------------------------------------------------------------------------ energies
def _unwrap_dist(dist: Any) -> Any:
    while hasattr(dist, "base_dist"):
        dist = dist.base_dist
    return dist


def is_improper(dist: Any) -> bool:
    """Whether a base measure is improper (NumPyro's ``ImproperUniform``, e.g. ``ebm.Flat``).

    Read by class name, so this module needs no NumPyro import.

    Examples:
        >>> import ebm_ppl as ebm, numpyro.distributions as dist
        >>> is_improper(ebm.Flat(2)), is_improper(dist.Normal(0.0, 1.0)), is_improper(ebm.Spins(3))
        (True, False, False)
    """
    return any(c.__name__ == "ImproperUniform" for c in type(_unwrap_dist(dist)).__mro__)


def _base_constraint(c: Any) -> Any:
    while hasattr(c, "base_constraint"):
        c = c.base_constraint
    return c


def _same_support(a: Any, b: Any) -> bool:
    a, b = _base_constraint(a), _base_constraint(b)
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    va, vb = vars(a), vars(b)
    if set(va) != set(vb):
        return False
    try:
        return all(bool(np.all(np.asarray(va[k]) == np.asarray(vb[k]))) for k in va)
    except TypeError:
        return False


def _references(plan: Any, names: tuple[str, ...], reference: Any, argument: str) -> dict:
    improper = tuple(n for n in names if is_improper(plan[n].dist))
    if isinstance(reference, str):
        if reference != "pilot":
            raise ValueError(
                f"{argument} must be a distribution, a dict site -> distribution or 'pilot', "
                f"got {reference!r}"
            )
        if not improper:
            raise ValueError(
                f"{argument}='pilot' fits references for improper (Flat) sites; the model has "
                "none (its base measure is the reference)"
            )
        # stand-ins of the shapes pilot_reference fits (for checks and the normalizer)
        reference = {
            n: DiagonalGaussian(
                np.zeros(plan[n].shape, np.float32),
                np.ones(plan[n].shape, np.float32),
                plan[n].support,
            )
            for n in improper
        }
    if reference is None:
        refs: dict[str, Any] = {}
    elif isinstance(reference, dict):
        refs = dict(reference)
    elif callable(getattr(reference, "log_prob", None)):
        targets = improper or tuple(n for n in names if plan[n].kind == "continuous")
        if len(targets) != 1:
            raise ValueError(
                f"{argument} is one distribution but the model has {len(targets)} "
                f"{'improper' if improper else 'continuous'} state sites {list(targets)}: give a "
                "dict site -> distribution"
            )
        refs = {targets[0]: reference}
    else:
        raise TypeError(
            f"{argument} must be a NumPyro distribution or a dict site -> distribution, got "
            f"{type(reference).__name__}"
        )
    for n, d in refs.items():
        if n not in names:
            raise ValueError(f"{argument} names {n!r}, which is not a state site {list(names)}")
        spec = plan[n]
        if not callable(getattr(d, "log_prob", None)):
            raise TypeError(
                f"{argument}[{n!r}] must be a NumPyro distribution, got {type(d).__name__}"
            )
        if spec.kind != "continuous":
            raise ValueError(
                f"{argument}[{n!r}]: site {n!r} is {spec.kind}; its base measure (proper) is "
                "the reference"
            )
        shape = tuple(getattr(d, "batch_shape", ())) + tuple(getattr(d, "event_shape", ()))
        if shape != tuple(spec.shape):
            raise ValueError(
                f"{argument}[{n!r}] must have batch_shape + event_shape = {tuple(spec.shape)} "
                f"(the site's shape), got {shape}"
            )
        if not _same_support(getattr(d, "support", None), spec.support):
            raise ValueError(
                f"{argument}[{n!r}] must have the site's support {spec.support}, got "
                f"{getattr(d, 'support', None)}"
            )
        if is_improper(d):
            raise ValueError(f"{argument}[{n!r}] must be a proper (normalized) distribution")
    missing = [n for n in improper if n not in refs]
    if missing:
        n = missing[0]
        raise ValueError(
            f"{argument}: site {n!r} has an improper base measure ({plan[n].dist!r}), so the "
            f"tempered path needs a proper reference for it: give {argument}= a NumPyro "
            f"distribution with batch_shape + event_shape {tuple(plan[n].shape)} and support "
            f"{plan[n].support} (e.g. dist.Normal(0.0, 3.0).expand({tuple(plan[n].shape)})"
            f".to_event({len(plan[n].shape)})), or a dict site -> distribution"
        )
    return refs


class DiagonalGaussian(NamedTuple):
    """A diagonal Gaussian reference for one continuous site (what ``reference="pilot"`` fits).

    Has what :func:`reference_energy` reads of a NumPyro distribution: ``log_prob`` (summed
    over the site), ``batch_shape``, ``event_shape`` and ``support`` (the site's).

    Examples:
        >>> import jax.numpy as jnp
        >>> g = DiagonalGaussian(jnp.zeros(2), jnp.ones(2), None)
        >>> round(float(g.log_prob(jnp.zeros(2))), 4), g.event_shape
        (-1.8379, (2,))
    """

    loc: Any
    scale: Any
    support: Any

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(jnp.shape(self.loc))

    def log_prob(self, value: jax.Array) -> jax.Array:
        z = (value - self.loc) / self.scale
        return jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - 0.5 * jnp.log(2.0 * jnp.pi))


def improper_sites(plan: Any, sites: Any = None) -> tuple[str, ...]:
    """The state sites with an improper base measure (they need a reference).

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     s = numpyro.sample("s", ebm.Spins(2))
        ...     ebm.energy("E", jnp.sum(x * s))
        >>> improper_sites(ebm.EnergyModel(m).plan)
        ('x',)
    """
    names = tuple(plan.state_sites if sites is None else sites)
    return tuple(n for n in names if is_improper(plan[n].dist))


def pilot_reference(
    rng_key: jax.Array,
    positions: ArrayTree,
    energy_fn: EnergyFn,
    *,
    sampler: Any,
    plan: Any,
    sites: Any = None,
    num_steps: int = 200,
    step_size: Any = 0.1,
    inflate: float = 2.0,
    target_acceptance_rate: float = 0.574,
) -> dict[str, DiagonalGaussian]:
    """Gaussian references for the improper sites, fitted to a pilot run on the model.

    The wrapped kernel runs ``num_steps`` transitions on the model (``β = 1``) from each of the
    ``T`` starts in ``positions`` (dual averaging of each start's step size); the mean and the
    standard deviation of every improper site's coordinates, pooled over the starts and the
    second half of the pilot, give ``N(mean, (inflate · sd)²)`` per coordinate (on the
    unconstrained space). Starts spread over the space find several modes, and the inflation
    covers them; a reference that misses a mode only slows the tempered chains down.

    Returns:
        dict improper site -> :class:`DiagonalGaussian`.
    """
    names = improper_sites(plan, sites)
    num = jax.tree.leaves(positions)[0].shape[0]

    def run(key, position):
        state = sampler.init(position, energy_fn)
        da = dual_averaging_init(step_size)

        def body(carry, k):
            st, d = carry
            eps = jnp.exp(d.log_step_size)
            st, info = sampler.step(k, st, energy_fn, step_size=eps)
            d = dual_averaging_update(d, info.acceptance_rate, target_acceptance_rate)
            return (st, d), {n: st.position[n] for n in names}

        _, trace = jax.lax.scan(body, (state, da), _random.split(key, num_steps))
        return trace

    traces = jax.vmap(run)(_random.split(rng_key, num), positions)
    half = num_steps // 2
    out = {}
    for n in names:
        x = traces[n][:, half:]
        x = x.reshape(-1, *x.shape[2:])
        loc = jnp.mean(x, axis=0)
        scale = inflate * jnp.maximum(jnp.std(x, axis=0), 1e-3)
        out[n] = DiagonalGaussian(loc, scale, plan[n].support)
    return out


def reference_energy(
    plan: Any,
    sites: Any = None,
    reference: Any = None,
    *,
    argument: str = "reference",
) -> tuple[EnergyFn, float | None]:
    """The reference of the tempered path, on the kernels' space, from the model's site plan.

    ``E_ref(z) = -Σ_sites log ref_site(x) - log|det J(z)|``: for each state site, the
    distribution given in ``reference`` or else the site's own base measure (proper bases:
    ``Spins``/``Bits`` counting measures, NumPyro distributions); continuous sites are on
    their unconstrained space (``x = T(z)``, with the Jacobian, as the model's potential), so
    ``E_target - E_ref`` has no Jacobian. An improper base (``Flat``) needs a ``reference``.

    Args:
        plan: the model's site plan (``EnergyModel.plan``; read by duck typing).
        sites: the state sites of the position (default: every state site).
        reference: ``None``, a NumPyro distribution (the one improper, or the one continuous,
            site), a dict site -> distribution (continuous sites; replaces the base), or
            ``"pilot"`` (checks and normalizer of the Gaussians :func:`pilot_reference` fits;
            the energy returned uses unit Gaussians: rebuild it from the fitted ones).
        argument: the argument's name, for messages.

    Returns:
        ``(reference_energy_fn, log_z_reference)``: ``log ∫ exp(-E_ref)`` is 0 for normalized
        continuous references and ``Σ_units log Σ_{v in support} base(v)`` for discrete sites
        (``n log 2`` for ``n`` spins); ``None`` when a discrete base does not factorize over
        its units.

    Raises:
        ValueError: naming ``argument``: an improper site without a reference, a reference of
            the wrong shape or support, an unknown or discrete site.
        TypeError: a reference that is not a distribution.

    Examples:
        >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist, ebm_ppl as ebm
        >>> def m():
        ...     s = numpyro.sample("s", ebm.Spins(3))
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", jnp.sum(x**2) - jnp.sum(s))
        >>> plan = ebm.EnergyModel(m).plan
        >>> fn, log_z = reference_energy(plan, reference=dist.Normal(0.0, 1.0).expand((2,)).to_event(1))
        >>> round(float(fn({"s": jnp.ones(3), "x": jnp.zeros(2)})), 4), round(log_z, 4)
        (1.8379, 2.0794)
        >>> reference_energy(plan)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: reference: site 'x' has an improper base measure (Flat((2,))), ...
    """
    names = tuple(plan.state_sites if sites is None else sites)
    refs = _references(plan, names, reference, argument)
    log_z: float | None = 0.0
    total_log_z = 0.0
    for n in names:
        spec = plan[n]
        if spec.kind == "continuous":
            continue
        values = getattr(spec, "support_values", None)
        if values is None:
            log_z = None
            break
        with jax.ensure_compile_time_eval():
            lps = [
                np.asarray(
                    spec.dist.log_prob(jnp.full(tuple(spec.shape), v, jnp.result_type(float)))
                )
                for v in values
            ]
        if any(lp.shape != tuple(spec.shape) for lp in lps):
            log_z = None
            break
        stacked = np.stack(lps).astype(np.float64)
        top = np.max(stacked, axis=0)
        per_unit = top + np.log(np.sum(np.exp(stacked - top), axis=0))
        total_log_z += float(np.sum(per_unit))
    if log_z is not None:
        log_z = total_log_z
    dists = {n: refs.get(n, plan[n].dist) for n in names}
    transforms = {
        n: plan[n].transform
        for n in names
        if plan[n].kind == "continuous" and getattr(plan[n], "is_constrained", False)
    }

    def energy(z: ArrayTree) -> jax.Array:
        total = jnp.zeros((), jnp.result_type(float))
        for n in names:
            value = z[n]
            t = transforms.get(n)
            if t is not None:
                x = t(value)
                total = total - jnp.sum(t.log_abs_det_jacobian(value, x))
                value = x
            total = total - jnp.sum(dists[n].log_prob(value))
        return total

    return energy, log_z


def tempered_energy(energy_fn: EnergyFn, reference_energy_fn: EnergyFn, beta: Any) -> EnergyFn:
    """``x -> (1 - β) E_ref(x) + β E(x)``: the energy of ``π_β``.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = tempered_energy(lambda x: 4.0 * x, lambda x: 2.0 * x, 0.25)
        >>> float(f(jnp.array(1.0)))
        2.5
    """

    def energy(position: ArrayTree) -> jax.Array:
        return (1.0 - beta) * reference_energy_fn(position) + beta * energy_fn(position)

    return energy


def _slot_energies(
    positions: ArrayTree, energy_fn: EnergyFn, reference_energy_fn: EnergyFn
) -> tuple[jax.Array, jax.Array]:
    energy = jax.vmap(energy_fn)(positions)
    reference = jax.vmap(reference_energy_fn)(positions)
    return energy, reference


def _refresh(sampler: Any, positions, betas, energy_fn, reference_energy_fn):
    def one(position, beta):
        return sampler.init(position, tempered_energy(energy_fn, reference_energy_fn, beta))

    return jax.vmap(one)(positions, betas)


def init(
    positions: ArrayTree,
    energy_fn: EnergyFn,
    reference_energy_fn: EnergyFn,
    *,
    sampler: Any,
    betas: Any,
    step_size: Any = 0.1,
) -> TemperingState:
    """Initial parallel-tempering state of one chain.

    Args:
        positions: pytree whose leaves have a leading slot axis ``T`` (one start per
            replica; slot ``T - 1`` is the target's).
        energy_fn: ``position -> scalar`` energy of the model (base measure included).
        reference_energy_fn: ``position -> scalar`` ``-log`` density of the reference.
        sampler: the wrapped kernel, a :class:`~ebm_ppl.kernels.resolve.Sampler` (or any
            object with ``init(position, energy_fn)`` and ``step(rng_key, state, energy_fn,
            step_size=None)``).
        betas: ``(T,)`` schedule (checked when concrete: increasing from 0 to 1).
        step_size: initial step size of every slot (scalar or ``(T,)``).

    Returns:
        :class:`TemperingState`.

    Raises:
        ValueError: for a bad concrete schedule or a slot axis that does not match it.
    """
    if not isinstance(betas, jax.core.Tracer):
        check_schedule(betas)
    betas = jnp.asarray(betas, dtype=jnp.result_type(float))
    num = betas.shape[0]
    for leaf in jax.tree.leaves(positions):
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != num:
            raise ValueError(
                f"positions must have a leading axis of {num} replicas (one per temperature), "
                f"got a leaf of shape {jnp.shape(leaf)}"
            )
    states = _refresh(sampler, positions, betas, energy_fn, reference_energy_fn)
    energy, reference = _slot_energies(positions, energy_fn, reference_energy_fn)
    step_sizes = jnp.broadcast_to(jnp.asarray(step_size, betas.dtype), (num,))
    return TemperingState(
        states=states,
        energy=energy,
        reference_energy=reference,
        betas=betas,
        step_sizes=step_sizes,
        da_state=jax.vmap(dual_averaging_init)(step_sizes),
        replica=jnp.arange(num, dtype=jnp.int32),
        last_end=jnp.full((num,), -1, jnp.int32).at[0].set(0),
        round_trips=jnp.zeros((), jnp.int32),
        rejection_sum=jnp.zeros((num - 1,), betas.dtype),
        swap_count=jnp.zeros((), jnp.int32),
        iteration=jnp.zeros((), jnp.int32),
    )


def refresh(
    state: TemperingState, energy_fn: EnergyFn, reference_energy_fn: EnergyFn, *, sampler: Any
) -> TemperingState:
    """Recompute every slot's cached energies for new energy functions (new parameters or
    conditioning), keeping positions, schedule, step sizes and statistics.

    Examples:
        >>> import jax.numpy as jnp
        >>> from ebm_ppl.kernels.resolve import resolve_kernel
        >>> s = resolve_kernel("mala")
        >>> ref = lambda x: jnp.sum(x**2) / 2
        >>> st = init(jnp.ones((3, 1)), lambda x: jnp.sum(x**2), ref, sampler=s, betas=default_schedule(3))
        >>> st = refresh(st, lambda x: 3.0 * jnp.sum(x**2), ref, sampler=s)
        >>> st.energy.tolist()
        [3.0, 3.0, 3.0]
    """
    positions = state.states.position
    energy, reference = _slot_energies(positions, energy_fn, reference_energy_fn)
    states = _refresh(sampler, positions, state.betas, energy_fn, reference_energy_fn)
    return state._replace(states=states, energy=energy, reference_energy=reference)


# ------------------------------------------------------------------------------ transition
def build_kernel(
    sampler: Any,
    *,
    num_warmup: int = 0,
    swap: str = "deo",
    num_local_steps: int = 1,
    adapt_step_size: bool | None = None,
    adapt_schedule: bool = True,
    target_acceptance_rate: float = 0.574,
    schedule_fraction: float = 0.75,
) -> Callable[..., tuple[TemperingState, TemperingInfo]]:
    """Build one parallel-tempering iteration over ``sampler``.

    Args:
        sampler: the wrapped kernel (a :class:`~ebm_ppl.kernels.resolve.Sampler`).
        num_warmup: iterations of adaptation (static); the state's counter gates it.
        swap: ``"deo"`` (deterministic even-odd, non-reversible) or ``"reversible"``
            (random parity each iteration).
        num_local_steps: kernel transitions per slot between swap rounds (>= 1).
        adapt_step_size: per-slot dual averaging during warmup (default: when the sampler
            uses a step size).
        adapt_schedule: re-fit the schedule at the end of each warmup round
            (:func:`schedule_rounds`).
        target_acceptance_rate: dual-averaging target of the local moves.
        schedule_fraction: share of the warmup spent on schedule rounds.

    Returns:
        ``kernel(rng_key, state, energy_fn, reference_energy_fn) -> (TemperingState,
        TemperingInfo)``.

    Raises:
        ValueError: for an unknown ``swap``, ``num_local_steps < 1``, a negative
            ``num_warmup`` or a target outside ``(0, 1)``.
    """
    if swap not in SWAP_SCHEMES:
        raise ValueError(f"swap must be one of {SWAP_SCHEMES}, got {swap!r}")
    if isinstance(num_local_steps, bool) or int(num_local_steps) < 1:
        raise ValueError(f"num_local_steps must be an int >= 1, got {num_local_steps!r}")
    if int(num_warmup) < 0:
        raise ValueError(f"num_warmup must be >= 0, got {num_warmup!r}")
    if not 0.0 < float(target_acceptance_rate) < 1.0:
        raise ValueError(
            f"target_acceptance_rate must be in (0, 1), got {target_acceptance_rate!r}"
        )
    num_warmup = int(num_warmup)
    num_local_steps = int(num_local_steps)
    uses_step_size = bool(getattr(sampler, "uses_step_size", True))
    if adapt_step_size is None:
        adapt_step_size = uses_step_size
    adapt_step_size = bool(adapt_step_size) and num_warmup > 0
    ends_np = (
        schedule_rounds(num_warmup, schedule_fraction=schedule_fraction)
        if adapt_schedule
        else np.zeros(0, np.int64)
    )

    def local_moves(rng_key, state, energy_fn, reference_energy_fn):
        num = state.betas.shape[0]

        def one(key, kstate, beta, eps):
            fn = tempered_energy(energy_fn, reference_energy_fn, beta)

            def body(carry, k):
                s, _ = carry
                s, info = sampler.step(k, s, fn, step_size=eps)
                return (s, info), None

            keys = _random.split(key, num_local_steps)
            s, info = sampler.step(keys[0], kstate, fn, step_size=eps)
            if num_local_steps > 1:
                (s, info), _ = jax.lax.scan(body, (s, info), keys[1:])
            return s, info

        keys = _random.split(rng_key, num)
        return jax.vmap(one)(keys, state.states, state.betas, state.step_sizes)

    def kernel(
        rng_key: jax.Array,
        state: TemperingState,
        energy_fn: EnergyFn,
        reference_energy_fn: EnergyFn,
    ) -> tuple[TemperingState, TemperingInfo]:
        key_local, key_swap, key_parity = _random.split(rng_key, 3)
        num = state.betas.shape[0]
        dtype = state.betas.dtype
        states, infos = local_moves(key_local, state, energy_fn, reference_energy_fn)
        positions = states.position
        energy, reference = _slot_energies(positions, energy_fn, reference_energy_fn)
        gap = energy - reference

        # --- swaps of adjacent slots
        log_alpha = jnp.diff(state.betas) * (gap[1:] - gap[:-1])
        log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
        swap_acc = jnp.exp(jnp.minimum(log_alpha, 0.0))
        if swap == "deo":
            parity = state.iteration % 2
        else:
            parity = (_random.bits(key_parity, ()) % 2).astype(state.iteration.dtype)
        attempted = (jnp.arange(num - 1) % 2) == parity
        u = _random.uniform(key_swap, (num - 1,), dtype=dtype)
        accepted = attempted & (u < swap_acc)
        up = jnp.concatenate([accepted, jnp.zeros((1,), bool)]).astype(jnp.int32)
        down = jnp.concatenate([jnp.zeros((1,), bool), accepted]).astype(jnp.int32)
        perm = jnp.arange(num, dtype=jnp.int32) + up - down
        positions = jax.tree.map(lambda x: x[perm], positions)
        energy, reference, replica = energy[perm], reference[perm], state.replica[perm]

        # --- round trips (a replica that reached the target returns to the reference)
        at_ref, at_target = replica[0], replica[-1]
        completed = state.last_end[at_ref] == 1
        last_end = state.last_end.at[at_ref].set(0).at[at_target].set(1)
        round_trips = state.round_trips + completed.astype(jnp.int32)
        rejection_sum = state.rejection_sum + (1.0 - swap_acc)
        swap_count = state.swap_count + 1

        # --- warmup adaptation (per-slot step sizes, schedule rounds)
        betas, step_sizes, da_state = state.betas, state.step_sizes, state.da_state
        it = state.iteration
        warm = it < num_warmup
        if adapt_step_size:
            target = target_acceptance_rate
            new_da = jax.vmap(lambda d, a: dual_averaging_update(d, a, target))(
                da_state, infos.acceptance_rate.astype(dtype)
            )
            last = it == num_warmup - 1
            new_eps = jnp.where(
                last, jnp.exp(new_da.log_step_size_avg), jnp.exp(new_da.log_step_size)
            )
            da_state = jax.tree.map(lambda n, o: jnp.where(warm, n, o), new_da, da_state)
            step_sizes = jnp.where(warm, new_eps.astype(dtype), step_sizes)
        if ends_np.size:
            at_end = warm & jnp.any(jnp.asarray(ends_np) == it)
            rejection = rejection_sum / swap_count.astype(dtype)
            fitted = update_schedule(betas, rejection)
            # log step sizes carried to the new temperatures
            moved_eps = jnp.exp(jnp.interp(fitted, betas, jnp.log(step_sizes)))
            betas = jnp.where(at_end, fitted, betas)
            step_sizes = jnp.where(at_end, moved_eps, step_sizes)
            da_state = jax.tree.map(
                lambda fresh, old: jnp.where(at_end, fresh, old),
                jax.vmap(dual_averaging_init)(step_sizes),
                da_state,
            )
            rejection_sum = jnp.where(at_end, jnp.zeros_like(rejection_sum), rejection_sum)
            swap_count = jnp.where(at_end, 0, swap_count)
        if num_warmup > 0:
            # statistics of the sampling phase start at the end of warmup
            fresh = it == num_warmup - 1
            rejection_sum = jnp.where(fresh, jnp.zeros_like(rejection_sum), rejection_sum)
            swap_count = jnp.where(fresh, 0, swap_count)
            round_trips = jnp.where(fresh, 0, round_trips)

        # cached energies (and gradients) of every slot at its position and temperature
        states = _refresh(sampler, positions, betas, energy_fn, reference_energy_fn)
        new_state = TemperingState(
            states,
            energy,
            reference,
            betas,
            step_sizes,
            da_state,
            replica,
            last_end,
            round_trips,
            rejection_sum,
            swap_count,
            it + 1,
        )
        info = TemperingInfo(
            infos.acceptance_rate[-1],
            infos.is_accepted[-1],
            infos.is_divergent[-1],
            infos.acceptance_rate,
            swap_acc,
            attempted,
            accepted,
        )
        return new_state, info

    return kernel
