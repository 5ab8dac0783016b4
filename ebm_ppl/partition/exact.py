"""Exact ``log Z``, expectations and log-likelihoods of discrete models by enumeration.

``log Z = logsumexp_x(-E(x))`` over every configuration of the binary and categorical state
sites (up to ~2^24 states, numbered in mixed radix: one digit of base ``q`` per unit),
evaluated in vmapped chunks inside one compiled ``lax.map``. One site may be *summed out in
closed form* when its units are conditionally independent given the rest (declared as one Gibbs
block, ``infer={"blocks": c}`` with a single colour). A categorical site's sum is
``e^{-E(x_S = 0)} Π_i Σ_k e^{ℓ_ik}`` with ``ℓ_ik`` the exact single-unit energy differences (the
categorical RBM: enumerate the hidden layer, sum the visible one). A binary site is summed when
the energy is also affine in each unit (the :attr:`~ebm_ppl.EnergyModel.affine_sites` check):
then

.. math::

    \\sum_{x_S} e^{-E(x_{-S}, x_S)} = e^{-E(x_{-S}, x_S = lo)}
        \\prod_{i \\in S} \\bigl(1 + e^{\\ell_i}\\bigr),
    \\qquad \\ell_i = -(hi - lo)\\, \\partial_i E,

so only the other sites are enumerated (for an RBM: enumerate the smaller layer, sum the larger).
Models with continuous state sites need a closed form from the model itself: a function
attribute ``model.exact_log_partition(params, *model_args, **model_kwargs)`` (the Gaussian RBM
of :mod:`ebm_ppl.models.rbm` has one).

Examples:
    >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
    >>> def pair():
    ...     s = numpyro.sample("s", ebm.Spins(2))
    ...     ebm.energy("E", -s[0] * s[1])
    >>> est = ebm.log_partition(pair, method="exact")
    >>> round(est.log_z, 6) == round(float(jnp.log(4 * jnp.cosh(1.0))), 6)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.energy.conditionals import exact_categorical_logits
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.energy.view import as_energy_model
from ebm_ppl.partition.base import LogLikelihood, LogZEstimate, as_log_z_estimate

__all__ = ["MAX_STATES", "expectations", "free_energy", "log_likelihood", "log_partition_exact"]

#: Largest number of configurations enumerated (2^24).
MAX_STATES = 2**24


def _params(em: EnergyModel, params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return em.init_params(jax.random.PRNGKey(0))
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict site -> array, got {type(params).__name__}")
    missing = [n for n in em.param_sites if n not in params]
    if missing:
        raise ValueError(f"params is missing {missing}")
    return {k: jnp.asarray(v) for k, v in params.items()}


def _declared_blocks(em: EnergyModel) -> dict[str, Any]:
    """Declared Gibbs colours (``infer={"blocks": ...}``) of the state sites, from the plan."""
    return {
        n: np.asarray(em.plan[n].blocks) for n in em.state_sites if em.plan[n].blocks is not None
    }


def _choose_summed(em: EnergyModel, sites: tuple[str, ...], sum_out: Any) -> str | None:
    """The site summed in closed form (the eligible one with most states), or None.

    A binary site is eligible when declared as one block and the energy is affine in each unit
    (one gradient gives every logit); a categorical site when declared as one block (its
    conditionally independent units are summed from exact energy differences at one state).
    """
    if sum_out is None or sum_out is False:
        return None
    declared = _declared_blocks(em)

    def eligible(n: str) -> bool:
        if n not in declared or np.unique(declared[n]).size != 1:
            return False
        if em.plan[n].kind == "categorical":
            return True
        # the affinity check compiles: only run it for sites declared as a single block
        return em.affine_sites.get(n, False)

    if isinstance(sum_out, str) and sum_out != "auto":
        if sum_out not in sites:
            raise ValueError(
                f"sum_out must be one of the enumerated sites {list(sites)}, got {sum_out!r}"
            )
        if not eligible(sum_out):
            raise ValueError(
                f"sum_out={sum_out!r}: the site must be declared as one block "
                '(infer={"blocks": c}) and, if binary, its energy affine in each unit'
            )
        return sum_out
    if sum_out not in ("auto", True):
        raise ValueError(f"sum_out must be 'auto', None or a site name, got {sum_out!r}")
    candidates = [n for n in sites if eligible(n)]

    def log_states(n: str) -> float:
        return em.plan[n].size * math.log(em.plan[n].num_states or 2)

    return max(candidates, key=log_states, default=None)


def _finite_sites(em: EnergyModel, sites: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """``site -> support values`` of the enumerated sites (binary or categorical)."""
    out = {}
    for n in sites:
        spec = em.plan[n]
        if spec.kind not in ("binary", "categorical") or spec.support_values is None:
            raise ValueError(
                f"exact enumeration needs binary or categorical state sites (Spins, Bits, "
                f"Categorical, Bernoulli); site {n!r} is {spec.kind} (support {spec.support}): "
                "give the model a closed form (model.exact_log_partition) or use another method"
            )
        out[n] = spec.support_values
    return out


def _make_log_sum(
    em: EnergyModel,
    supports: Mapping[str, tuple[float, ...]],
    summed: str | None,
    *,
    chunk_size: int,
    max_states: int,
    stats_fn: Callable[[Mapping[str, Any]], Any] | None = None,
) -> tuple[Callable[[Any, Mapping[str, Any]], Any], int]:
    """``fn(params, fixed) = log Σ_{enumerated, summed} exp(-E)`` and the number of states.

    States are numbered in mixed radix (each unit one digit of base ``q``). With ``stats_fn``
    (plain enumeration only), ``fn`` returns ``(log_sum, Σ_x e^{-E(x)} f(x) / e^{log_sum})``.
    """
    enum_sites = tuple(n for n in supports if n != summed)
    shapes = {n: em.sites[n].shape for n in supports}
    sizes = [int(np.prod(shapes[n], dtype=int)) for n in enum_sites]
    radices = np.concatenate(
        [
            np.full(size, len(supports[n]), dtype=np.int64)
            for size, n in zip(sizes, enum_sites, strict=True)
        ]
        + [np.zeros(0, np.int64)]
    )
    log_states = float(np.sum(np.log(radices))) if radices.size else 0.0
    if log_states > math.log(max_states) + 1e-9:
        raise ValueError(
            f"exact enumeration of {radices.size} units (about e^{log_states:.1f} = "
            f"{math.exp(log_states):.3g} states) exceeds max_states={max_states}; use "
            "method='ais' or sum a layer out (sum_out=)"
        )
    num_states = int(np.prod(radices)) if radices.size else 1
    strides = np.concatenate([[1], np.cumprod(radices)[:-1]]).astype(np.int64)
    chunk = int(min(chunk_size, num_states))
    num_chunks = -(-num_states // chunk)
    dtype = jnp.result_type(float)
    offsets = np.cumsum([0, *sizes])
    # Categorical values are int32 (as kernels hold them), binary ones floats.
    dtypes = {n: jnp.int32 if em.plan[n].kind == "categorical" else dtype for n in supports}
    tables = {n: jnp.asarray(supports[n], dtypes[n]) for n in enum_sites}

    def state_of(index):
        digits = (index // jnp.asarray(strides, jnp.uint32)) % jnp.asarray(radices, jnp.uint32)
        out = {}
        for k, n in enumerate(enum_sites):
            d = digits[offsets[k] : offsets[k + 1]].astype(jnp.int32)
            out[n] = tables[n][d].reshape(shapes[n])
        return out

    def term(params, fixed, index):
        pos = {**fixed, **state_of(index)}
        if summed is None:
            return -em.energy(params, pos), pos
        support = supports[summed]
        lo = support[0]
        pos[summed] = jnp.full(shapes[summed], lo, dtypes[summed])
        if em.plan[summed].kind == "categorical":
            # Units of one declared block are conditionally independent: E is the energy at
            # state 0 plus one term per unit, read off by exact single-unit differences.
            energy = em.energy(params, pos)
            logits = exact_categorical_logits(
                lambda p: em.energy(params, p), pos, summed, len(support)
            )
            return -energy + jnp.sum(jax.scipy.special.logsumexp(logits, axis=-1)), pos
        hi = support[1]
        energy, grad = jax.value_and_grad(lambda x: em.energy(params, {**pos, summed: x}))(
            pos[summed]
        )
        # Σ over the summed site in closed form: units independent, energy affine in each.
        return -energy + jnp.sum(jax.nn.softplus(-(hi - lo) * grad)), pos

    def chunk_terms(params, fixed, c):
        index = (c * chunk + jnp.arange(chunk)).astype(jnp.uint32)
        valid = c * chunk + jnp.arange(chunk) < num_states
        t, pos = jax.vmap(lambda i: term(params, fixed, i))(index)
        return jnp.where(valid, t, -jnp.inf), pos

    def log_sum(params, fixed):
        def one_chunk(c):
            return jax.scipy.special.logsumexp(chunk_terms(params, fixed, c)[0])

        per_chunk = jax.lax.map(one_chunk, jnp.arange(num_chunks))
        total = jax.scipy.special.logsumexp(per_chunk)
        if stats_fn is None:
            return total

        def weighted(c):
            t, pos = chunk_terms(params, fixed, c)
            w = jnp.exp(t - total)
            f = jax.vmap(stats_fn)(pos)
            return jax.tree.map(lambda v: jnp.tensordot(w, v, axes=(0, 0)), f)

        sums = jax.lax.map(weighted, jnp.arange(num_chunks))
        return total, jax.tree.map(lambda v: jnp.sum(v, axis=0), sums)

    return log_sum, num_states


def log_partition_exact(
    model: Any,
    params: Mapping[str, Any] | None = None,
    *,
    rng_key: Any = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    sum_out: Any = "auto",
    closed_form: Any = "auto",
    chunk_size: int = 2**16,
    max_states: int = MAX_STATES,
) -> LogZEstimate:
    """Exact ``log Z`` by enumerating every binary configuration (chunked, vmapped).

    Args:
        model: NumPyro EBM program whose state sites are ``Bits``/``Spins`` (or an
            ``EnergyModel``).
        params: parameters (``None``: the model's initial values).
        rng_key: unused (exact).
        model_args, model_kwargs: arguments of ``model``.
        sum_out: ``"auto"`` (sum the largest eligible site in closed form), ``None`` (plain
            enumeration of every site) or a site name.
        closed_form: ``"auto"`` (use ``model.exact_log_partition`` only when a state site is
            continuous), ``True`` (always, when the model has one) or ``False``.
        chunk_size: states evaluated per vmapped chunk.
        max_states: refuse to enumerate more configurations than this (default 2^24).

    Returns:
        :class:`~ebm_ppl.partition.base.LogZEstimate` with ``stderr = 0`` and ``info`` holding
        ``num_states`` (enumerated), ``summed_out`` and ``closed_form``.

    Raises:
        ValueError: too many states; a non-binary site without a closed form; a bad
            ``sum_out``.

    Examples:
        >>> import math, ebm_ppl as ebm
        >>> from ebm_ppl.models import ising
        >>> est = ebm.log_partition(ising.model, method="exact", model_args=((4, 4),),
        ...                         model_kwargs={"beta": 0.5})
        >>> abs(est.log_z - 17.1053671187) < 1e-4, est.info["num_states"]
        (True, 65536)
    """
    del rng_key
    model_kwargs = dict(model_kwargs or {})
    em = as_energy_model(model, model_args, model_kwargs)
    params = _params(em, params)
    hook = getattr(em.model, "exact_log_partition", None)
    if closed_form not in ("auto", True, False):
        raise ValueError(f"closed_form must be 'auto', True or False, got {closed_form!r}")
    if hook is not None and (
        closed_form is True or (closed_form == "auto" and em.continuous_sites)
    ):
        log_z = hook(params, *em.args, **em.kwargs)
        return LogZEstimate(
            float(log_z),
            0.0,
            "exact",
            {"num_states": None, "summed_out": None, "closed_form": True},
        )
    supports = _finite_sites(em, em.state_sites)
    summed = _choose_summed(em, tuple(supports), sum_out)
    log_sum, num_states = _make_log_sum(
        em, supports, summed, chunk_size=chunk_size, max_states=max_states
    )
    log_z = jax.jit(log_sum)(params, {})
    return LogZEstimate(
        float(log_z),
        0.0,
        "exact",
        {"num_states": num_states, "summed_out": summed, "closed_form": False},
    )


def expectations(
    model: Any,
    params: Mapping[str, Any] | None,
    stats_fn: Callable[[Mapping[str, Any]], Any],
    *,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    chunk_size: int = 2**16,
    max_states: int = MAX_STATES,
) -> tuple[float, Any]:
    """Exact ``log Z`` and ``E[f(x)]`` under the model, by enumerating every state.

    Args:
        model: NumPyro EBM program with binary or categorical state sites (or ``EnergyModel``).
        params: parameters (``None``: the model's initial values).
        stats_fn: ``f(values) -> pytree of arrays`` of one state (a dict site -> array; discrete
            values as floats).
        model_args, model_kwargs: arguments of ``model``.
        chunk_size, max_states: as in :func:`log_partition_exact`.

    Returns:
        ``(log_z, expectations)``, the expectations with the pytree structure of ``f``'s output.

    Raises:
        ValueError: too many states; a state site that is neither binary nor categorical.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def pair():
        ...     s = numpyro.sample("s", ebm.Spins(2))
        ...     ebm.energy("E", -s[0] * s[1])
        >>> log_z, m = expectations(pair, None, lambda v: v["s"][0] * v["s"][1])
        >>> round(float(m), 6) == round(float(jnp.tanh(1.0)), 6)
        True
    """
    em = as_energy_model(model, model_args, model_kwargs)
    params = _params(em, params)
    supports = _finite_sites(em, em.state_sites)
    log_sum, _ = _make_log_sum(
        em, supports, None, chunk_size=chunk_size, max_states=max_states, stats_fn=stats_fn
    )
    log_z, means = jax.jit(log_sum)(params, {})
    return float(log_z), means


def free_energy(
    model: Any,
    params: Mapping[str, Any] | None,
    data: Mapping[str, Any],
    *,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    sum_out: Any = "auto",
    chunk_size: int = 2**16,
    max_states: int = MAX_STATES,
) -> jax.Array:
    """Exact free energies ``F(x_n) = -log Σ_h exp(-E(x_n, h))`` of some state sites.

    The state sites not in ``data`` are latent and summed out exactly (enumeration, with one
    site in closed form when eligible, as in :func:`log_partition_exact`); with no latent site
    ``F`` is the energy itself.

    Args:
        model: NumPyro EBM program (or ``EnergyModel``).
        params: parameters (``None``: initial values).
        data: dict site -> array ``(num_examples, *site_shape)`` for the observed state sites.
        model_args, model_kwargs: arguments of ``model``.
        sum_out, chunk_size, max_states: as in :func:`log_partition_exact` (for the latents).

    Returns:
        array ``(num_examples,)``.

    Raises:
        ValueError: unknown or mis-shaped data sites; non-binary latent sites.

    Examples:
        >>> import jax.numpy as jnp
        >>> from ebm_ppl.models import rbm
        >>> params = {"W": jnp.zeros((3, 2)), "b": jnp.zeros(3), "c": jnp.zeros(2)}
        >>> F = free_energy(rbm.model, params, {"v": jnp.ones((2, 3))}, model_args=(3, 2))
        >>> [round(float(f), 4) for f in F]                 # -2 log 2: two free hidden units
        [-1.3863, -1.3863]
    """
    em = as_energy_model(model, model_args, model_kwargs)
    params = _params(em, params)
    data = _check_data(em, data)
    latent = tuple(n for n in em.state_sites if n not in data)
    if not latent:
        return jax.jit(jax.vmap(em.energy, in_axes=(None, 0)))(params, data)
    supports = _finite_sites(em, latent)
    summed = _choose_summed(em, tuple(supports), sum_out)
    log_sum, _ = _make_log_sum(em, supports, summed, chunk_size=chunk_size, max_states=max_states)
    return -jax.jit(jax.vmap(log_sum, in_axes=(None, 0)))(params, data)


def _check_data(em: EnergyModel, data: Any) -> dict[str, jax.Array]:
    if not isinstance(data, Mapping) or not data:
        raise TypeError(f"data must be a non-empty dict site -> array, got {type(data).__name__}")
    unknown = [n for n in data if n not in em.state_sites]
    if unknown:
        raise ValueError(f"data has unknown site(s) {unknown}; state sites: {list(em.state_sites)}")
    data = em.plan.to_kernel({n: jnp.asarray(v) for n, v in data.items()})
    sizes = set()
    for n, v in data.items():
        want = em.sites[n].shape
        if v.shape[1:] != want:
            raise ValueError(f"data[{n!r}] must have shape (num_examples, *{want}), got {v.shape}")
        sizes.add(v.shape[0])
    if len(sizes) != 1:
        raise ValueError(
            f"every data site must have the same number of examples, got {sorted(sizes)}"
        )
    return data


def log_likelihood(
    model: Any,
    params: Mapping[str, Any] | None,
    data: Mapping[str, Any],
    *,
    log_z: float | LogZEstimate | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    sum_out: Any = "auto",
    chunk_size: int = 2**16,
    max_states: int = MAX_STATES,
) -> LogLikelihood:
    """Exact log-likelihoods ``log p(data_n) = -F(data_n) - log Z`` of some state sites.

    The state sites not in ``data`` are latent and summed out exactly (:func:`free_energy`);
    ``log Z`` comes from ``log_partition(method="exact")`` unless given. The result has the
    type of :func:`ebm_ppl.log_likelihood`'s.

    Args:
        model: NumPyro EBM program (or ``EnergyModel``).
        params: parameters (``None``: initial values).
        data: dict site -> array ``(num_examples, *site_shape)`` for the observed state sites.
        log_z: precomputed ``log Z`` (float or :class:`LogZEstimate`), or ``None``.
        model_args, model_kwargs: arguments of ``model``.
        sum_out, chunk_size, max_states: as in :func:`log_partition_exact` (for the latents).

    Returns:
        :class:`~ebm_ppl.partition.base.LogLikelihood` (``per_example`` of shape
        ``(num_examples,)``; ``log_z.method`` is ``"exact"``, or ``"given"`` for a float
        ``log_z``).

    Raises:
        ValueError: unknown or mis-shaped data sites; non-binary latent sites.

    Examples:
        >>> import math, jax.numpy as jnp
        >>> from ebm_ppl.models import rbm
        >>> params = {"W": jnp.zeros((3, 2)), "b": jnp.zeros(3), "c": jnp.zeros(2)}
        >>> ll = log_likelihood(rbm.model, params, {"v": jnp.ones((4, 3))}, model_args=(3, 2),
        ...                     log_z=5 * math.log(2.0), sum_out=None)
        >>> [round(float(x), 4) for x in ll.per_example]   # uniform over 8 visible states
        [-2.0794, -2.0794, -2.0794, -2.0794]
    """
    em = as_energy_model(model, model_args, model_kwargs)
    params = _params(em, params)
    data = _check_data(em, data)
    options = dict(sum_out=sum_out, chunk_size=chunk_size, max_states=max_states)
    if log_z is None:
        est = log_partition_exact(em, params, **options)
    else:
        est = as_log_z_estimate(log_z)
    return LogLikelihood.from_free_energies(free_energy(em, params, data, **options), est)
