"""``log Z`` by annealed importance sampling (AIS), forward and reverse.

AIS (Neal 2001) moves ``M`` chains from a normalized base ``q_0(x) = exp(-U_0(x))`` to the
target ``exp(-U(x)) / Z`` along the geometric path

.. math::

    U_\\beta(x) = (1 - \\beta)\\,U_0(x) + \\beta\\,U(x), \\qquad
    0 = \\beta_0 < \\beta_1 < \\dots < \\beta_K = 1,

with one (or a few) MCMC transitions leaving each intermediate ``exp(-U_β)`` invariant. The
log weight of a chain is :math:`\\log w = \\sum_k (\\beta_k - \\beta_{k-1})(U_0 - U)(x_{k-1})`
and :math:`\\mathbb E[w] = Z` exactly, whatever the mixing of the transitions; so the estimate
is ``log Z ≈ log mean(w)`` (biased low in log space, by Jensen, unbiased in ``Z``), with the
delta-method standard error ``sd(w) / (mean(w) √M)``.

Reverse AIS starts from exact samples of the target and runs the path backwards; its weights
have :math:`\\mathbb E[w_{rev}] = 1/Z`, so ``-log mean(w_rev)`` is an *upper* bound on
``log Z`` in expectation, which with the forward (lower) estimate brackets ``log Z``
(Grosse, Ghahramani & Adams 2015, "bidirectional Monte Carlo").

Transitions are the library's pure kernels on the tempered energy: MALA
(:mod:`ebm_ppl.kernels.mala`) for continuous states (on the unconstrained space), block Gibbs
(:mod:`ebm_ppl.kernels.gibbs`) for binary states. All chains run vectorized (``vmap``) in one
jitted ``lax.scan`` over temperatures. MALA step sizes are tuned per temperature in a separate
*pilot* run on independent chains (Robbins–Monro towards acceptance 0.574), so the final weights
come from fixed kernels and stay unbiased.

References:
    Neal (2001), Annealed importance sampling. Statistics and Computing 11.
    Salakhutdinov & Murray (2008), On the quantitative analysis of deep belief networks. ICML.
    Grosse, Maddison & Salakhutdinov (2013), Annealing between distributions by averaging
    moments. NeurIPS (the sigmoid schedule).
"""

from __future__ import annotations

import functools
import importlib
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.optimize import minimize
from numpyro.distributions import Distribution

from ebm_ppl.energy.conditionals import one_hot
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.view import StateView, as_energy_model
from ebm_ppl.kernels._random import as_key
from ebm_ppl.kernels.chains import map_chains
from ebm_ppl.kernels.resolve import Sampler, resolve_kernel
from ebm_ppl.partition.base import LogZEstimate

__all__ = [
    "AISBase",
    "ais_chain",
    "base_from_data",
    "categorical_base_from_data",
    "check_schedule",
    "laplace_base",
    "log_partition_ais",
    "sigmoid_schedule",
    "summarize_log_weights",
    "uniform_binary_base",
    "uniform_categorical_base",
]

Values = dict[str, jax.Array]

#: acceptance rate the MALA pilot run aims at (Roberts & Rosenthal 1998).
TARGET_ACCEPTANCE = 0.574
#: the weights count as degenerate below this effective-sample fraction (a warning is issued).
MIN_ESS_FRACTION = 0.05
#: kernels without a Metropolis correction, refused as AIS transitions.
_BIASED_KERNELS = ("ula", "sgld")


# ----------------------------------------------------------------------------- schedules
def sigmoid_schedule(num_temperatures: int, delta: float = 4.0) -> np.ndarray:
    """Sigmoid annealing schedule of Grosse et al. (2013): dense near both ends.

    ``β̃_t = σ(δ (2t/T − 1))`` for ``t = 0..T``, rescaled to run from exactly 0 to exactly 1.

    Args:
        num_temperatures: number of steps ``T >= 1`` (the schedule has ``T + 1`` values).
        delta: steepness ``δ > 0`` (larger puts more temperatures near 0 and 1).

    Returns:
        float64 array ``(T + 1,)``, strictly increasing from 0 to 1.

    Raises:
        ValueError: for ``num_temperatures < 1`` or ``delta <= 0``.

    Examples:
        >>> s = sigmoid_schedule(4)
        >>> float(s[0]), float(s[-1]), bool(np.all(np.diff(s) > 0))
        (0.0, 1.0, True)
    """
    if isinstance(num_temperatures, bool) or not isinstance(num_temperatures, (int, np.integer)):
        raise TypeError(f"num_temperatures must be an int, got {num_temperatures!r}")
    if num_temperatures < 1:
        raise ValueError(f"num_temperatures must be >= 1, got {num_temperatures}")
    if not float(delta) > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    t = np.linspace(-delta, delta, int(num_temperatures) + 1)
    s = 1.0 / (1.0 + np.exp(-t))
    return (s - s[0]) / (s[-1] - s[0])


def check_schedule(schedule: Any) -> np.ndarray:
    """Validate an annealing schedule: finite, strictly increasing, from exactly 0 to exactly 1.

    Args:
        schedule: 1-D array-like of inverse temperatures.

    Returns:
        float64 array.

    Raises:
        ValueError: naming ``schedule`` and what is wrong with it.

    Examples:
        >>> check_schedule([0.0, 0.5, 1.0]).tolist()
        [0.0, 0.5, 1.0]
        >>> check_schedule([0.0, 0.7, 0.5, 1.0])
        Traceback (most recent call last):
        ...
        ValueError: schedule must be strictly increasing; it decreases at index 2 (0.7 -> 0.5)
    """
    try:
        s = np.asarray(schedule, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"schedule must be a 1-D array of numbers, got {schedule!r}") from None
    if s.ndim != 1 or s.size < 2:
        raise ValueError(
            f"schedule must be a 1-D array with at least 2 values, got shape {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("schedule must be finite")
    if s[0] != 0.0 or s[-1] != 1.0:
        raise ValueError(f"schedule must start at 0 and end at 1, got {s[0]} ... {s[-1]}")
    bad = np.flatnonzero(np.diff(s) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"schedule must be strictly increasing; it decreases at index {i} "
            f"({s[i - 1]:g} -> {s[i]:g})"
        )
    return s


# ----------------------------------------------------------------------------- bases
class AISBase(NamedTuple):
    """A normalized base distribution for AIS, on the sampler's space.

    Continuous sites live on their unconstrained space (identical to the value for ``Flat``
    with real support); binary sites on their levels.

    Attributes:
        sample: ``sample(rng_key, num) -> dict site -> (num, *shape)``.
        energy: ``energy(values) -> scalar``, ``-log q_0(values)`` of one state (normalized).
        name: a short description (``"uniform"``, ``"laplace"``, ``"data base rates"``, ``"user"``).

    Examples:
        >>> base = uniform_binary_base({"s": (3,)}, {"s": (-1.0, 1.0)})
        >>> round(float(base.energy({"s": jnp.ones(3)})), 4)   # 3 log 2
        2.0794
    """

    sample: Callable[[jax.Array, int], Values]
    energy: Callable[[Values], jax.Array]
    name: str


def _bernoulli_base(
    logits: Mapping[str, jax.Array], levels: Mapping[str, tuple[float, float]], name: str
) -> AISBase:
    names = tuple(logits)

    def sample(rng_key, num):
        keys = jax.random.split(rng_key, len(names))
        out = {}
        for key, n in zip(keys, names, strict=True):
            lo, hi = levels[n]
            bits = jax.random.bernoulli(key, jax.nn.sigmoid(logits[n]), (num, *logits[n].shape))
            out[n] = jnp.where(bits, hi, lo).astype(jnp.result_type(float))
        return out

    def energy(values):
        total = jnp.zeros(())
        for n in names:
            lo, hi = levels[n]
            on = (values[n] - lo) / (hi - lo)
            # -log Bernoulli(on; σ(ℓ)) = softplus(ℓ) - on·ℓ
            total = total + jnp.sum(jax.nn.softplus(logits[n]) - on * logits[n])
        return total

    return AISBase(sample, energy, name)


def uniform_binary_base(
    shapes: Mapping[str, tuple[int, ...]], levels: Mapping[str, tuple[float, float]]
) -> AISBase:
    """Uniform base on binary sites (the normalized counting measure of ``Spins``/``Bits``).

    Args:
        shapes: dict site -> shape.
        levels: dict site -> ``(lo, hi)``.

    Returns:
        :class:`AISBase`.

    Examples:
        >>> b = uniform_binary_base({"x": (2,)}, {"x": (0.0, 1.0)})
        >>> b.sample(jax.random.PRNGKey(0), 5)["x"].shape
        (5, 2)
    """
    logits = {n: jnp.zeros(tuple(s)) for n, s in shapes.items()}
    return _bernoulli_base(logits, levels, "uniform")


def base_from_data(
    data: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, ...]],
    levels: Mapping[str, tuple[float, float]],
    *,
    smoothing: float = 1.0,
) -> AISBase:
    """Independent-Bernoulli base at the data's base rates (Salakhutdinov & Murray 2008).

    Sites with data get logits of ``(count_hi + s) / (N + 2s)`` (``s`` = ``smoothing``, an
    additive prior keeping every state possible); other binary sites are uniform.

    Args:
        data: dict site -> ``(num_examples, *shape)`` binary data.
        shapes: dict binary site -> shape.
        levels: dict binary site -> ``(lo, hi)``.
        smoothing: pseudo-count added to each level (``> 0``).

    Returns:
        :class:`AISBase` named ``"data base rates"``.

    Raises:
        ValueError: for data of the wrong shape or with values off the levels.

    Examples:
        >>> d = {"v": np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])}
        >>> b = base_from_data(d, {"v": (2,)}, {"v": (0.0, 1.0)}, smoothing=0.5)
        >>> round(float(b.energy({"v": jnp.array([1.0, 0.0])})), 4)   # -log(7/8 * 5/8)
        0.6035
    """
    if not float(smoothing) > 0:
        raise ValueError(f"smoothing must be > 0, got {smoothing!r}")
    logits = {}
    for n, shape in shapes.items():
        if n not in data:
            logits[n] = jnp.zeros(tuple(shape))
            continue
        arr = np.asarray(data[n], dtype=np.float64)
        if arr.shape[1:] != tuple(shape):
            raise ValueError(
                f"data for site {n!r} has shape {arr.shape}; expected (num_examples, *{tuple(shape)})"
            )
        lo, hi = levels[n]
        if not np.all((arr == lo) | (arr == hi)):
            raise ValueError(f"data for binary site {n!r} must take values {lo} or {hi}")
        on = (arr == hi).sum(axis=0)
        p = (on + smoothing) / (arr.shape[0] + 2.0 * smoothing)
        logits[n] = jnp.asarray(np.log(p) - np.log1p(-p), dtype=jnp.result_type(float))
    return _bernoulli_base(logits, levels, "data base rates")


def _categorical_base(logits: Mapping[str, jax.Array], name: str) -> AISBase:
    names = tuple(logits)

    def sample(rng_key, num):
        keys = jax.random.split(rng_key, len(names))
        return {
            n: jax.random.categorical(key, logits[n], shape=(num, *logits[n].shape[:-1])).astype(
                jnp.int32
            )
            for key, n in zip(keys, names, strict=True)
        }

    def energy(values):
        total = jnp.zeros(())
        for n in names:
            log_p = jax.nn.log_softmax(logits[n], axis=-1)
            # through the library's one_hot, so the tempered energy stays affine in the
            # encoding and categorical Gibbs keeps its one-gradient conditionals
            total = total - jnp.sum(one_hot(values[n], log_p.shape[-1], dtype=log_p.dtype) * log_p)
        return total

    return AISBase(sample, energy, name)


def _joint_base(bases: list[AISBase], name: str) -> AISBase:
    """Independent product of bases on disjoint sites."""
    if len(bases) == 1:
        return bases[0]._replace(name=name)

    def sample(rng_key, num):
        keys = jax.random.split(rng_key, len(bases))
        out = {}
        for key, b in zip(keys, bases, strict=True):
            out.update(b.sample(key, num))
        return out

    def energy(values):
        return sum((b.energy(values) for b in bases), jnp.zeros(()))

    return AISBase(sample, energy, name)


def uniform_categorical_base(
    shapes: Mapping[str, tuple[int, ...]], num_states: Mapping[str, int]
) -> AISBase:
    """Uniform base on categorical sites (the normalized counting measure of ``Categorical``).

    Args:
        shapes: dict site -> shape.
        num_states: dict site -> ``q``.

    Returns:
        :class:`AISBase` (``int32`` states).

    Examples:
        >>> b = uniform_categorical_base({"c": (2,)}, {"c": 3})
        >>> round(float(b.energy({"c": jnp.array([0, 2])})), 4)   # 2 log 3
        2.1972
    """
    logits = {n: jnp.zeros((*tuple(s), int(num_states[n]))) for n, s in shapes.items()}
    return _categorical_base(logits, "uniform")


def categorical_base_from_data(
    data: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, ...]],
    num_states: Mapping[str, int],
    *,
    smoothing: float = 1.0,
) -> AISBase:
    """Independent categorical base at the data's state frequencies of each unit.

    Unit ``i`` of a site with data takes state ``k`` with probability
    ``(count_ik + s) / (N + q s)`` (``s`` = ``smoothing``); sites without data are uniform.

    Args:
        data: dict site -> ``(num_examples, *shape)`` states in ``{0, ..., q-1}``.
        shapes: dict categorical site -> shape.
        num_states: dict categorical site -> ``q``.
        smoothing: pseudo-count added to each state (``> 0``).

    Returns:
        :class:`AISBase` named ``"data frequencies"``.

    Raises:
        ValueError: for data of the wrong shape or with values outside ``{0, ..., q-1}``.

    Examples:
        >>> d = {"c": np.array([[0], [0], [2]])}
        >>> b = categorical_base_from_data(d, {"c": (1,)}, {"c": 3}, smoothing=1.0)
        >>> round(float(b.energy({"c": jnp.array([0])})), 4)   # -log(3/6)
        0.6931
    """
    if not float(smoothing) > 0:
        raise ValueError(f"smoothing must be > 0, got {smoothing!r}")
    logits = {}
    for n, shape in shapes.items():
        q = int(num_states[n])
        if n not in data:
            logits[n] = jnp.zeros((*tuple(shape), q))
            continue
        arr = np.asarray(data[n], dtype=np.float64)
        if arr.shape[1:] != tuple(shape):
            raise ValueError(
                f"data for site {n!r} has shape {arr.shape}; expected (num_examples, *{tuple(shape)})"
            )
        if not np.all((arr >= 0) & (arr < q) & (arr == np.floor(arr))):
            raise ValueError(
                f"data for categorical site {n!r} must hold states in {{0, ..., {q - 1}}}"
            )
        counts = (arr[..., None] == np.arange(q)).sum(axis=0) + smoothing
        p = counts / counts.sum(axis=-1, keepdims=True)
        logits[n] = jnp.asarray(np.log(p), dtype=jnp.result_type(float))
    return _categorical_base(logits, "data frequencies")


def _view(em: EnergyModel):
    return StateView(em, who="ais", unconstrained=True)


def laplace_base(
    em: EnergyModel,
    params: Mapping[str, Any] | None,
    rng_key: jax.Array,
    *,
    inflate: float = 1.5,
    num_starts: int = 4,
    max_iter: int = 500,
) -> AISBase:
    """Gaussian base from a Laplace fit: ``N(mode, inflate · H⁻¹)`` on the unconstrained state.

    The mode is the lowest of ``num_starts`` BFGS minimizations of the potential started at
    NumPyro's ``init_to_uniform`` points; ``H`` is the potential's Hessian there. The
    covariance is inflated (×1.5 by default) so the base's tails cover the target's.

    Args:
        em: an energy model whose state sites are all continuous.
        params: model parameters.
        rng_key: key for the starting points.
        inflate: covariance factor (``>= 1``).
        num_starts: number of optimizer starts.
        max_iter: BFGS iterations per start.

    Returns:
        :class:`AISBase` named ``"laplace"``.

    Raises:
        ValueError: naming ``base`` when the model has discrete sites or the fit fails (no finite
            mode, or a Hessian that is not positive definite).

    Examples:
        >>> import numpyro, ebm_ppl as ebm
        >>> def g():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 2.0 * jnp.sum((x - 1.0) ** 2))
        >>> b = laplace_base(ebm.EnergyModel(g), {}, jax.random.PRNGKey(0))
        >>> round(float(b.energy({"x": jnp.ones(2)})), 3)  # -log N(0; 0, 0.375 I) in 2-D
        0.857
    """
    if em.discrete_sites:
        raise ValueError(
            f"base: a Laplace base needs continuous state sites only; {list(em.discrete_sites)} "
            "are discrete (pass base=)"
        )
    if not float(inflate) >= 1.0:
        raise ValueError(f"inflate must be >= 1, got {inflate!r}")
    view = _view(em)
    pot = em.potential_fn(dict(params or {}))
    flat = lambda z: pot(view.unravel(z))
    starts = em.unconstrain(em.init_values(rng_key, num_starts))
    z0 = jax.vmap(view.ravel)(starts)

    @jax.jit
    def solve(z):
        res = minimize(flat, z, method="BFGS", options={"maxiter": max_iter})
        return res.x, flat(res.x)

    xs, fs = jax.vmap(solve)(z0)
    fs = np.where(np.isfinite(np.asarray(fs)), np.asarray(fs), np.inf)
    best = int(np.argmin(fs))
    mode = xs[best]
    if not np.isfinite(fs[best]):
        raise ValueError("base: the Laplace fit found no finite mode of the energy; pass base=")
    hess = np.asarray(jax.hessian(flat)(mode), dtype=np.float64)
    hess = 0.5 * (hess + hess.T)
    evals, evecs = np.linalg.eigh(hess)
    if not (np.all(np.isfinite(evals)) and evals.min() > 0):
        raise ValueError(
            "base: the Laplace fit failed (the Hessian of the energy at the mode is not positive "
            f"definite, smallest eigenvalue {evals.min():.3g}); pass base="
        )
    cov = float(inflate) * (evecs / evals) @ evecs.T
    chol = jnp.asarray(np.linalg.cholesky(cov), dtype=jnp.result_type(float))
    prec = jnp.asarray(np.linalg.inv(cov), dtype=jnp.result_type(float))
    log_norm = 0.5 * view.dim * math.log(2 * math.pi) + 0.5 * float(np.linalg.slogdet(cov)[1])
    mode = jnp.asarray(mode)

    def sample(key, num):
        eps = jax.random.normal(key, (num, view.dim))
        return jax.vmap(view.unravel)(mode + eps @ chol.T)

    def energy(values):
        r = view.ravel(values) - mode
        return 0.5 * r @ prec @ r + log_norm

    return AISBase(sample, energy, "laplace")


def _user_base(em: EnergyModel, base: Any) -> AISBase:
    """An :class:`AISBase` from a NumPyro distribution or a dict site -> distribution."""
    names = em.state_sites
    view = _view(em)
    if isinstance(base, Distribution):
        if len(names) != 1:
            raise ValueError(
                f"base: a single distribution needs a model with one state site; the model has "
                f"{list(names)} (pass a dict site -> distribution)"
            )
        base = {names[0]: base}
    if not isinstance(base, Mapping):
        raise TypeError(
            "base must be a NumPyro distribution, a dict site -> distribution or None, got "
            f"{type(base).__name__}"
        )
    if set(base) != set(names):
        raise ValueError(
            f"base must give a distribution for each state site {list(names)}, got {sorted(base)}"
        )
    for n, d in base.items():
        if not isinstance(d, Distribution):
            raise TypeError(f"base[{n!r}] must be a NumPyro distribution, got {type(d).__name__}")
        shape = tuple(d.batch_shape) + tuple(d.event_shape)
        if shape != tuple(view.shapes[n]):
            raise ValueError(
                f"base[{n!r}] has shape {shape} (batch + event); the site's (unconstrained) "
                f"shape is {tuple(view.shapes[n])}"
            )

    def sample(key, num):
        keys = jax.random.split(key, len(names))
        return {
            n: jnp.asarray(base[n].sample(k, (num,)), jnp.result_type(float))
            for k, n in zip(keys, names, strict=True)
        }

    def energy(values):
        return -sum(jnp.sum(base[n].log_prob(values[n])) for n in names)

    return AISBase(sample, energy, "user")


def _binary_levels(em: EnergyModel) -> dict[str, tuple[float, float]]:
    return em.plan.require_binary(who="kernel: AIS transitions")


def _resolve_base(em, params, base, data, rng_key) -> AISBase:
    if base is not None:
        return _user_base(em, base)
    if em.discrete_sites and em.continuous_sites:
        raise ValueError(
            f"base: the model mixes discrete {list(em.discrete_sites)} and continuous "
            f"{list(em.continuous_sites)} state sites; no default base fits it (pass base=)"
        )
    if em.plan.categorical_sites:
        return _finite_base(em, data)
    if em.discrete_sites:
        levels = _binary_levels(em)
        shapes = {n: em.sites[n].shape for n in em.discrete_sites}
        if data is not None:
            if not isinstance(data, Mapping):
                if len(shapes) == 1 or np.shape(data)[1:] == tuple(shapes[em.state_sites[0]]):
                    data = {em.state_sites[0]: data}
                else:
                    raise ValueError(
                        "data must be a dict site -> array for a model with "
                        f"several state sites {list(shapes)}"
                    )
            return base_from_data(data, shapes, levels)
        return uniform_binary_base(shapes, levels)
    return laplace_base(em, params, rng_key)


def _finite_base(em: EnergyModel, data: Any) -> AISBase:
    """Uniform (or data-frequency) base on binary and categorical sites."""
    plan = em.plan
    cat = plan.categorical_sites
    binary = tuple(n for n in em.discrete_sites if n not in cat)
    levels = plan.require_binary(binary, who="AIS") if binary else {}
    if data is not None and not isinstance(data, Mapping):
        if len(em.discrete_sites) != 1:
            raise ValueError(
                "data must be a dict site -> array for a model with several state sites "
                f"{list(em.discrete_sites)}"
            )
        data = {em.discrete_sites[0]: data}
    data = dict(data or {})
    shapes = {n: em.sites[n].shape for n in em.discrete_sites}
    bases = [
        categorical_base_from_data(
            {n: v for n, v in data.items() if n in cat},
            {n: shapes[n] for n in cat},
            plan.num_states(),
        )
        if data
        else uniform_categorical_base({n: shapes[n] for n in cat}, plan.num_states())
    ]
    if binary:
        bshapes = {n: shapes[n] for n in binary}
        bdata = {n: v for n, v in data.items() if n in binary}
        bases.append(
            base_from_data(bdata, bshapes, levels)
            if bdata
            else uniform_binary_base(bshapes, levels)
        )
    return _joint_base(bases, "data frequencies" if data else "uniform")


# ----------------------------------------------------------------------------- transitions
def _resolve_transition(em: EnergyModel, params, kernel: Any, kernel_options) -> Sampler:
    """The AIS transition, through the one kernel resolution of :mod:`ebm_ppl.kernels.resolve`.

    ``"auto"`` (default) gives block Gibbs on binary states and MALA on continuous ones. ULA is
    refused: AIS needs transitions that leave every intermediate distribution invariant.
    """
    if kernel is None:
        kernel = "auto"
    if isinstance(kernel, str) and kernel.lower() in _BIASED_KERNELS:
        raise ValueError(
            f"kernel={kernel!r} cannot be an AIS transition: it does not leave the intermediate "
            "distributions invariant (no Metropolis correction); use 'auto', 'mala', 'gibbs' "
            "or 'gwg'"
        )
    probe = None
    if em.discrete_sites:
        values = em.plan.to_kernel(em.init_values(jax.random.PRNGKey(0), 1))
        position = {n: v[0] for n, v in values.items()}
        # The base adds one term per unit, so the target's colouring and affinity carry over.
        probe = (lambda pos: em.energy(params, pos), position)
    return resolve_kernel(
        kernel,
        plan=em.plan,
        purpose="train",
        kernel_options=kernel_options,
        affine=em.affine_sites if em.discrete_sites else None,
        probe=probe,
    )


# ----------------------------------------------------------------------------- the sweep
def ais_chain(
    rng_key: jax.Array,
    position: Values,
    step_sizes: Any,
    *,
    target_energy: Callable[[Values], jax.Array],
    base_energy: Callable[[Values], jax.Array],
    schedule: Any,
    transition: Sampler,
    num_mcmc_steps: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """One AIS chain along ``schedule``: its log weight (pure, jittable, chain-mappable).

    Args:
        rng_key: PRNG key of this chain.
        position: dict site -> value, a draw from the start distribution (``β = schedule[0]``).
        step_sizes: ``(K,)`` step sizes, one per temperature ``schedule[1:]`` (ignored by Gibbs).
        target_energy: ``U(x)`` of one state (unnormalized target).
        base_energy: ``U_0(x)`` of one state.
        schedule: ``(K + 1,)`` inverse temperatures (increasing for forward AIS, decreasing for
            reverse AIS).
        transition: kernel bundle (from the resolver).
        num_mcmc_steps: transitions per temperature.

    Returns:
        ``(log_w, acceptance (K,))``: the chain's log weight
        ``Σ_k (β_k − β_{k−1})(U_0 − U)(x_{k−1})`` and its mean acceptance per temperature.
    """
    schedule = jnp.asarray(schedule, jnp.result_type(float))
    num_temps = schedule.shape[0] - 1

    def one_temperature(carry, inputs):
        x, log_w = carry
        key, beta_prev, beta, eps = inputs
        # Weight increment at the state that is (approximately) distributed as π_{k-1}.
        log_w = log_w + (beta - beta_prev) * (base_energy(x) - target_energy(x))
        efn = lambda v: (1.0 - beta) * base_energy(v) + beta * target_energy(v)
        state = transition.init(x, efn)

        def body(state, k):
            state, info = transition.step(k, state, efn, eps)
            return state, jnp.mean(jnp.asarray(info.acceptance_rate, jnp.float32))

        state, acc = jax.lax.scan(body, state, jax.random.split(key, num_mcmc_steps))
        return (state.position, log_w), jnp.mean(acc)

    inputs = (
        jax.random.split(rng_key, num_temps),
        schedule[:-1],
        schedule[1:],
        jnp.asarray(step_sizes, jnp.result_type(float)),
    )
    (_, log_w), acc = jax.lax.scan(
        one_temperature, (position, jnp.zeros((), jnp.result_type(float))), inputs
    )
    return log_w, acc


def _pilot_step_sizes(
    rng_key,
    target_energy,
    base_energy,
    positions,
    schedule,
    transition,
    step_size0,
    num_mcmc_steps,
    num_warmup=50,
    rate=1.0,
):
    """Per-temperature MALA step sizes from an adaptive run on independent pilot chains."""
    schedule = jnp.asarray(schedule, jnp.result_type(float))
    num_chains = jax.tree.leaves(positions)[0].shape[0]

    def adapt(carry, inputs):
        x, log_eps = carry
        key, beta = inputs
        efn = lambda v: (1.0 - beta) * base_energy(v) + beta * target_energy(v)
        keys = jax.random.split(key, num_chains)

        def move(k, pos):
            state = transition.init(pos, efn)

            def body(state, kk):
                state, info = transition.step(kk, state, efn, jnp.exp(log_eps))
                return state, jnp.asarray(info.acceptance_rate, jnp.float32)

            state, acc = jax.lax.scan(body, state, jax.random.split(k, num_mcmc_steps))
            return state.position, jnp.mean(acc)

        x, acc = jax.vmap(move)(keys, x)
        # Robbins–Monro on log ε towards the target acceptance; the chains are pilots only.
        log_eps = log_eps + rate * (jnp.mean(acc) - TARGET_ACCEPTANCE)
        return (x, log_eps), log_eps

    # One scan (warm-up at the start temperature, then the path): a single compiled loop body.
    betas = jnp.concatenate([jnp.full((num_warmup,), schedule[0]), schedule[1:]])
    keys = jax.random.split(rng_key, betas.shape[0])
    carry = (positions, jnp.log(jnp.asarray(step_size0, jnp.result_type(float))))
    _, log_eps = jax.lax.scan(adapt, carry, (keys, betas))
    return jnp.exp(log_eps[num_warmup:])


def summarize_log_weights(log_w: Any) -> dict[str, Any]:
    """Log-mean-exp of importance log weights, its delta-method stderr and the weights' ESS.

    Args:
        log_w: ``(M,)`` log weights.

    Returns:
        dict with ``log_mean`` (``log mean w``), ``stderr`` (``sd(w) / (mean(w) √M)``, the
        standard error of ``log mean w`` by the delta method), ``ess``
        (``(Σw)² / Σw²``), ``num_nonfinite`` (NaN or ``+inf`` log weights; ``-inf`` is a zero
        weight) and ``num_chains``. With non-finite weights ``log_mean`` and ``stderr`` are NaN.

    Examples:
        >>> s = summarize_log_weights(np.log([1.0, 1.0, 1.0, 1.0]))
        >>> s["log_mean"], s["stderr"], s["ess"]
        (0.0, 0.0, 4.0)
    """
    lw = np.asarray(log_w, dtype=np.float64).reshape(-1)
    m = lw.size
    bad = int(np.sum(np.isnan(lw) | (lw == np.inf)))
    if bad or m == 0:
        return {
            "log_mean": math.nan,
            "stderr": math.nan,
            "ess": 0.0,
            "num_nonfinite": bad,
            "num_chains": m,
        }
    top = lw.max()
    if top == -np.inf:
        return {
            "log_mean": -math.inf,
            "stderr": math.nan,
            "ess": 0.0,
            "num_nonfinite": 0,
            "num_chains": m,
        }
    w = np.exp(lw - top)
    mean = w.mean()
    sd = w.std(ddof=1) if m > 1 else math.inf
    return {
        "log_mean": float(top + np.log(mean)),
        "stderr": float(sd / (mean * math.sqrt(m))),
        "ess": float(w.sum() ** 2 / np.sum(w**2)),
        "num_nonfinite": 0,
        "num_chains": m,
    }


def _warn_weights(
    summary: dict[str, Any], who: str, hint: str = "more temperatures, more chains or a closer base"
) -> bool:
    if summary["num_nonfinite"]:
        warnings.warn(
            f"{who}: {summary['num_nonfinite']} of {summary['num_chains']} log weights are NaN or "
            "+inf (the energy overflowed along the path); log_z is NaN. Check the model, the "
            "base and the step size",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    if summary["ess"] < MIN_ESS_FRACTION * summary["num_chains"]:
        warnings.warn(
            f"{who}: the importance weights are degenerate (ESS {summary['ess']:.1f} of "
            f"{summary['num_chains']} weights); the estimate and its stderr are unreliable. Use "
            f"{hint}",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    return False


# ----------------------------------------------------------------------------- entry point
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def log_partition_ais(
    model: Any,
    params: Mapping[str, Any] | None = None,
    *,
    rng_key: Any = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    base: Any = None,
    data: Any = None,
    num_chains: int = 256,
    num_temperatures: int = 1000,
    schedule: Any = None,
    kernel: Any = None,
    kernel_options: Mapping[str, Any] | None = None,
    step_size: float | None = None,
    num_mcmc_steps: int = 1,
    reverse: bool = False,
    samples: Mapping[str, Any] | None = None,
    num_pilot_chains: int = 64,
    adapt_step_size: bool = True,
    chain_method: str = "vectorized",
) -> LogZEstimate:
    """``log Z`` by annealed importance sampling (``log_partition(method="ais")``).

    Args:
        model: a NumPyro EBM program (or an :class:`ebm_ppl.EnergyModel`).
        params: model parameters.
        rng_key: PRNG key or int seed (``None`` means ``PRNGKey(0)``).
        model_args, model_kwargs: arguments for ``model``.
        base: the normalized start of the path: a NumPyro distribution (one state site), a dict
            site -> distribution, or ``None`` for the default: uniform for ``Spins``/``Bits``
            (independent Bernoulli at the data's base rates when ``data`` is given); for
            all-``Flat`` models a Gaussian from a Laplace fit at a mode, covariance ×1.5.
            Continuous sites are on their unconstrained space.
        data: binary data (array for a one-site model, or dict site -> array) for the base-rate
            base.
        num_chains: AIS chains ``M``.
        num_temperatures: steps ``K`` of the default sigmoid schedule.
        schedule: explicit inverse temperatures, strictly increasing from 0 to 1 (overrides
            ``num_temperatures``).
        kernel: ``"mala"`` (default for continuous states), ``"gibbs"`` (default for binary) or
            a kernel module with the library's contract.
        kernel_options: structural options for the kernel's ``build_kernel`` (for Gibbs:
            ``colours``, ``levels``, ``affine``; by default the model's declared blocks).
        step_size: MALA step size at which the pilot adaptation starts (default 0.1).
        num_mcmc_steps: transitions per temperature.
        reverse: run reverse AIS from exact target samples (``samples``); the result is an
            upper bound on ``log Z`` in expectation.
        samples: dict state site -> ``(num_chains, *shape)`` exact draws of the target
            (constrained values) for ``reverse=True``; if omitted, the model's own sampler
            ``model.exact_sample(rng_key, params, num, *model_args, **model_kwargs)`` is used
            when it has one (e.g. :func:`ebm_ppl.models.rbm.exact_samples` for an RBM). The
            MALA pilot of a reverse run starts from the first ``num_pilot_chains`` of these
            draws.
        num_pilot_chains: chains of the MALA step-size pilot run.
        adapt_step_size: tune MALA step sizes in the pilot run; ``False`` uses ``step_size``
            at every temperature (no pilot).
        chain_method: how chains are mapped (:func:`ebm_ppl.kernels.chains.map_chains`):
            ``"vectorized"`` (default), ``"sequential"``, ``"sharded"`` over all devices.

    Returns:
        :class:`LogZEstimate` with ``method="ais"`` (``"reverse_ais"``) and ``info`` holding
        ``ess``, ``log_weights``, ``num_chains``, ``num_temperatures``, ``base``, ``kernel``,
        ``acceptance`` (mean per temperature), ``step_sizes``, ``degenerate`` and
        ``num_nonfinite``.

    Raises:
        ValueError: for a bad ``schedule``, no usable ``base``, a kernel that does not fit the
            state, or missing ``samples`` for ``reverse=True``.

    Warns:
        RuntimeWarning: when log weights are NaN/+inf (``log_z`` is then NaN) or degenerate.

    Examples:
        >>> import numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> est = ebm.log_partition(gauss, method="ais", num_chains=64, num_temperatures=50)
        >>> abs(est.log_z - math.log(2 * math.pi)) < 0.05
        True
    """
    em = as_energy_model(model, model_args, model_kwargs)
    params = dict(params or {})
    num_chains = _positive_int(num_chains, "num_chains")
    num_mcmc_steps = _positive_int(num_mcmc_steps, "num_mcmc_steps")
    num_pilot_chains = _positive_int(num_pilot_chains, "num_pilot_chains")
    if schedule is None:
        betas = sigmoid_schedule(num_temperatures)
    else:
        betas = check_schedule(schedule)
    if step_size is not None and not (np.isfinite(step_size) and float(step_size) > 0):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
    if reverse and samples is None:
        hook = getattr(em.model, "exact_sample", None)
        if hook is None:
            raise ValueError(
                "samples: reverse=True needs exact draws of the target (samples=dict site -> "
                "(num_chains, ...)), e.g. ebm_ppl.models.rbm.exact_samples for an RBM"
            )
    rng_key = as_key(rng_key, default=0)
    k_base, k_start, k_pilot, k_run = jax.random.split(rng_key, 4)
    if em.discrete_sites and em.continuous_sites and base is None:
        raise ValueError(
            f"base: the model mixes discrete {list(em.discrete_sites)} and continuous "
            f"{list(em.continuous_sites)} state sites; no default base fits it, and no AIS "
            "kernel moves both kinds of site"
        )
    transition = _resolve_transition(em, params, kernel, kernel_options)
    ais_base = _resolve_base(em, params, base, data, k_base)
    pot = em.potential_fn(params)

    if reverse:
        if samples is None:
            sampler: Any = getattr(em.model, "exact_sample", None)
            samples = sampler(k_start, params, num_chains, *em.args, **em.kwargs)
        if not isinstance(samples, Mapping) or set(samples) != set(em.state_sites):
            raise ValueError(f"samples must be a dict with the state sites {list(em.state_sites)}")
        start = em.unconstrain(
            {n: jnp.asarray(samples[n], jnp.result_type(float)) for n in em.state_sites}
        )
        sizes = {np.shape(v)[0] for v in start.values()}
        if sizes != {num_chains}:
            raise ValueError(f"samples must have num_chains={num_chains} rows, got {sorted(sizes)}")
        path = betas[::-1].copy()
        pilot_start = {n: v[:num_pilot_chains] for n, v in start.items()}
    else:
        path = betas
        start = ais_base.sample(k_start, num_chains)
        pilot_start = ais_base.sample(jax.random.fold_in(k_start, 1), num_pilot_chains)

    chain_fn = functools.partial(
        ais_chain,
        target_energy=pot,
        base_energy=ais_base.energy,
        schedule=path,
        transition=transition,
        num_mcmc_steps=num_mcmc_steps,
    )
    run_chains = map_chains(chain_fn, chain_method, in_axes=(0, 0, None))

    @jax.jit
    def run(k_pilot, k_run, start, pilot_start):
        # One compiled program: pilot step sizes, then the chains with those fixed step sizes.
        if transition.uses_step_size and adapt_step_size:
            eps = _pilot_step_sizes(
                k_pilot,
                pot,
                ais_base.energy,
                pilot_start,
                path,
                transition,
                0.1 if step_size is None else step_size,
                num_mcmc_steps,
            )
        else:
            eps = jnp.full(len(path) - 1, 0.1 if step_size is None else step_size)
        log_w, acc = run_chains(jax.random.split(k_run, num_chains), start, eps)
        return log_w, acc, eps

    log_w, acc, eps = run(k_pilot, k_run, start, pilot_start)
    acc = jnp.mean(acc, axis=0)
    summary = summarize_log_weights(log_w)
    who = "reverse AIS" if reverse else "AIS"
    degenerate = _warn_weights(summary, who)
    if reverse:
        # E[w_rev] = Z_0 / Z with Z_0 = 1: -log mean(w_rev) over-estimates log Z on average.
        log_z = -summary["log_mean"]
    else:
        log_z = summary["log_mean"]
    info = {
        "ess": summary["ess"],
        "log_weights": np.asarray(log_w),
        "num_chains": num_chains,
        "num_temperatures": len(betas) - 1,
        "base": ais_base.name,
        "kernel": transition.name,
        "acceptance": np.asarray(acc),
        "step_sizes": np.asarray(eps) if transition.uses_step_size else None,
        "degenerate": degenerate,
        "num_nonfinite": summary["num_nonfinite"],
        "reverse": bool(reverse),
    }
    return LogZEstimate(
        float(log_z), float(summary["stderr"]), "reverse_ais" if reverse else "ais", info
    )


def __getattr__(name: str) -> Any:  # PEP 562: deprecated names
    if name == "rbm_exact_samples":
        warnings.warn(
            "ebm_ppl.partition.ais.rbm_exact_samples is deprecated and will be removed in the "
            "next release; use ebm_ppl.models.rbm.exact_samples (RBM code lives with the model)",
            DeprecationWarning,
            stacklevel=2,
        )
        # Resolved by name at call time: the partition layer does not import the model zoo;
        # this alias goes with the next release.
        return importlib.import_module("ebm_ppl.models.rbm").exact_samples
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
