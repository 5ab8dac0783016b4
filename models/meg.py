"""Maximum-entropy generators (MEG; Kumar, Goyal, Courville & Bengio 2019).

An energy ``E_θ(x)`` is trained against a generator ``x = G_φ(z)``, ``z ~ N(0, I)``, whose
samples are the negatives of the likelihood gradient:

.. math::

    \\nabla_θ L_E = \\mathbb{E}_{p_D}[\\nabla_θ E_θ(x)] - \\mathbb{E}_{z}[\\nabla_θ E_θ(G(z))],

while the generator is trained to follow ``p_θ ∝ exp(-E_θ)`` by minimizing

.. math::

    L_G = \\mathbb{E}_z[E_θ(G(z))] - H[p_G] = KL(p_G ‖ p_θ) - \\log Z_θ.

**The entropy estimator.** Kumar et al. estimate ``H[p_G]`` through the mutual information
between ``z`` and a noisy ``G(z)`` (a Jensen–Shannon / DeepInfoMax critic, a third network).
Here the generator is a small **normalizing flow** (affine coupling layers and a final
elementwise affine map), so ``G`` is a bijection with a tractable Jacobian and the entropy is
exact up to Monte Carlo error:

.. math::

    H[p_G] = H[N(0, I)] + \\mathbb{E}_z \\log|\\det J_G(z)|

(:func:`entropy`). It is unbiased, needs no critic and no noise level, and its only cost is the
generator's expressiveness (a flow, not an arbitrary network); on the 2-D toy sets this is the
honest trade, and the test checks it against the closed form of an affine generator.

**Sampling** (:func:`sample_latent`) runs MALA in the latent space on the energy pulled back,
``U(z) = E_θ(G(z)) + ‖z‖²/2`` (Kumar et al.'s latent-space MCMC), then maps ``x = G(z)``; its
``x``-density is ``∝ p_G(x) e^{-E_θ(x)}``, the generator sharpened by the energy.
``exact=True`` samples ``U(z) = E_θ(G(z)) − log|det J_G(z)|`` instead, so that ``x = G(z)``
is distributed as ``p_θ`` itself (change of variables through the bijection; the generator
then only reparametrizes the space, which helps MALA when ``p_G ≈ p_θ``).

Training goes through :func:`ebm_ppl.fit` with the :class:`MEG` objective, which carries the
generator and its optimizer in the objective state (see :class:`MEGState`).

Examples:
    >>> import jax, ebm_ppl as ebm
    >>> from ebm_ppl.models.neural import mlp_energy
    >>> g = init_generator(jax.random.PRNGKey(0), 2, hidden=8, num_layers=2)
    >>> x, log_det = forward(g, jax.numpy.zeros((5, 2)))
    >>> x.shape, log_det.shape
    ((5, 2), (5,))

References:
    Kumar, R., Ozair, S., Goyal, A., Courville, A. & Bengio, Y. (2019). Maximum Entropy
    Generators for Energy-Based Models. arXiv:1901.08508.
    Dinh, L., Sohl-Dickstein, J. & Bengio, S. (2017). Density estimation using Real NVP. ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ebm_ppl.kernels import mala
from ebm_ppl.objectives.base import Objective

__all__ = [
    "MEG",
    "MEGState",
    "entropy",
    "forward",
    "generate",
    "init_generator",
    "latent_energy",
    "sample_latent",
]

#: bound on each coupling layer's log-scale (``s = SCALE_LIMIT · tanh(·)``): keeps the flow
#: well conditioned early in training, when the energy's gradients are large.
SCALE_LIMIT = 2.0


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def init_generator(
    rng_key: Any,
    dim: int,
    *,
    hidden: int = 64,
    num_layers: int = 4,
    scale: float = 1.0,
) -> dict[str, Any]:
    """Parameters of the flow generator ``G: R^dim -> R^dim``.

    ``num_layers`` affine couplings alternate which half of the coordinates they transform;
    each conditioner is an MLP (one hidden layer of ``hidden`` tanh units) whose output layer
    starts at zero, so every coupling starts as the identity and ``G(z) = scale · z`` at
    initialization.

    Args:
        rng_key: PRNG key.
        dim: data dimension (``>= 2``: a coupling needs two halves).
        hidden: conditioner width.
        num_layers: number of coupling layers.
        scale: initial value of the final elementwise scale.

    Returns:
        dict with ``"couplings"`` (a list of dicts ``W0, b0, W1, b1``) and ``"log_scale"``,
        ``"shift"`` of shape ``(dim,)``.

    Raises:
        ValueError: a bad ``dim``, ``hidden``, ``num_layers`` or ``scale``.

    Examples:
        >>> import jax
        >>> g = init_generator(jax.random.PRNGKey(0), 2, hidden=8, num_layers=2)
        >>> len(g["couplings"]), g["couplings"][0]["W0"].shape
        (2, (2, 8))
    """
    _check_int("dim", dim, 2)
    _check_int("hidden", hidden, 1)
    _check_int("num_layers", num_layers, 1)
    if not (math.isfinite(float(scale)) and float(scale) > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    couplings = []
    for key in jax.random.split(rng_key, num_layers):
        limit = math.sqrt(6.0 / (dim + hidden))
        couplings.append(
            {
                "W0": jax.random.uniform(key, (dim, hidden), minval=-limit, maxval=limit),
                "b0": jnp.zeros(hidden),
                "W1": jnp.zeros((hidden, 2 * dim)),
                "b1": jnp.zeros(2 * dim),
            }
        )
    return {
        "couplings": couplings,
        "log_scale": jnp.full((dim,), math.log(float(scale))),
        "shift": jnp.zeros(dim),
    }


def _mask(layer: int, dim: int) -> jax.Array:
    # Alternating halves: layer 0 keeps the first half fixed, layer 1 the second, ...
    first = jnp.arange(dim) < dim // 2
    return jnp.where(layer % 2 == 0, first, ~first).astype(jnp.result_type(float))


def forward(gen: dict[str, Any], z: Any) -> tuple[jax.Array, jax.Array]:
    """``x = G(z)`` and ``log|det J_G(z)|``, batched over leading axes of ``z`` (``(..., dim)``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> g = init_generator(jax.random.PRNGKey(0), 2, num_layers=1, scale=2.0)
        >>> x, log_det = forward(g, jnp.ones(2))
        >>> x.tolist(), round(float(log_det), 5) == round(2 * math.log(2.0), 5)
        ([2.0, 2.0], True)
    """
    x = jnp.asarray(z, jnp.result_type(float))
    dim = x.shape[-1]
    log_det = jnp.zeros(x.shape[:-1], x.dtype)
    for i, layer in enumerate(gen["couplings"]):
        m = _mask(i, dim)
        h = jnp.tanh((x * m) @ layer["W0"] + layer["b0"]) @ layer["W1"] + layer["b1"]
        s = SCALE_LIMIT * jnp.tanh(h[..., :dim]) * (1.0 - m)
        t = h[..., dim:] * (1.0 - m)
        x = x * jnp.exp(s) + t
        log_det = log_det + jnp.sum(s, axis=-1)
    x = x * jnp.exp(gen["log_scale"]) + gen["shift"]
    return x, log_det + jnp.sum(gen["log_scale"])


def generate(rng_key: Any, gen: dict[str, Any], num_samples: int) -> jax.Array:
    """``num_samples`` draws ``G(z)``, ``z ~ N(0, I)``: shape ``(num_samples, dim)``.

    Examples:
        >>> import jax
        >>> g = init_generator(jax.random.PRNGKey(0), 2)
        >>> generate(jax.random.PRNGKey(1), g, 7).shape
        (7, 2)
    """
    dim = gen["shift"].shape[-1]
    return forward(gen, jax.random.normal(rng_key, (num_samples, dim)))[0]


def entropy(rng_key: Any, gen: dict[str, Any], num_samples: int = 1024) -> jax.Array:
    """Monte Carlo estimate of ``H[p_G] = H[N(0, I)] + E_z log|det J_G(z)|`` (nats).

    Exact in expectation because ``G`` is a bijection (change of variables).

    Examples:
        >>> import jax, math
        >>> g = init_generator(jax.random.PRNGKey(0), 2, scale=math.e)
        >>> round(float(entropy(jax.random.PRNGKey(1), g)), 4) == round(1 + math.log(2 * math.pi) + 2, 4)
        True
    """
    dim = gen["shift"].shape[-1]
    z = jax.random.normal(rng_key, (num_samples, dim))
    gaussian = 0.5 * dim * (1.0 + math.log(2.0 * math.pi))
    return gaussian + jnp.mean(forward(gen, z)[1])


def latent_energy(
    energy_fn: Callable[[jax.Array], jax.Array],
    gen: dict[str, Any],
    z: Any,
    *,
    exact: bool = False,
) -> jax.Array:
    """The energy pulled back to the latent space: ``U(z) = E(G(z)) + ‖z‖²/2``.

    ``exp(-U)`` pushed through ``G`` is ``∝ p_G(x) exp(-E(x))``. ``exact=True`` gives
    ``U(z) = E(G(z)) − log|det J_G(z)|`` instead, whose push-forward is ``∝ exp(-E(x))``.
    ``energy_fn`` maps one state ``(dim,)`` to a scalar; ``z`` is ``(dim,)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> g = init_generator(jax.random.PRNGKey(0), 2, scale=2.0)
        >>> float(latent_energy(lambda x: jnp.sum(x), g, jnp.ones(2)))
        5.0
    """
    x, log_det = forward(gen, z)
    if exact:
        return energy_fn(x) - log_det
    return energy_fn(x) + 0.5 * jnp.sum(jnp.square(z))


def sample_latent(
    rng_key: Any,
    energy_fn: Callable[[jax.Array], jax.Array],
    gen: dict[str, Any],
    *,
    num_chains: int = 256,
    num_steps: int = 200,
    step_size: float = 0.01,
    exact: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """MALA in the generator's latent space on :func:`latent_energy`, then ``x = G(z)``.

    Chains start at ``z ~ N(0, I)`` (the generator's own draws), run ``num_steps`` MALA steps
    (vmapped over ``num_chains``, one ``lax.scan``) and return the final states.

    Args:
        rng_key: PRNG key.
        energy_fn: one state ``(dim,) -> E(x)`` (e.g.
            ``lambda x: em.energy(params, {"x": x})``).
        gen: generator parameters.
        num_chains: number of independent chains.
        num_steps: MALA steps per chain.
        step_size: MALA step size ``ε`` (proposal ``z - ε∇U + sqrt(2ε) ξ``).
        exact: target ``p_θ`` exactly (see :func:`latent_energy`).

    Returns:
        ``(x, acceptance_rate)``: ``x`` of shape ``(num_chains, dim)`` and the mean MALA
        acceptance rate.

    Raises:
        ValueError: a bad ``num_chains``, ``num_steps`` or ``step_size``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> g = init_generator(jax.random.PRNGKey(0), 2)
        >>> x, acc = sample_latent(jax.random.PRNGKey(1), lambda x: jnp.sum(x**2), g,
        ...                        num_chains=8, num_steps=5)
        >>> x.shape, bool(0 < acc <= 1)
        ((8, 2), True)
    """
    _check_int("num_chains", num_chains, 1)
    _check_int("num_steps", num_steps, 0)
    if not (math.isfinite(float(step_size)) and float(step_size) > 0):
        raise ValueError(f"step_size must be a finite number > 0, got {step_size!r}")
    dim = gen["shift"].shape[-1]
    target = lambda z: latent_energy(energy_fn, gen, z, exact=exact)  # noqa: E731
    kernel = mala.build_kernel()
    key_init, key_run = jax.random.split(rng_key)
    z0 = jax.random.normal(key_init, (num_chains, dim))

    def chain(key, z):
        def step(state, k):
            state, info = kernel(k, state, target, step_size)
            return state, info.acceptance_rate

        state, acc = jax.lax.scan(step, mala.init(z, target), jax.random.split(key, num_steps))
        return state.position, jnp.mean(acc) if num_steps else jnp.ones(())

    z, acc = jax.vmap(chain)(jax.random.split(key_run, num_chains), z0)
    return forward(gen, z)[0], jnp.mean(acc)


class MEGState(NamedTuple):
    """Objective state of :class:`MEG`: the generator and its optimizer.

    Attributes:
        generator: generator parameters (:func:`init_generator`).
        opt_state: the generator optimizer's state.
    """

    generator: Any
    opt_state: Any


class MEG:
    """The MEG objective for :func:`ebm_ppl.fit` (an :class:`~ebm_ppl.objectives.ObjectiveSpec`).

    Each step the energy's loss is the contrastive surrogate

    ``mean E(x⁺) − mean E(G(z)) + gradient_penalty · mean ‖∇_x E(x⁺)‖² + energy_l2 · (…)``

    (the negatives pass through ``stop_gradient``: only the energy's parameters are fitted by
    ``fit``; Kumar et al.'s zero-centred gradient penalty on the data keeps the energy smooth),
    and, inside the same step, the generator takes ``generator_steps`` optimizer steps on
    ``mean E(G(z)) − entropy_weight · Ĥ[p_G]`` with the energy held fixed. The generator lives
    in the objective state (:class:`MEGState`): ``result.obj_state.generator`` after ``fit``.

    Args:
        dim: data dimension (the data site is one continuous ``(dim,)`` site).
        hidden: generator conditioner width (:func:`init_generator`).
        num_layers: generator coupling layers.
        scale: generator's initial elementwise scale.
        generator_optimizer: optax transformation for the generator.
        num_negatives: generator draws per step (default: the batch size).
        entropy_weight: weight of the entropy term (1 is ``KL(p_G ‖ p_θ)``).
        gradient_penalty: weight of ``‖∇_x E‖²`` on the data (``>= 0``).
        energy_l2: weight of the energy magnitude regularizer ``mean E(x⁺)² + mean E(x⁻)²``
            (Du & Mordatch 2019; ``>= 0``), which keeps the energy's offset from drifting.
        generator_steps: generator updates per energy update (each on fresh ``z``).
        init_generator_params: start from these generator parameters instead of a fresh one.

    Raises:
        ValueError: bad sizes or weights; at ``build``, a model whose data site is not one
            continuous ``(dim,)`` site.

    Examples:
        >>> import jax, ebm_ppl as ebm
        >>> from ebm_ppl.models.neural import mlp_energy
        >>> em = ebm.EnergyModel(mlp_energy, 2, (16,))
        >>> objective = MEG(2, hidden=8).build(em, data_sites=("x",), batch_size=64)
        >>> state = objective.init(jax.random.PRNGKey(0), em.init_params(jax.random.PRNGKey(1)), {})
        >>> sorted(state.generator)
        ['couplings', 'log_scale', 'shift']
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 64,
        num_layers: int = 4,
        scale: float = 1.0,
        generator_optimizer: Any = None,
        num_negatives: int | None = None,
        entropy_weight: float = 1.0,
        gradient_penalty: float = 0.1,
        energy_l2: float = 0.0,
        generator_steps: int = 1,
        init_generator_params: Any = None,
    ) -> None:
        self.dim = _check_int("dim", dim, 2)
        self.hidden = _check_int("hidden", hidden, 1)
        self.num_layers = _check_int("num_layers", num_layers, 1)
        self.scale = float(scale)
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        if num_negatives is not None:
            _check_int("num_negatives", num_negatives, 1)
        self.num_negatives = num_negatives
        self.generator_steps = _check_int("generator_steps", generator_steps, 1)
        for name, value in (
            ("entropy_weight", entropy_weight),
            ("gradient_penalty", gradient_penalty),
            ("energy_l2", energy_l2),
        ):
            if not (math.isfinite(float(value)) and float(value) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.entropy_weight = float(entropy_weight)
        self.gradient_penalty = float(gradient_penalty)
        self.energy_l2 = float(energy_l2)
        self.generator_optimizer = (
            optax.adam(1e-3) if generator_optimizer is None else generator_optimizer
        )
        self.init_generator_params = init_generator_params

    def build(self, model: Any, **context: Any) -> Objective:
        """The pure :class:`~ebm_ppl.objectives.Objective` for ``model`` (an ``EnergyModel``)."""
        data_sites = tuple(context.get("data_sites") or model.state_sites)
        if len(data_sites) != 1 or data_sites[0] not in model.continuous_sites:
            raise ValueError(
                f"MEG needs exactly one continuous data site, got data sites {list(data_sites)}"
            )
        site = data_sites[0]
        shape = tuple(model.sites[site].shape)
        if shape != (self.dim,):
            raise ValueError(
                f"MEG(dim={self.dim}) needs a data site of shape ({self.dim},), "
                f"site {site!r} has shape {shape}"
            )
        opt = self.generator_optimizer
        num_neg = self.num_negatives or context.get("batch_size")
        h_weight, gp, l2 = self.entropy_weight, self.gradient_penalty, self.energy_l2

        def batch_energy(params, x):
            return model.batch_energy(params, {site: x})

        def init(rng_key, params, batch):
            del params, batch
            gen = self.init_generator_params
            if gen is None:
                gen = init_generator(
                    rng_key,
                    self.dim,
                    hidden=self.hidden,
                    num_layers=self.num_layers,
                    scale=self.scale,
                )
            gen = jax.tree.map(jnp.asarray, gen)
            return MEGState(gen, opt.init(gen))

        def loss(params, obj_state, batch, rng_key):
            key_neg, key_gen = jax.random.split(rng_key)
            x_pos = jnp.asarray(batch[site])
            n = num_neg or x_pos.shape[0]
            gen = obj_state.generator
            # Negatives are samples, not functions of θ: only the energy's parameters move here.
            x_neg = jax.lax.stop_gradient(generate(key_neg, gen, n))
            e_pos_all = batch_energy(params, x_pos)
            g_pos = jax.grad(lambda x: jnp.sum(batch_energy(params, x)))(x_pos)
            e_neg_all = batch_energy(params, x_neg)
            e_pos, e_neg = jnp.mean(e_pos_all), jnp.mean(e_neg_all)
            penalty = jnp.mean(jnp.sum(jnp.square(g_pos), axis=-1))
            squares = jnp.mean(jnp.square(e_pos_all)) + jnp.mean(jnp.square(e_neg_all))
            value = e_pos - e_neg + gp * penalty + l2 * squares

            # The generator's step sees the energy as fixed: stop_gradient keeps its update out
            # of the energy's gradient.
            frozen = jax.lax.stop_gradient(params)

            def gen_loss(g, key):
                z = jax.random.normal(key, (n, self.dim))
                x, log_det = forward(g, z)
                e = jnp.mean(batch_energy(frozen, x))
                return e - h_weight * jnp.mean(log_det), e

            def gen_step(carry, key):
                g, opt_state = carry
                (g_loss, e_gen), grads = jax.value_and_grad(gen_loss, has_aux=True)(g, key)
                updates, opt_state = opt.update(grads, opt_state, g)
                return (optax.apply_updates(g, updates), opt_state), (g_loss, e_gen)

            keys = jax.random.split(key_gen, self.generator_steps)
            (new_gen, opt_state), (g_losses, e_gens) = jax.lax.scan(
                gen_step, (gen, obj_state.opt_state), keys
            )
            g_loss, e_gen = g_losses[-1], e_gens[-1]
            gaussian = 0.5 * self.dim * (1.0 + math.log(2.0 * math.pi))
            metrics = {
                "pos_energy": e_pos,
                "neg_energy": e_neg,
                "gradient_penalty": penalty,
                "generator_energy": e_gen,
                # L_G + H[N(0, I)] = E[E(G(z))] − Ĥ[p_G] = KL(p_G ‖ p_θ) − log Z_θ
                "generator_loss": g_loss - h_weight * gaussian,
            }
            return value, (MEGState(new_gen, opt_state), metrics)

        return Objective(init, loss)
