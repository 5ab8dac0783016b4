"""Variational learning objectives: variational maximum likelihood and mean-field PCD.

**Variational maximum likelihood** (the seeds' adversarial training). For any ``q``,
``log Z(θ) ≥ E_q[-E_θ] + H(q)``, so

.. math::

    \\mathrm{NLL}(θ) = \\mathbb E_{p_D}[E_θ] + \\log Z(θ)
    \\;\\ge\\; \\mathbb E_{p_D}[E_θ] - \\mathbb E_q[E_θ] + H(q),

and training is the saddle point :math:`\\min_θ \\max_q`: :class:`VariationalML` alternates
``num_guide_steps`` SVI steps on ``q`` (``numpyro.infer.SVI`` maximizing
``E_q[-E_θ] + H(q)``; the EBM program is the SVI model, with ``θ`` fixed and hidden) with a
``θ`` step on ``mean E_θ(x⁺) − mean E_θ(x⁻)``, the negatives ``x⁻ ~ q`` under
``stop_gradient`` (optionally refined by a few MALA steps). When ``q = p_θ`` this gradient is
the exact likelihood gradient. ``q`` and its optimizer state live in the objective state, so
``fit`` checkpoints and resumes them.

**Mean-field PCD** (:class:`MeanFieldPCD`) for latent-variable EBMs (Boltzmann machines with
hidden units): the positive phase
replaces the intractable free energy ``F(v) = -log Σ_h e^{-E(v,h)}`` by its mean-field upper
bound ``F_q(v) = E_q[E(v,h)] − H(q) ≥ F(v)`` with ``q(h | v) = Π_j Bernoulli(μ_j)`` at its
fixed point (closed form for energies multilinear in the units); the negative phase uses
persistent chains (PCD). This is Salakhutdinov & Hinton's (2009) DBM learning rule. It was
first called ``ELBO``, a name that collides with :class:`numpyro.infer.ELBO` (a family of SVI
losses, a different thing); ``ELBO`` stays as a deprecated alias for one release.

References:
    Kim & Bengio (2016), Deep directed generative models with energy-based probability
    estimation; Kumar et al. (2019), Maximum entropy generators for energy-based models.
    Salakhutdinov & Hinton (2009), Deep Boltzmann machines. AISTATS.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO
from numpyro.infer.autoguide import AutoGuide, AutoMultivariateNormal, AutoNormal
from numpyro.infer.initialization import init_to_uniform

from ebm_ppl.energy.mean_field import BernoulliMeanField, BinaryBernoulli, energy_terms
from ebm_ppl.energy.model import EnergyModel
from ebm_ppl.kernels._random import as_key
from ebm_ppl.objectives.base import Objective
from ebm_ppl.objectives.contrastive import (
    PersistentContrastiveDivergence,
    _ExampleIndex,
    _run_chains,
    resolve_kernel,
)

__all__ = ["MeanFieldPCD", "VariationalML", "VariationalState", "mean_field_free_energy"]

Values = dict[str, jax.Array]


def _check_int(value: Any, name: str, minimum: int = 1, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _svi_model(em: EnergyModel):
    """The EBM program as an SVI model of its parameters, which are fixed and hidden from SVI."""

    def model(params):
        with (
            handlers.block(hide_fn=lambda msg: msg["type"] == "param"),
            handlers.substitute(data=dict(params)),
        ):
            em.model(*em.args, **em.kwargs)

    return model


def _draw(
    guide: Any, guide_params: Mapping[str, Any], rng_key: jax.Array, names, num: int
) -> Values:
    """``num`` draws of the state sites from a NumPyro guide with given parameters."""

    def one(key):
        tr = handlers.trace(
            handlers.seed(handlers.substitute(guide, data=dict(guide_params)), key)
        ).get_trace()
        return {n: tr[n]["value"] for n in names}

    return jax.vmap(one)(jax.random.split(rng_key, num))


class VariationalState(NamedTuple):
    """State of :class:`VariationalML` on a model with latent sites.

    Attributes:
        guide: SVI state of the negative-phase guide ``q(x, z)`` over every state site.
        positive: SVI states of the positive-phase guides ``q(z | x_n)``, one per training
            example (each leaf has a leading ``num_examples`` axis).

    Examples:
        >>> import jax.numpy as jnp
        >>> VariationalState((), {"loc": jnp.zeros((5, 2))}).positive["loc"].shape
        (5, 2)
    """

    guide: Any
    positive: Any


def _positive_model(em: EnergyModel, data_sites: tuple[str, ...]):
    """The EBM program for one example: ``x`` observed, parameters fixed and hidden, so its
    latent sample sites are the latents ``z`` and its log joint is ``-E(x, z)``."""

    def model(params, x):
        with (
            handlers.block(hide_fn=lambda msg: msg["type"] == "param"),
            handlers.substitute(data=dict(params)),
            handlers.condition(data={n: x[n] for n in data_sites}),
        ):
            em.model(*em.args, **em.kwargs)

    return model


class _LatentPhase:
    """Positive phase through NumPyro guides ``q(z | x_n)``, one per training example.

    Each update takes the batch's guides (rows of the persistent table, found by hashing the
    batch rows in the training data), runs ``num_steps`` SVI steps on each (the per-example
    ELBO ``E_q[-E_θ(x_n, z)] + H(q) ≤ -F_θ(x_n)``), writes them back, and returns the energies
    ``E_θ(x_n, z)`` at ``num_particles`` draws of each guide: their θ-gradient estimates
    ``E_q[∇θ E_θ(x_n, z)]``, which is ``∇θ F_θ(x_n)`` when ``q`` is the posterior.
    """

    def __init__(self, em, data_sites, latent, data, guide, optimizer, num_steps, num_particles):
        self.em, self.data_sites, self.latent = em, tuple(data_sites), tuple(latent)
        self.model = _positive_model(em, self.data_sites)
        if guide is None:
            guide = AutoNormal(self.model, init_loc_fn=init_to_uniform)
        elif isinstance(guide, type) and issubclass(guide, AutoGuide):
            guide = guide(self.model)
        self.guide = guide
        self.svi = SVI(self.model, guide, optimizer, Trace_ELBO(num_particles=num_particles))
        self.examples = _ExampleIndex({n: data[n] for n in self.data_sites})
        self.data = {n: jnp.asarray(data[n]) for n in self.data_sites}
        self.num_steps, self.num_particles = num_steps, num_particles

    def init(self, rng_key, params):
        keys = jax.random.split(rng_key, self.examples.size)
        sg = jax.lax.stop_gradient(params)
        return jax.vmap(lambda k, x: self.svi.init(k, sg, x))(keys, self.data)

    def energies(self, params, table, batch, rng_key):
        em, svi = self.em, self.svi
        sg = jax.lax.stop_gradient(params)
        x = {n: jnp.asarray(batch[n]) for n in self.data_sites}
        n = jax.tree.leaves(x)[0].shape[0]
        idx, found = self.examples.lookup(batch)
        rows = jax.tree.map(lambda t: t[idx], table)
        k_svi, k_draw = jax.random.split(rng_key)

        def one(state, key, xi):
            state = state._replace(rng_key=key)

            def step(state, _):
                return svi.update(state, sg, xi)

            state, losses = jax.lax.scan(step, state, None, length=self.num_steps)
            return state, -losses[-1]

        rows, elbo = jax.vmap(one)(rows, jax.random.split(k_svi, n), x)

        def draw(guide_params, key, xi):
            def single(k):
                tr = handlers.trace(
                    handlers.seed(handlers.substitute(self.guide, data=dict(guide_params)), k)
                ).get_trace(sg, xi)
                return {m: tr[m]["value"] for m in self.latent}

            return jax.vmap(single)(jax.random.split(key, self.num_particles))

        z = jax.vmap(draw)(svi.get_params(rows), jax.random.split(k_draw, n), x)
        z = jax.lax.stop_gradient(z)  # samples of q: no gradient flows through them

        def energy(xi, zi):
            return jnp.mean(jax.vmap(lambda zp: em.energy(params, {**xi, **zp}))(zi))

        slot = jnp.where(found, idx, self.examples.size)  # rows not in the data: not stored
        table = jax.tree.map(lambda t, r: t.at[slot].set(r, mode="drop"), table, rows)
        return jax.vmap(energy)(x, z), table, jnp.mean(elbo)


@dataclasses.dataclass(frozen=True)
class VariationalML:
    """Variational maximum likelihood: alternate SVI steps on a guide ``q`` and ``θ`` steps.

    Args:
        guide: a NumPyro guide over the model's state sites (e.g. an autoguide or a flow such
            as ``AutoBNAFNormal(model)``), or an autoguide *class* called with the bound model
            (default ``AutoMultivariateNormal``; for binary states the mean-field
            :class:`~ebm_ppl.partition.variational.BernoulliMeanField`).
        guide_kwargs: keyword arguments for an autoguide class (e.g. ``num_flows``).
        guide_optimizer: Optax optimizer of the guide's parameters (default ``adam(1e-3)``).
        num_guide_steps: SVI steps on ``q`` per ``θ`` update.
        num_particles: ELBO particles per SVI step.
        num_negatives: draws of ``q`` per ``θ`` update (default: the batch size).
        num_mcmc_steps: MALA steps refining each negative (0: plain draws of ``q``).
        step_size: MALA step size.
        positive_guide: for models with continuous latent sites ``z`` (state sites the data do
            not fill): the guide ``q(z | x)`` of one example, a NumPyro guide called with the
            arguments ``(params, x)`` of the per-example model (``x`` a dict of the data sites
            of one example), or an autoguide class (default ``AutoNormal``). One guide's
            parameters per training example persist in the objective state; each update runs
            ``num_positive_guide_steps`` SVI steps on the batch's guides (SVI is the positive
            phase) and scores the data by ``E_θ(x, z)`` at ``num_particles`` draws of each.
            Needs the training data (``fit`` passes it to ``build``).
        positive_guide_optimizer: Optax optimizer of the positive guides (default
            ``adam(0.02)``).
        num_positive_guide_steps: SVI steps per update on each guide of the batch.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     mu = numpyro.param("mu", 0.0)
        ...     x = numpyro.sample("x", ebm.Flat(()))
        ...     ebm.energy("E", 0.5 * (x - mu) ** 2)
        >>> obj = VariationalML(num_guide_steps=2).build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jnp.linspace(-1.0, 1.0, 8)}
        >>> state = obj.init(jax.random.PRNGKey(0), {"mu": 0.0}, batch)
        >>> loss, (state, metrics) = obj.loss({"mu": 0.0}, state, batch, jax.random.PRNGKey(1))
        >>> sorted(metrics)
        ['guide_elbo', 'negative_energy', 'positive_energy']
    """

    guide: Any = None
    guide_kwargs: Mapping[str, Any] | None = None
    guide_optimizer: Any = None
    num_guide_steps: int = 1
    num_particles: int = 16
    num_negatives: int | None = None
    num_mcmc_steps: int = 0
    step_size: float = 0.01
    positive_guide: Any = None
    positive_guide_optimizer: Any = None
    num_positive_guide_steps: int = 5

    def __post_init__(self):
        _check_int(self.num_guide_steps, "num_guide_steps")
        _check_int(self.num_positive_guide_steps, "num_positive_guide_steps")
        if self.positive_guide is not None and not callable(self.positive_guide):
            raise TypeError(
                f"positive_guide must be a NumPyro guide or a guide class, got {self.positive_guide!r}"
            )
        _check_int(self.num_particles, "num_particles")
        _check_int(self.num_negatives, "num_negatives", allow_none=True)
        _check_int(self.num_mcmc_steps, "num_mcmc_steps", minimum=0)
        if not (
            isinstance(self.step_size, (int, float))
            and np.isfinite(self.step_size)
            and self.step_size > 0
        ):
            raise ValueError(f"step_size must be a positive finite number, got {self.step_size!r}")
        if self.guide is not None and not callable(self.guide):
            raise TypeError(f"guide must be a NumPyro guide or a guide class, got {self.guide!r}")
        if self.guide_optimizer is not None and not hasattr(self.guide_optimizer, "update"):
            raise TypeError(
                f"guide_optimizer must be an optax.GradientTransformation, got "
                f"{type(self.guide_optimizer).__name__}"
            )

    def _make_guide(self, em: EnergyModel) -> Any:
        bound = functools.partial(em.model, *em.args, **em.kwargs)
        if self.guide is None:
            if em.discrete_sites:
                return BernoulliMeanField(em)
            return AutoMultivariateNormal(bound, init_loc_fn=init_to_uniform)
        if isinstance(self.guide, type) and issubclass(self.guide, AutoGuide):
            return self.guide(bound, **dict(self.guide_kwargs or {}))
        if self.guide_kwargs:
            raise ValueError("guide_kwargs apply to an autoguide class; guide is an instance")
        return self.guide

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the :class:`Objective` for an :class:`~ebm_ppl.EnergyModel`.

        Raises:
            ValueError: for discrete latent sites (use :class:`MeanFieldPCD` or PCD), latent
                sites without the training data in the context, or MALA refinement asked for
                on a model with discrete sites.
        """
        em = model if isinstance(model, EnergyModel) else EnergyModel(model)
        names = em.state_sites
        data_sites = tuple(context.get("data_sites") or names)
        latent = [n for n in names if n not in data_sites]
        discrete_latent = [n for n in latent if em.plan[n].is_discrete]
        if discrete_latent:
            raise ValueError(
                f"VariationalML: latent site(s) {discrete_latent} are discrete; use "
                "ebm_ppl.objectives.MeanFieldPCD or PersistentContrastiveDivergence"
            )
        data = context.get("data")
        if latent and not (isinstance(data, Mapping) and all(n in data for n in data_sites)):
            raise ValueError(
                f"VariationalML: the latent site(s) {latent} get one positive guide q(z | x) per "
                "training example, which needs the training data: build through ebm.fit (it "
                "passes data=...)"
            )
        if context.get("condition_sites"):
            raise ValueError("VariationalML does not support conditional models (observed inputs)")
        if self.num_mcmc_steps and em.discrete_sites:
            raise ValueError("num_mcmc_steps refines with MALA, which needs continuous state sites")
        guide = self._make_guide(em)
        optimizer = optax.adam(1e-3) if self.guide_optimizer is None else self.guide_optimizer
        elbo_cls = TraceGraph_ELBO if em.discrete_sites else Trace_ELBO
        elbo = elbo_cls(num_particles=self.num_particles)
        num_guide_steps, num_mcmc = self.num_guide_steps, self.num_mcmc_steps
        step_size, num_neg = self.step_size, self.num_negatives

        # One SVI for all updates: θ is the model's argument; the guide ignores it.
        svi = SVI(_svi_model(em), lambda params: guide(), optimizer, elbo)
        positive = None
        if latent:
            pos_optimizer = (
                optax.adam(0.02)
                if self.positive_guide_optimizer is None
                else self.positive_guide_optimizer
            )
            positive = _LatentPhase(
                em,
                data_sites,
                latent,
                data,
                self.positive_guide,
                pos_optimizer,
                self.num_positive_guide_steps,
                self.num_particles,
            )

        def quiet(fn, *args):
            # Binary sites carry one unit per batch element without a plate by design; NumPyro's
            # plate check under TraceGraph_ELBO would only be noise (see partition.variational).
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Missing a plate statement", category=UserWarning
                )
                return fn(*args)

        def init(rng_key, params, batch):
            del batch
            rng_key = as_key(rng_key)
            state = quiet(svi.init, rng_key, jax.lax.stop_gradient(params))
            if positive is None:
                return state
            return VariationalState(state, positive.init(jax.random.fold_in(rng_key, 1), params))

        def loss(params, obj_state, batch, rng_key):
            k_svi, k_neg, k_mcmc = jax.random.split(rng_key, 3)
            sg = jax.lax.stop_gradient(params)
            table = None
            if positive is not None:
                obj_state, table = obj_state.guide, obj_state.positive
            # The step key drives the guide's updates, so a resumed fit reproduces a straight run.
            state = obj_state._replace(rng_key=k_svi)

            def guide_step(state, _):
                return quiet(svi.update, state, sg)

            state, guide_losses = jax.lax.scan(guide_step, state, None, length=num_guide_steps)
            positives = {n: batch[n] for n in data_sites}
            n = num_neg or jax.tree.leaves(positives)[0].shape[0]
            negatives = _draw(guide, svi.get_params(state), k_neg, names, n)
            if num_mcmc:
                sampler = resolve_kernel("mala", step_size=step_size)
                pot = em.potential_fn(sg)
                z, _, _ = _run_chains(
                    sampler,
                    lambda z, fixed: pot(z),
                    k_mcmc,
                    em.unconstrain(negatives),
                    {},
                    num_mcmc,
                )
                negatives = em.constrain(z)
            # Negatives are samples, not functions of θ: no gradient flows through them.
            negatives = jax.lax.stop_gradient(negatives)
            metrics = {}
            if positive is None:
                e_pos = jax.vmap(lambda v: em.energy(params, v))(positives)
            else:
                k_pos = jax.random.fold_in(rng_key, 3)
                e_pos, table, pos_elbo = positive.energies(params, table, batch, k_pos)
                # mean per-example ELBO: a stochastic lower bound on -F(x) (the free energy)
                metrics["positive_elbo"] = pos_elbo
            e_neg = jax.vmap(lambda v: em.energy(params, v))(negatives)
            value = jnp.mean(e_pos) - jnp.mean(e_neg)
            metrics.update(
                {
                    "positive_energy": jnp.mean(e_pos),
                    "negative_energy": jnp.mean(e_neg),
                    # -loss of SVI = ELBO of q: a stochastic lower bound on log Z(θ).
                    "guide_elbo": -guide_losses[-1],
                }
            )
            new_state = state if positive is None else VariationalState(state, table)
            return value, (new_state, metrics)

        return Objective(init, loss)


# ----------------------------------------------------------------------------- mean-field PCD
def mean_field_free_energy(
    em: EnergyModel,
    params: Mapping[str, Any] | None,
    values: Mapping[str, Any],
    *,
    num_steps: int = 10,
    damping: float = 0.0,
) -> jax.Array:
    """Mean-field upper bound ``F_q(v) = E(v, μ) − H(q) ≥ F(v)`` on the free energy of ``v``.

    The binary state sites absent from ``values`` are the latents ``h``; ``q(h | v)`` is a
    product of Bernoullis whose means come from ``num_steps`` fixed-point sweeps
    ``p_j ← σ(−(hi − lo) ∂E/∂h_j (v, μ))`` (parallel updates, optionally damped), which are
    exact in one sweep for an RBM. ``μ`` is held under ``stop_gradient``: at the fixed point
    ``∂F_q/∂μ = 0``, so the parameter gradient needs no backpropagation through the sweeps.
    Valid for energies multilinear in the latent units.

    Args:
        em: the energy model.
        params: model parameters.
        values: dict with the data sites of one example.
        num_steps: fixed-point sweeps.
        damping: weight of the previous means in each sweep (``0 <= damping < 1``).

    Returns:
        scalar array.

    Examples:
        >>> import jax.numpy as jnp, ebm_ppl as ebm
        >>> from ebm_ppl.models import rbm
        >>> em = ebm.EnergyModel(rbm.model, 3, 2)
        >>> p = {"W": jnp.ones((3, 2)), "b": jnp.zeros(3), "c": jnp.zeros(2)}
        >>> v = {"v": jnp.array([1.0, 0.0, 1.0])}
        >>> bound = float(mean_field_free_energy(em, p, v))
        >>> exact = float(rbm.free_energy(p, v["v"]))
        >>> abs(bound - exact) < 1e-5           # q(h|v) is exact for an RBM
        True
    """
    params = dict(params or {})
    latent = [n for n in em.state_sites if n not in values]
    levels = em.plan.require_binary(
        latent,
        who="mean-field latents",
        hint="for continuous latents use VariationalML (a NumPyro guide per example as the "
        "positive phase)",
    )
    values = dict(values)
    sg_params = jax.lax.stop_gradient(params)
    sg_values = jax.lax.stop_gradient(values)

    def means(logits):
        return {
            n: levels[n][0] + (levels[n][1] - levels[n][0]) * jax.nn.sigmoid(logits[n])
            for n in latent
        }

    def sweep(logits, _):
        grad = jax.grad(lambda mu: energy_terms(em, sg_params, {**sg_values, **mu}))(means(logits))
        new = {n: -(levels[n][1] - levels[n][0]) * grad[n] for n in latent}
        return {n: damping * logits[n] + (1.0 - damping) * new[n] for n in latent}, None

    logits0 = {n: jnp.zeros(em.sites[n].shape) for n in latent}
    logits, _ = jax.lax.scan(sweep, logits0, None, length=num_steps)
    logits = jax.lax.stop_gradient(logits)
    entropy = sum(jnp.sum(BinaryBernoulli(logits[n], *levels[n]).entropy()) for n in latent)
    return energy_terms(em, params, {**values, **means(logits)}) - entropy


@dataclasses.dataclass(frozen=True)
class MeanFieldPCD:
    """Mean-field positive phase with persistent-chain negatives, for latent-variable EBMs.

    Loss ``mean F_q(v⁺) − mean E(x⁻)``: ``F_q`` is :func:`mean_field_free_energy` (an upper
    bound on the free energy of the data, tight when ``q(h | v)`` is exact, as for an RBM) and
    ``x⁻`` are persistent chains of the joint (PCD, under ``stop_gradient``). Formerly named
    ``ELBO`` (still importable, with a ``DeprecationWarning``, until the next release).

    Args:
        kernel: negative sampler (default block Gibbs for binary states); see
            :class:`~ebm_ppl.objectives.PersistentContrastiveDivergence`.
        num_mcmc_steps: transitions of the persistent chains per update.
        num_chains: persistent chains (default: the batch size).
        num_mean_field_steps: fixed-point sweeps of ``q(h | v)``.
        damping: damping of the sweeps.
        step_size: step size of Langevin kernels.
        kernel_options: structural options of the kernel.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> from ebm_ppl.models import rbm
        >>> em = ebm.EnergyModel(rbm.model, 4, 2)
        >>> obj = MeanFieldPCD(num_chains=8).build(em, data_sites=("v",), latent_sites=("h",))
        >>> batch = {"v": jnp.ones((8, 4))}
        >>> params = em.init_params(jax.random.PRNGKey(0))
        >>> state = obj.init(jax.random.PRNGKey(1), params, batch)
        >>> loss, _ = obj.loss(params, state, batch, jax.random.PRNGKey(2))
        >>> loss.shape
        ()
    """

    kernel: Any = None
    num_mcmc_steps: int = 1
    num_chains: int | None = None
    num_mean_field_steps: int = 10
    damping: float = 0.0
    step_size: float | None = None
    kernel_options: Mapping[str, Any] | None = None

    def __post_init__(self):
        _check_int(self.num_mean_field_steps, "num_mean_field_steps")
        if not (0.0 <= float(self.damping) < 1.0):
            raise ValueError(f"damping must be in [0, 1), got {self.damping!r}")

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the :class:`Objective` (a PCD objective with the mean-field positive phase)."""
        em = model if isinstance(model, EnergyModel) else EnergyModel(model)
        steps, damping = self.num_mean_field_steps, float(self.damping)

        def free_energy_fn(params, values):
            state = {n: v for n, v in values.items() if n in em.state_sites}
            return mean_field_free_energy(em, params, state, num_steps=steps, damping=damping)

        pcd = PersistentContrastiveDivergence(
            kernel=self.kernel,
            num_mcmc_steps=self.num_mcmc_steps,
            step_size=self.step_size,
            kernel_options=self.kernel_options,
            free_energy_fn=free_energy_fn,
            num_chains=self.num_chains,
        )
        return pcd.build(em, **context)


#: deprecated name -> (its replacement, why), kept for one release.
_DEPRECATED = {"ELBO": ("MeanFieldPCD", "the old name collided with numpyro.infer.ELBO")}


def _deprecated(name: str, module: str, stacklevel: int) -> Any:
    """The object behind a deprecated name of ``module``, with a ``DeprecationWarning``."""
    if name not in _DEPRECATED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new, why = _DEPRECATED[name]
    warnings.warn(
        f"{module}.{name} is deprecated and will be removed in the next release; use "
        f"{module}.{new} (the same objective; {why})",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return globals()[new]


def __getattr__(name: str) -> Any:  # PEP 562
    return _deprecated(name, __name__, stacklevel=2)
