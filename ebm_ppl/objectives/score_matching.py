"""Score matching: learning an energy without sampling it or its partition function.

All three objectives minimize a Fisher divergence ``E_data ½‖∇log p_data − ∇log p_θ‖²``
between the data and the model ``p_θ ∝ exp(−E_θ)``; the unknown data score is removed by
integration by parts (exact and sliced) or by a known noise kernel (denoising). They apply to
continuous state sites only; constrained sites are matched on their unconstrained space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_ppl.energy.view import StateView
from ebm_ppl.kernels import _random
from ebm_ppl.objectives.base import Objective

__all__ = [
    "DenoisingScoreMatching",
    "DSMState",
    "ScoreMatching",
    "SlicedScoreMatching",
]


def _probe(rng_key: jax.Array, shape: tuple[int, ...], kind: str) -> jax.Array:
    """Random probe vectors with ``E[v vᵀ] = I``."""
    if kind == "rademacher":
        return jax.random.rademacher(rng_key, shape, dtype=jnp.result_type(float))
    return _random.normal(rng_key, shape)


def _check_kind(kind: str, name: str) -> str:
    if kind not in ("gaussian", "rademacher"):
        raise ValueError(f"{name} must be 'gaussian' or 'rademacher', got {kind!r}")
    return kind


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class ScoreMatching:
    """Exact score matching (Hyvärinen 2005).

    Per example, ``½‖∇E(x)‖² − tr ∇²E(x)``, which equals the Fisher divergence to the data up to
    a constant. The Hessian trace is exact (``jax.jacfwd`` of the gradient: ``d`` forward passes,
    for small ``d``) or Hutchinson's estimate ``vᵀ∇²E v`` with ``num_probes`` random probes
    (one Hessian-vector product each).

    Args:
        hessian_trace: ``"exact"`` or ``"hutchinson"``.
        num_probes: probes per example for Hutchinson's estimate.
        probe: ``"rademacher"`` (lower variance) or ``"gaussian"`` probes.

    Raises:
        ValueError: for an unknown ``hessian_trace``/``probe`` or ``num_probes < 1``; at
            ``build``, for a model with a discrete state site.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     mu = numpyro.param("mu", jnp.zeros(2))
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))
        >>> obj = ScoreMatching().build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jnp.zeros((4, 2))}
        >>> loss, (state, metrics) = obj.loss({"mu": jnp.zeros(2)}, obj.init(None, {}, batch),
        ...                                   batch, jax.random.PRNGKey(0))
        >>> float(loss)  # ½·0 − tr I
        -2.0

    References:
        Hyvärinen, "Estimation of non-normalized statistical models by score matching", JMLR 2005.
    """

    def __init__(
        self, *, hessian_trace: str = "exact", num_probes: int = 1, probe: str = "rademacher"
    ):
        if hessian_trace not in ("exact", "hutchinson"):
            raise ValueError(
                f"hessian_trace must be 'exact' or 'hutchinson', got {hessian_trace!r}"
            )
        self.hessian_trace = hessian_trace
        self.num_probes = _check_count(num_probes, "num_probes")
        self.probe = _check_kind(probe, "probe")

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the pure ``Objective`` for ``model`` (an :class:`ebm_ppl.EnergyModel`)."""
        del context
        view = StateView(model, who="ScoreMatching", continuous_only=True, unconstrained=True)
        exact = self.hessian_trace == "exact"
        num_probes, probe = self.num_probes, self.probe

        def init(rng_key, params, batch):
            del rng_key, params
            view.split(batch)  # validates the batch before anything is compiled
            return ()

        def loss(params, obj_state, batch, rng_key):
            x, rest = view.split(batch)
            efn = view.energy_fn(params)
            grad_fn = jax.grad(efn)

            def per_example(xi, ri, key):
                g = grad_fn(xi, ri)
                if exact:
                    trace = jnp.trace(jax.jacfwd(grad_fn)(xi, ri))
                else:
                    v = _probe(key, (num_probes, xi.shape[0]), probe)
                    hvp = jax.vmap(lambda vi: jax.jvp(lambda z: grad_fn(z, ri), (xi,), (vi,))[1])(v)
                    trace = jnp.mean(jnp.sum(v * hvp, axis=-1))
                return 0.5 * jnp.sum(g**2), trace

            keys = _random.split(rng_key, x.shape[0])
            sq, tr = jax.vmap(per_example)(x, rest, keys)
            value = jnp.mean(sq - tr)
            return value, (
                obj_state,
                {"grad_norm_sq": 2.0 * jnp.mean(sq), "hessian_trace": jnp.mean(tr)},
            )

        return Objective(init, loss)


class SlicedScoreMatching:
    """Sliced score matching (Song et al. 2019).

    Projects the score onto ``num_projections`` random directions ``v`` per example:
    ``vᵀ∇²E(x)v + ½(vᵀ∇E(x))²`` costs one Hessian-vector product per projection, whatever the
    dimension. With ``variance_reduced=True`` the second term is replaced by its expectation over
    ``v``, ``½‖∇E(x)‖²`` (SSM-VR), which needs ``E[v vᵀ] = I`` (both probe kinds satisfy it).

    Args:
        num_projections: random projections per example (``>= 1``).
        variance_reduced: use the analytic ``½‖∇E‖²`` term (SSM-VR).
        projection: ``"gaussian"`` or ``"rademacher"``.

    Raises:
        ValueError: for ``num_projections < 1`` or an unknown ``projection``; at ``build``, for a
            model with a discrete state site.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(3))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> obj = SlicedScoreMatching(num_projections=2).build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jnp.zeros((4, 3))}
        >>> loss, _ = obj.loss({}, obj.init(None, {}, batch), batch, jax.random.PRNGKey(0))
        >>> loss.shape
        ()

    References:
        Song, Garg, Shi, Ermon, "Sliced score matching: a scalable approach to density and score
        estimation", UAI 2019.
    """

    def __init__(
        self,
        num_projections: int = 1,
        *,
        variance_reduced: bool = True,
        projection: str = "gaussian",
    ):
        self.num_projections = _check_count(num_projections, "num_projections")
        self.variance_reduced = bool(variance_reduced)
        self.projection = _check_kind(projection, "projection")

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the pure ``Objective`` for ``model``."""
        del context
        view = StateView(model, who="SlicedScoreMatching", continuous_only=True, unconstrained=True)
        m, vr, kind = self.num_projections, self.variance_reduced, self.projection

        def init(rng_key, params, batch):
            del rng_key, params
            view.split(batch)
            return ()

        def loss(params, obj_state, batch, rng_key):
            x, rest = view.split(batch)
            grad_fn = jax.grad(view.energy_fn(params))

            def per_example(xi, ri, key):
                v = _probe(key, (m, xi.shape[0]), kind)
                # One linearization, m Hessian-vector products: vᵀ∇²E v per projection.
                g, hvp_fn = jax.linearize(lambda z: grad_fn(z, ri), xi)
                hv = jax.vmap(hvp_fn)(v)
                curv = jnp.mean(jnp.sum(v * hv, axis=-1))
                if vr:
                    first = 0.5 * jnp.sum(g**2)
                else:
                    first = 0.5 * jnp.mean((v @ g) ** 2)
                return first, curv

            keys = _random.split(rng_key, x.shape[0])
            first, curv = jax.vmap(per_example)(x, rest, keys)
            value = jnp.mean(first - curv)
            return value, (obj_state, {"projected_curvature": jnp.mean(curv)})

        return Objective(init, loss)


class DSMState(NamedTuple):
    """State of :class:`DenoisingScoreMatching`: the number of loss evaluations so far.

    Examples:
        >>> int(DSMState(jnp.zeros((), jnp.int32)).step)
        0
    """

    step: jax.Array


class DenoisingScoreMatching:
    """Denoising score matching (Vincent 2011), with an annealed noise schedule.

    Per example ``x̃ = x + σε`` and the model's score is regressed on the noise kernel's:
    ``½σ²‖−∇E(x̃) + ε/σ‖² = ½‖ε − σ∇E(x̃)‖²`` (the ``σ²`` weighting of Song & Ermon keeps the
    scale comparable across ``σ``). The optimum is the σ-smoothed data density, not the data
    density itself: for a Gaussian EBM the precision is ``(S + σ²I)⁻¹``, a known bias.

    A decreasing tuple ``sigma = (σ₁ > σ₂ > ... > σ_K)`` is annealed in ``K`` equal segments of
    the run; the run length comes from ``num_steps`` (here, or the ``num_steps`` that
    :func:`ebm_ppl.fit` passes to ``build``). The step counter lives in ``obj_state``.

    Args:
        sigma: noise scale (``> 0``) or a strictly decreasing tuple of them.
        num_steps: length of the run over which a tuple is annealed.

    Raises:
        ValueError: for ``sigma <= 0``, an empty or non-decreasing tuple; at ``build``, for a
            tuple without ``num_steps`` or a model with a discrete state site.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> obj = DenoisingScoreMatching((1.0, 0.1), num_steps=100).build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jnp.zeros((4, 2))}
        >>> state = obj.init(None, {}, batch)
        >>> loss, (state, metrics) = obj.loss({}, state, batch, jax.random.PRNGKey(0))
        >>> int(state.step), float(metrics["sigma"])
        (1, 1.0)

    References:
        Vincent, "A connection between score matching and denoising autoencoders", Neural
        Computation 2011. Song & Ermon, "Generative modeling by estimating gradients of the data
        distribution", NeurIPS 2019.
    """

    def __init__(self, sigma: float | Sequence[float] = 0.1, *, num_steps: int | None = None):
        sigmas = tuple(sigma) if isinstance(sigma, (tuple, list)) else (sigma,)
        if not sigmas:
            raise ValueError(
                "sigma must be a positive float or a non-empty decreasing tuple, got ()"
            )
        try:
            sigmas = tuple(float(s) for s in sigmas)
        except (TypeError, ValueError):
            raise TypeError(f"sigma must be a float or a tuple of floats, got {sigma!r}") from None
        if any(not s > 0 for s in sigmas):
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        if any(b >= a for a, b in zip(sigmas, sigmas[1:], strict=False)):
            raise ValueError(
                f"sigma must be strictly decreasing (annealed large to small), got {sigma!r}"
            )
        if num_steps is not None:
            _check_count(num_steps, "num_steps")
        self.sigmas = sigmas
        self.num_steps = num_steps

    def build(self, model: Any, *, num_steps: int | None = None, **context: Any) -> Objective:
        """Build the pure ``Objective``; ``num_steps`` (from ``fit``) sets the annealing length."""
        del context
        view = StateView(
            model, who="DenoisingScoreMatching", continuous_only=True, unconstrained=True
        )
        total = self.num_steps if self.num_steps is not None else num_steps
        k = len(self.sigmas)
        if k > 1 and total is None:
            raise ValueError(
                f"num_steps is needed to anneal sigma={self.sigmas}: pass "
                "DenoisingScoreMatching(sigma, num_steps=...) or fit(..., num_steps=...)"
            )
        total = _check_count(int(total), "num_steps") if total is not None else 1
        sigmas = jnp.asarray(self.sigmas) if k > 1 else None
        sigma0 = self.sigmas[0]

        def init(rng_key, params, batch):
            del rng_key, params
            view.split(batch)
            return DSMState(jnp.zeros((), jnp.int32))

        def loss(params, obj_state, batch, rng_key):
            x, rest = view.split(batch)
            if k > 1:
                idx = jnp.minimum(obj_state.step * k // total, k - 1)
                sigma = sigmas[idx]
            else:
                sigma = jnp.asarray(sigma0, x.dtype)
            eps = _random.normal(rng_key, x.shape, x.dtype)
            grad_fn = jax.vmap(jax.grad(view.energy_fn(params)))
            g = grad_fn(x + sigma * eps, rest)
            value = 0.5 * jnp.mean(jnp.sum((eps - sigma * g) ** 2, axis=-1))
            new_state = DSMState(obj_state.step + 1)
            return value, (new_state, {"sigma": sigma})

        return Objective(init, loss)
