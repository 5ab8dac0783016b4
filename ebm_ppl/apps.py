"""Applications of a trained energy-based model: anomaly and out-of-distribution scores,
inpainting (conditional sampling of the missing part of a state), denoising, and the
evaluation helpers they need (AUROC, expected calibration error).

Every function takes a NumPyro EBM program (or an :class:`ebm_ppl.EnergyModel`) and its
parameters; nothing here trains. Scores follow the energy's sign: **a larger score is more
anomalous** (higher free energy, lower unnormalized density).

* :func:`anomaly_scores`: the free energy ``F(x) = -log Σ_h exp(-E(x, h))`` of each example,
  binary latent sites summed out exactly (an RBM's hidden layer in closed form).
* :func:`classifier_energy`: ``E(x) = -logsumexp_y f(x)[y]`` of a classifier's logits, the
  energy a classifier defines (Grathwohl et al. 2020); :func:`max_softmax_score` beside it.
* :func:`auroc`, :func:`expected_calibration_error`: evaluation.
* :func:`inpaint`: draws of the unobserved units of one site given the observed ones, by
  running the model's own kernel (``kernel="auto"``: block Gibbs for binary sites, MALA for
  continuous ones) with the observed units clamped; one set of chains per example, vmapped.
* :func:`denoise`: the posterior ``p(x | y) ∝ exp(-E(x)) p(y | x)`` of a clean state given a
  noisy observation under bit/spin flips or Gaussian noise, sampled the same way.

Examples:
    >>> import jax.numpy as jnp
    >>> auroc(jnp.array([0.0, 1.0]), jnp.array([2.0, 3.0]))
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.energy import EnergyModel
from ebm_ppl.kernels.resolve import resolve_kernel
from ebm_ppl.partition.likelihood import free_energy as _free_energy

__all__ = [
    "Imputation",
    "anomaly_scores",
    "auroc",
    "classifier_energy",
    "denoise",
    "expected_calibration_error",
    "inpaint",
    "max_softmax_score",
]

_NOISE = ("flip", "gaussian")


def _energy_model(model: Any, model_args: tuple, model_kwargs: Mapping[str, Any] | None):
    if isinstance(model, EnergyModel):
        if model_args or model_kwargs:
            raise ValueError("model is an EnergyModel: its arguments are bound; omit model_args")
        return model
    return EnergyModel(model, *model_args, **dict(model_kwargs or {}))


def _pick_site(em: EnergyModel, site: str | None, argument: str = "site") -> str:
    states = em.state_sites
    if site is None:
        if len(states) != 1:
            raise ValueError(
                f"{argument} must name the state site the data are values of; the model has "
                f"several state sites {list(states)}"
            )
        return states[0]
    if site not in states:
        raise ValueError(f"{argument} must be one of the state sites {list(states)}, got {site!r}")
    return site


def _batch(x: Any, shape: tuple[int, ...], argument: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.shape == shape:
        x = x[None]
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"{argument} must have shape (num_examples, *{shape}) or {shape}, got {x.shape}"
        )
    return x


# ------------------------------------------------------------------------------------ scores
def anomaly_scores(
    model: Any,
    params: Mapping[str, Any] | None,
    x: Any,
    *,
    site: str | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Free energy of each example: larger means more anomalous.

    State sites other than ``site`` must be binary latents (summed out exactly, e.g. the
    hidden layer of an RBM: ``F(v) = -bᵀv - Σ_j softplus(c_j + (vᵀW)_j)``); a model whose only
    state site is ``site`` scores by its energy.

    Args:
        model: NumPyro EBM program or :class:`ebm_ppl.EnergyModel`.
        params: its parameters.
        x: ``(num_examples, *site_shape)`` values of ``site``.
        site: the state site ``x`` holds (default: the only state site).
        model_args, model_kwargs: the program's arguments.

    Returns:
        ``(num_examples,)`` scores.

    Raises:
        ValueError: ``site`` is not a state site, ``x`` has the wrong shape, or a latent site is
            not binary.

    Examples:
        >>> import jax.numpy as jnp
        >>> from ebm_ppl.models import rbm
        >>> p = {"W": jnp.zeros((2, 1)), "b": jnp.array([2.0, 2.0]), "c": jnp.zeros(1)}
        >>> s = anomaly_scores(rbm.model, p, jnp.array([[1.0, 1.0], [0.0, 0.0]]), site="v",
        ...                    model_args=(2, 1))
        >>> bool(s[1] > s[0])      # all-off is unlikely under positive biases
        True
    """
    em = _energy_model(model, model_args, model_kwargs)
    site = _pick_site(em, site)
    x = _batch(x, em.plan[site].shape, "x")
    latent = [n for n in em.state_sites if n != site]
    if not latent:
        return em.batch_energy(params, em.plan.to_kernel({site: x}))
    bad = [n for n in latent if em.plan[n].kind != "binary"]
    if bad:
        raise ValueError(
            f"anomaly_scores sums latent sites out exactly; {bad} are not binary "
            "(ebm_ppl.partition.likelihood.latent_free_energy integrates continuous latents)"
        )
    return _free_energy(em, params, {site: x})


def _check_logits(logits: Any, argument: str = "logits") -> jax.Array:
    logits = jnp.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"{argument} must have shape (num_examples, num_classes) with num_classes >= 2, "
            f"got {logits.shape}"
        )
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"{argument} must be a floating array, got dtype {logits.dtype}")
    return logits


def classifier_energy(logits: Any) -> jax.Array:
    """``E(x) = -logsumexp_y f(x)[y]``: the energy a classifier's logits define (JEM).

    Larger means more out-of-distribution. Shifting all logits of an example by a constant
    leaves the classifier unchanged but moves this energy: it reads what softmax discards.

    Args:
        logits: ``(num_examples, num_classes)``.

    Returns:
        ``(num_examples,)``.

    Raises:
        ValueError: ``logits`` is not ``(num_examples, num_classes >= 2)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> classifier_energy(jnp.zeros((1, 4))).round(4).tolist()   # -log 4
        [-1.3863]
    """
    return -jax.scipy.special.logsumexp(_check_logits(logits), axis=-1)


def max_softmax_score(logits: Any) -> jax.Array:
    """``-max_y softmax(f(x))[y]`` (Hendrycks & Gimpel 2017): larger is more anomalous.

    Examples:
        >>> import jax.numpy as jnp
        >>> max_softmax_score(jnp.zeros((1, 4))).tolist()
        [-0.25]
    """
    return -jnp.max(jax.nn.softmax(_check_logits(logits), axis=-1), axis=-1)


def auroc(scores_in: Any, scores_out: Any) -> float:
    """Area under the ROC curve of ``scores`` separating outliers (positives) from inliers.

    ``P(score_out > score_in) + ½ P(score_out = score_in)`` (the Mann–Whitney statistic), by
    average ranks; 1 when every outlier scores above every inlier, 0.5 for chance.

    Args:
        scores_in: ``(n_in,)`` scores of in-distribution examples.
        scores_out: ``(n_out,)`` scores of outliers.

    Raises:
        ValueError: an empty, non-1-D or non-finite argument.

    Examples:
        >>> auroc([0.0, 1.0, 2.0], [1.0, 3.0])      # (1.5 + 3) / 6
        0.75
    """
    a = np.asarray(scores_in, dtype=np.float64)
    b = np.asarray(scores_out, dtype=np.float64)
    for name, s in (("scores_in", a), ("scores_out", b)):
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name} has non-finite values")
    allv = np.concatenate([a, b])
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    ranks = np.empty(len(allv))
    # average ranks over ties
    uniq, start, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    r_out = ranks[len(a) :].sum()
    return float((r_out - len(b) * (len(b) + 1) / 2.0) / (len(a) * len(b)))


def expected_calibration_error(logits: Any, labels: Any, *, num_bins: int = 15) -> float:
    """Expected calibration error of a classifier (Guo et al. 2017).

    ``Σ_b (n_b / n) |accuracy_b - confidence_b|`` over ``num_bins`` equal-width bins of the
    confidence ``max_y softmax(f(x))[y]``.

    Args:
        logits: ``(num_examples, num_classes)``.
        labels: ``(num_examples,)`` integer classes.
        num_bins: confidence bins.

    Raises:
        ValueError: shapes that do not match, or ``num_bins < 1``.

    Examples:
        >>> import jax.numpy as jnp
        >>> round(expected_calibration_error(jnp.array([[2.0, 0.0], [0.0, 2.0]]), [0, 0]), 4)  # |0.5 - σ(2)|
        0.3808
    """
    logits = _check_logits(logits)
    labels = np.asarray(labels)
    if labels.shape != logits.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integers of shape {logits.shape[:1]}, got {labels.dtype} "
            f"{labels.shape}"
        )
    if isinstance(num_bins, bool) or int(num_bins) < 1:
        raise ValueError(f"num_bins must be an integer >= 1, got {num_bins!r}")
    probs = np.asarray(jax.nn.softmax(logits, axis=-1), dtype=np.float64)
    conf = probs.max(-1)
    correct = (probs.argmax(-1) == labels).astype(np.float64)
    bins = np.minimum((conf * num_bins).astype(int), num_bins - 1)
    ece = 0.0
    for b in range(int(num_bins)):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


# ------------------------------------------------------------------------- conditional draws
class Imputation(NamedTuple):
    """Draws of a site given evidence.

    Attributes:
        samples: ``(num_examples, num_chains * num_samples, *site_shape)`` draws, observed units
            at their observed values.
        mean: ``(num_examples, *site_shape)`` posterior mean of each unit (for bits, the
            probability of 1), observed units exact.
        acceptance_rate: ``(num_examples,)`` mean acceptance rate of the transitions.
    """

    samples: jax.Array
    mean: jax.Array
    acceptance_rate: jax.Array


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _conditioned_draws(
    rng_key: Any,
    em: EnergyModel,
    params: Mapping[str, Any] | None,
    site: str,
    evidence: jax.Array,
    mask: jax.Array,
    extra_energy: Callable[[jax.Array, jax.Array], jax.Array] | None,
    *,
    kernel: Any,
    num_chains: int,
    num_warmup: int,
    num_samples: int,
    step_size: Any,
    kernel_options: Mapping[str, Any] | None,
) -> Imputation:
    num_chains = _check_count(num_chains, "num_chains", 1)
    num_warmup = _check_count(num_warmup, "num_warmup", 0)
    num_samples = _check_count(num_samples, "num_samples", 1)
    params = em.validate_params(params)
    plan = em.plan
    spec = plan[site]
    if spec.kind not in ("binary", "continuous"):
        raise ValueError(f"site {site!r} must be binary or continuous, got kind {spec.kind!r}")
    if spec.is_constrained:
        raise ValueError(f"site {site!r} must be unconstrained (Flat) or binary")
    affine = {n: v for n, v in em.affine_sites.items()} if plan.binary_sites else None
    try:
        sampler = resolve_kernel(
            kernel,
            plan=plan,
            purpose="train",
            step_size=step_size,
            kernel_options=kernel_options,
            affine=affine if isinstance(kernel, str) else None,
        )
    except ValueError as err:
        raise ValueError(f"kernel: {err}") from None
    potential = em.potential_fn(params)
    ftype = jnp.result_type(float)
    evidence = jnp.asarray(evidence, ftype)
    n = evidence.shape[0]
    k_init, k_run = jax.random.split(
        jnp.asarray(rng_key) if not isinstance(rng_key, int) else jax.random.PRNGKey(rng_key)
    )
    starts = em.init_values(k_init, n * num_chains)
    starts = plan.to_kernel(em.unconstrain(starts))
    starts = jax.tree.map(lambda a: a.reshape(n, num_chains, *a.shape[1:]).astype(ftype), starts)

    def clamp(pos, obs, m):
        return {**pos, site: jnp.where(m, obs, pos[site])}

    def one_example(key, start, obs, m):
        def efn(pos):
            e = potential(clamp(pos, obs, m))
            if extra_energy is not None:
                e = e + extra_energy(pos[site], obs)
            return e

        def one_chain(k, pos):
            pos = clamp(pos, obs, m) if extra_energy is None else pos
            state = sampler.init(pos, efn)

            def body(state, k):
                state, info = sampler.step(k, state, efn)
                acc = jnp.mean(jnp.asarray(getattr(info, "acceptance_rate", 1.0), ftype))
                return state, (state.position[site], acc)

            keys = jax.random.split(k, num_warmup + num_samples)
            _, (draws, acc) = jax.lax.scan(body, state, keys)
            return draws[num_warmup:], jnp.mean(acc)

        draws, acc = jax.vmap(one_chain)(jax.random.split(key, num_chains), start)
        draws = draws.reshape(num_chains * num_samples, *draws.shape[2:])
        if extra_energy is None:
            draws = jnp.where(m, obs, draws)
        return draws, jnp.mean(acc)

    run = jax.jit(jax.vmap(one_example))
    draws, acc = run(jax.random.split(k_run, n), starts, evidence, mask)
    return Imputation(draws, jnp.mean(draws, axis=1), acc)


def inpaint(
    rng_key: Any,
    model: Any,
    params: Mapping[str, Any] | None,
    x: Any,
    mask: Any,
    *,
    site: str | None = None,
    kernel: Any = "auto",
    num_chains: int = 1,
    num_warmup: int = 100,
    num_samples: int = 100,
    step_size: Any = None,
    kernel_options: Mapping[str, Any] | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Imputation:
    """Sample the unobserved units of ``site`` given the observed ones: ``p(x_miss | x_obs)``.

    The model is conditioned on the observed units by clamping them: the chains run the
    model's kernel (``"auto"``: block Gibbs for binary sites, including latent layers such as
    an RBM's or a DBM's hidden units; MALA for continuous sites) on the full state with
    ``x_obs`` substituted in the energy, so the observed units never move. Each example gets
    ``num_chains`` chains; examples and chains are vmapped in one compiled function.

    Args:
        rng_key: PRNG key or int.
        model: NumPyro EBM program or :class:`ebm_ppl.EnergyModel`.
        params: its parameters.
        x: ``(num_examples, *site_shape)`` values of ``site`` (the entries where ``mask`` is
            false are ignored).
        mask: boolean, same shape as ``x``: ``True`` where a unit is observed.
        site: the state site ``x`` holds (default: the only state site).
        kernel: ``"auto"`` or a kernel name of :func:`ebm_ppl.kernels.resolve.resolve_kernel`.
        num_chains: chains per example.
        num_warmup: transitions discarded per chain.
        num_samples: transitions kept per chain.
        step_size: Langevin step size (continuous sites).
        kernel_options: options of the kernel.
        model_args, model_kwargs: the program's arguments.

    Returns:
        :class:`Imputation`.

    Raises:
        ValueError: ``site``/``x``/``mask``/counts/kernel invalid (the message names the
            argument); TypeError: a ``mask`` that is not boolean.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from ebm_ppl.models import rbm
        >>> p = {"W": jnp.full((2, 1), 6.0), "b": jnp.full(2, -3.0), "c": jnp.full(1, -3.0)}
        >>> out = inpaint(0, rbm.model, p, jnp.array([[1.0, 0.0]]), jnp.array([[True, False]]),
        ...               site="v", num_samples=400, model_args=(2, 1))
        >>> out.samples.shape, bool(out.mean[0, 1] > 0.5)    # the pixels agree through h
        ((1, 400, 2), True)
    """
    em = _energy_model(model, model_args, model_kwargs)
    site = _pick_site(em, site)
    shape = em.plan[site].shape
    x = _batch(x, shape, "x")
    mask_arr = jnp.asarray(mask)
    if mask_arr.dtype != jnp.bool_:
        raise TypeError(
            f"mask must be a boolean array (True = observed), got dtype {mask_arr.dtype}"
        )
    if mask_arr.shape == shape:
        mask_arr = jnp.broadcast_to(mask_arr, x.shape)
    if mask_arr.shape != x.shape:
        raise ValueError(f"mask must have the shape of x {x.shape} (or {shape}), got {mask.shape}")
    return _conditioned_draws(
        rng_key,
        em,
        params,
        site,
        x,
        mask_arr,
        None,
        kernel=kernel,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        step_size=step_size,
        kernel_options=kernel_options,
    )


def denoise(
    rng_key: Any,
    model: Any,
    params: Mapping[str, Any] | None,
    y: Any,
    *,
    noise: str = "flip",
    noise_scale: float = 0.1,
    site: str | None = None,
    kernel: Any = "auto",
    num_chains: int = 1,
    num_warmup: int = 100,
    num_samples: int = 100,
    step_size: Any = None,
    kernel_options: Mapping[str, Any] | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Imputation:
    """Sample the clean state given a noisy one: ``p(x | y) ∝ exp(-E(x)) p(y | x)``.

    ``noise="flip"``: each binary unit of ``y`` is the clean unit flipped with probability
    ``noise_scale`` (``-log p(y|x) = log((1-p)/p) · #{i: x_i ≠ y_i}`` + const, affine in each
    unit, so block Gibbs stays exact); ``noise="gaussian"``: ``y = x + noise_scale · ε`` for a
    continuous site. The model's energy is the prior (an Ising model gives the classical
    denoising posterior).

    Args:
        rng_key: PRNG key or int.
        model: NumPyro EBM program (the prior) or :class:`ebm_ppl.EnergyModel`.
        params: its parameters.
        y: ``(num_examples, *site_shape)`` noisy observations.
        noise: ``"flip"`` (binary sites) or ``"gaussian"`` (continuous sites).
        noise_scale: flip probability in ``(0, 0.5)``, or the Gaussian standard deviation.

    ``site``, ``kernel``, ``num_chains``, ``num_warmup``, ``num_samples``, ``step_size``,
    ``kernel_options``, ``model_args`` and ``model_kwargs`` are as in :func:`inpaint`.

    Returns:
        :class:`Imputation`; ``mean`` is the posterior mean (its sign/threshold is the
        posterior-marginal estimate of the clean image).

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def chain():
        ...     s = numpyro.sample("s", ebm.Spins(5))
        ...     ebm.energy("E", -2.0 * jnp.sum(s[:-1] * s[1:]))
        >>> y = jnp.array([[1.0, 1.0, -1.0, 1.0, 1.0]])
        >>> out = denoise(0, chain, {}, y, noise_scale=0.2, num_samples=400)
        >>> bool(out.mean[0, 2] > 0)        # the strong coupling outvotes the lone flip
        True
    """
    em = _energy_model(model, model_args, model_kwargs)
    site = _pick_site(em, site)
    spec = em.plan[site]
    y = _batch(y, spec.shape, "y")
    if noise not in _NOISE:
        raise ValueError(f"noise must be one of {_NOISE}, got {noise!r}")
    scale = float(noise_scale)
    if noise == "flip":
        if spec.kind != "binary":
            raise ValueError(f"noise='flip' needs a binary site; {site!r} is {spec.kind}")
        if not 0.0 < scale < 0.5:
            raise ValueError(f"noise_scale must be a flip probability in (0, 0.5), got {scale}")
        lo, hi = spec.levels  # type: ignore[misc]
        weight = float(np.log((1.0 - scale) / scale))

        def extra(x, obs):
            # |x - y| / (hi - lo) counts mismatches and is affine in each unit of x
            diff = (x - lo) + (obs - lo) - 2.0 * (x - lo) * (obs - lo) / (hi - lo)
            return weight * jnp.sum(diff) / (hi - lo)
    else:
        if spec.kind != "continuous":
            raise ValueError(f"noise='gaussian' needs a continuous site; {site!r} is {spec.kind}")
        if not scale > 0.0:
            raise ValueError(f"noise_scale must be > 0, got {scale}")

        def extra(x, obs):
            return jnp.sum((x - obs) ** 2) / (2.0 * scale**2)

    mask = jnp.zeros(y.shape, bool)
    return _conditioned_draws(
        rng_key,
        em,
        params,
        site,
        y,
        mask,
        extra,
        kernel=kernel,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        step_size=step_size,
        kernel_options=kernel_options,
    )
