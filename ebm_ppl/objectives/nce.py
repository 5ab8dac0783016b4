"""Noise-contrastive estimation (NCE) and flow contrastive estimation (FCE).

NCE (Gutmann & Hyvärinen 2010) learns an unnormalized model by logistic regression of data
against samples of a known noise density ``q``: the classifier's logit is
``l(x) = −E(x) − log Z − log ν − log q(x)``, with ``ν`` noise samples per data point and a free
``log Z``. At the optimum ``exp(−E − log Z)`` is the data density, so the learned ``log Z`` is
the model's log partition function. FCE (Gao et al. 2020) makes the noise a normalizing flow
trained adversarially on the same classification value, so the task stays hard.

``log Z`` (and the flow) are not model parameters: they live in ``obj_state``, so
``FitResult.params`` stays substitutable into the model. ``log Z`` is updated inside ``loss``
by a damped Newton step on the same loss (one scalar: exact curvature, no learning rate to tune);
it is reported in ``metrics["log_z"]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.linalg import solve_triangular
from numpyro.distributions import constraints

from ebm_ppl.energy.view import StateView
from ebm_ppl.kernels import _random
from ebm_ppl.objectives.base import Objective

__all__ = ["FCE", "FCEState", "FlowContrastiveEstimation", "NCE", "NCEState"]


class NCEState(NamedTuple):
    """State of :class:`NCE`.

    Attributes:
        log_z: the learned log partition function, a scalar.
        noise: the fitted noise's parameters (``(mean (d,), cholesky (d, d))`` for
            ``noise="gaussian"``, ``()`` for a given distribution).

    Examples:
        >>> float(NCEState(jnp.zeros(()), ()).log_z)
        0.0
    """

    log_z: jax.Array
    noise: Any


class FCEState(NamedTuple):
    """State of :class:`FlowContrastiveEstimation`.

    Attributes:
        log_z: the learned log partition function.
        shift, scale: the standardization of the flow's space (data mean and standard
            deviation for the default flow; ``0`` and ``1`` for a given flow).
        flow_params: the flow's trainable arrays (an Equinox pytree).
        flow_opt_state: the flow optimizer's state.

    Examples:
        >>> FCEState._fields
        ('log_z', 'shift', 'scale', 'flow_params', 'flow_opt_state')
    """

    log_z: jax.Array
    shift: jax.Array
    scale: jax.Array
    flow_params: Any
    flow_opt_state: Any


def _check_ratio(noise_ratio: Any) -> int:
    if isinstance(noise_ratio, bool) or not isinstance(noise_ratio, int) or noise_ratio < 1:
        raise ValueError(f"noise_ratio must be an integer >= 1, got {noise_ratio!r}")
    return noise_ratio


def _check_rate(log_z_rate: Any) -> float:
    rate = float(log_z_rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"log_z_rate must be in [0, 1], got {log_z_rate!r}")
    return rate


def _data_matrix(view: StateView, data: Any) -> jax.Array:
    if isinstance(data, Mapping):
        return view.split(data)[0]
    x = jnp.asarray(data)
    if len(view.names) == 1:
        return view.split({view.names[0]: x})[0]
    raise TypeError("data must be a dict site -> array for a model with several state sites")


def _moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = jnp.mean(x, axis=0)
    cov = jnp.cov(x, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1])
    return mean, cov


def _nce_value(lx: jax.Array, ly: jax.Array, nu: int) -> jax.Array:
    # −[E_data log σ(l) + ν E_noise log σ(−l)], with log σ evaluated stably.
    return -jnp.mean(jax.nn.log_sigmoid(lx)) - nu * jnp.mean(jax.nn.log_sigmoid(-ly))


def _newton_log_z(log_z, lx, ly, nu, rate):
    """One damped Newton step on the NCE loss in ``log Z`` (the logits fall by 1 per unit)."""
    sx, sy = jax.nn.sigmoid(lx), jax.nn.sigmoid(ly)
    grad = jnp.mean(1.0 - sx) - nu * jnp.mean(sy)
    curv = jnp.mean(sx * (1.0 - sx)) + nu * jnp.mean(sy * (1.0 - sy))
    # The curvature vanishes when the classes separate; cap the step so one batch cannot fling
    # log Z away.
    step = jnp.clip(grad / (curv + 1e-6), -1.0, 1.0)
    return jax.lax.stop_gradient(log_z - rate * step)


def _metrics(lx, ly, e_x, e_y, log_z):
    accuracy = 0.5 * (jnp.mean(lx > 0) + jnp.mean(ly < 0))
    return {
        "log_z": log_z,
        "accuracy": accuracy,
        "energy_data": jnp.mean(e_x),
        "energy_noise": jnp.mean(e_y),
    }


def _init_log_z(efn, x_noise, logq_noise):
    # Importance estimate of log Z with the noise as proposal: a good start for the Newton steps.
    e = efn(x_noise)
    lw = -e - logq_noise
    lw = jnp.where(jnp.isfinite(lw), lw, -jnp.inf)
    est = jax.nn.logsumexp(lw) - jnp.log(lw.shape[0])
    return jnp.where(jnp.isfinite(est), est, 0.0)


class NCE:
    """Noise-contrastive estimation with a learnable ``log Z``.

    Args:
        noise: a NumPyro distribution over the state (``batch_shape == ()``, ``event_shape``
            equal to the state site's shape, or ``(d,)`` for the raveled state of several
            sites), or ``"gaussian"``: a multivariate normal fitted to the data's mean and
            (biased) covariance, the latter multiplied by ``noise_scale**2``.
        noise_ratio: noise samples per data point (``ν >= 1``).
        noise_scale: widening of the fitted Gaussian (``> 0``).
        log_z_rate: damping of the Newton step on ``log Z`` per loss call (``0`` freezes it at
            its initial importance-sampling estimate).
        num_init_samples: noise samples for that initial estimate.

    ``build(model, data=None)``: with ``data`` (the training set, a dict site -> array) the
    Gaussian noise is fitted to all of it; otherwise to the batch passed to ``init``.

    Raises:
        ValueError: for ``noise_ratio < 1``, ``noise_scale <= 0``, an unknown noise name, or (at
            ``build``) a noise whose event shape differs from the state's.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(()))
        ...     ebm.energy("E", 0.5 * x**2)
        >>> obj = NCE("gaussian").build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jax.random.normal(jax.random.PRNGKey(0), (256,))}
        >>> state = obj.init(jax.random.PRNGKey(1), {}, batch)
        >>> loss, (state, metrics) = obj.loss({}, state, batch, jax.random.PRNGKey(2))
        >>> abs(float(metrics["log_z"]) - 0.5 * math.log(2 * math.pi)) < 0.2
        True

    References:
        Gutmann & Hyvärinen, "Noise-contrastive estimation: a new estimation principle for
        unnormalized statistical models", AISTATS 2010.
    """

    def __init__(
        self,
        noise: Any = "gaussian",
        noise_ratio: int = 1,
        *,
        noise_scale: float = 1.0,
        log_z_rate: float = 0.5,
        num_init_samples: int = 4096,
    ):
        if isinstance(noise, str):
            if noise != "gaussian":
                raise ValueError(
                    f"noise must be 'gaussian' or a NumPyro distribution, got {noise!r}"
                )
        elif not (hasattr(noise, "sample") and hasattr(noise, "log_prob")):
            raise TypeError(
                f"noise must be 'gaussian' or a NumPyro distribution, got {type(noise).__name__}"
            )
        if not float(noise_scale) > 0:
            raise ValueError(f"noise_scale must be > 0, got {noise_scale!r}")
        self.noise = noise
        self.noise_ratio = _check_ratio(noise_ratio)
        self.noise_scale = float(noise_scale)
        self.log_z_rate = _check_rate(log_z_rate)
        self.num_init_samples = _check_ratio(num_init_samples)

    def build(self, model: Any, *, data: Any = None, **context: Any) -> Objective:
        """Build the pure ``Objective``; ``data`` (optional) fits the Gaussian noise to all data."""
        del context
        gaussian = isinstance(self.noise, str)
        view = StateView(model, who="NCE", continuous_only=gaussian)
        d, nu, rate = view.dim, self.noise_ratio, self.log_z_rate
        num_init, scale = self.num_init_samples, self.noise_scale
        if gaussian:
            for name in view.names:
                support = view.model.sites[name].support
                while isinstance(support, constraints.independent):
                    support = support.base_constraint
                if support is not constraints.real:
                    raise ValueError(
                        f"noise='gaussian' needs real-valued state sites; site {name!r} has "
                        f"support {support}: pass a noise distribution on that support"
                    )
            moments = None if data is None else _moments(_data_matrix(view, data))

            def sample_noise(noise_state, key, n):
                mean, chol = noise_state
                z = _random.normal(key, (n, d))
                return mean + z @ chol.T

            def log_q(noise_state, x):
                mean, chol = noise_state
                z = solve_triangular(chol, (x - mean).T, lower=True).T
                log_det = jnp.sum(jnp.log(jnp.diag(chol)))
                return -0.5 * jnp.sum(z**2, axis=-1) - log_det - 0.5 * d * math.log(2 * math.pi)

        else:
            dist = self.noise
            event = tuple(dist.event_shape)
            site_shapes = [tuple(view.model.sites[n].shape) for n in view.names]
            allowed = {(d,)} | ({site_shapes[0]} if len(site_shapes) == 1 else set())
            if tuple(dist.batch_shape) != () or event not in allowed:
                raise ValueError(
                    f"noise must have batch_shape () and event_shape equal to the state "
                    f"{site_shapes[0] if len(site_shapes) == 1 else (d,)}, got batch_shape "
                    f"{tuple(dist.batch_shape)} and event_shape {event}"
                )
            moments = None

            def sample_noise(noise_state, key, n):
                return jnp.reshape(dist.sample(key, (n,)), (n, d)).astype(jnp.result_type(float))

            def log_q(noise_state, x):
                return dist.log_prob(jnp.reshape(x, (x.shape[0], *event)))

        def fit_noise(x):
            if not gaussian:
                return ()
            mean, cov = moments if moments is not None else _moments(x)
            chol = jnp.linalg.cholesky(cov + 1e-6 * jnp.trace(cov) / d * jnp.eye(d))
            return mean, scale * chol

        def init(rng_key, params, batch):
            x, rest = view.split(batch)
            if rest:
                raise ValueError(
                    f"NCE draws noise for the state only; batch has extra site(s) {sorted(rest)} "
                    "(conditional EBMs are not supported by NCE)"
                )
            noise_state = fit_noise(x)
            # compiled once: eager dispatch of thousands of energy evaluations is slow
            log_z = jax.jit(
                lambda p, ns, k: _init_log_z(
                    lambda v: view.batch_energy_fn(p)(v, {}),
                    sample_noise(ns, k, num_init),
                    log_q(ns, sample_noise(ns, k, num_init)),
                )
            )(params, noise_state, _random.as_key(rng_key))
            return NCEState(jax.lax.stop_gradient(log_z), noise_state)

        def loss(params, obj_state, batch, rng_key):
            x, _ = view.split(batch)
            noise_state = obj_state.noise
            y = sample_noise(noise_state, rng_key, nu * x.shape[0])
            efn = view.batch_energy_fn(params)
            e_x, e_y = efn(x, {}), efn(y, {})
            log_z = obj_state.log_z
            offset = log_z + math.log(nu)
            lx = -e_x - offset - log_q(noise_state, x)
            ly = -e_y - offset - log_q(noise_state, y)
            value = _nce_value(lx, ly, nu)
            new_log_z = _newton_log_z(log_z, lx, ly, nu, rate)
            return value, (NCEState(new_log_z, noise_state), _metrics(lx, ly, e_x, e_y, log_z))

        return Objective(init, loss)


def _default_flow(key: jax.Array, dim: int) -> Any:
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow, masked_autoregressive_flow

    base = Normal(jnp.zeros(dim))
    transformer = RationalQuadraticSpline(knots=8, interval=4.0)
    if dim == 1:
        return masked_autoregressive_flow(
            key, base_dist=base, transformer=transformer, flow_layers=2
        )
    return coupling_flow(key, base_dist=base, transformer=transformer, flow_layers=4, nn_width=64)


def _partition_flow(flow: Any) -> tuple[Any, Any]:
    import equinox as eqx
    import paramax

    return eqx.partition(
        flow, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )


class FlowContrastiveEstimation:
    """Flow contrastive estimation (Gao et al. 2020): NCE against an adversarially trained flow.

    The noise is a normalizing flow ``q_α`` (flowjax). Each ``loss`` call evaluates the NCE
    loss of the energy against reparameterized flow samples (differentiated in the model's
    ``params`` by the caller), and updates the flow inside ``obj_state``: one step of
    ``flow_optimizer`` *ascending* the same NCE loss (the flow makes classification hard),
    plus ``mle_weight`` times the flow's negative log-likelihood of the data, which keeps the
    flow near the data early on. ``log Z`` gets the damped Newton step of :class:`NCE`.

    Args:
        flow: a flowjax distribution of shape ``(d,)`` over the raveled state, used as is in
            data space; ``None`` builds a rational-quadratic-spline coupling flow (a masked
            autoregressive one for ``d = 1``) on the data standardized by its batch moments.
        noise_ratio: flow samples per data point.
        flow_optimizer: an Optax transformation for the flow (default ``adam(1e-3)``).
        mle_weight: weight of the flow's data negative log-likelihood in its loss (``>= 0``).
        log_z_rate: damping of the Newton step on ``log Z``.

    Raises:
        ValueError: for ``noise_ratio < 1``, ``mle_weight < 0``, a flow of the wrong shape, or
            (at ``build``) a discrete state site.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def gauss():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     ebm.energy("E", 0.5 * jnp.sum(x**2))
        >>> from flowjax.distributions import Normal
        >>> from flowjax.flows import masked_autoregressive_flow
        >>> flow = masked_autoregressive_flow(jax.random.key(0), base_dist=Normal(jnp.zeros(2)),
        ...                                   flow_layers=1, nn_width=8)
        >>> obj = FlowContrastiveEstimation(flow).build(ebm.EnergyModel(gauss))
        >>> batch = {"x": jax.random.normal(jax.random.PRNGKey(0), (64, 2))}
        >>> state = obj.init(jax.random.PRNGKey(1), {}, batch)
        >>> bool(jnp.isfinite(state.log_z)), state.shift.shape  # a given flow is used unscaled
        (True, (2,))

    References:
        Gao, Nijkamp, Kingma, Xu, Dai, Wu, "Flow contrastive estimation of energy-based models",
        CVPR 2020.
    """

    def __init__(
        self,
        flow: Any = None,
        noise_ratio: int = 1,
        *,
        flow_optimizer: optax.GradientTransformation | None = None,
        mle_weight: float = 0.0,
        log_z_rate: float = 0.5,
    ):
        if not float(mle_weight) >= 0:
            raise ValueError(f"mle_weight must be >= 0, got {mle_weight!r}")
        if flow is not None and not hasattr(flow, "sample_and_log_prob"):
            raise TypeError(f"flow must be a flowjax distribution, got {type(flow).__name__}")
        self.flow = flow
        self.noise_ratio = _check_ratio(noise_ratio)
        self.flow_optimizer = flow_optimizer if flow_optimizer is not None else optax.adam(1e-3)
        self.mle_weight = float(mle_weight)
        self.log_z_rate = _check_rate(log_z_rate)

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the pure ``Objective`` for ``model`` (continuous state sites only)."""
        del context
        import paramax

        view = StateView(model, who="FlowContrastiveEstimation", continuous_only=True)
        d, nu, rate, mle = view.dim, self.noise_ratio, self.log_z_rate, self.mle_weight
        opt = self.flow_optimizer
        if self.flow is not None:
            if tuple(self.flow.shape) != (d,):
                raise ValueError(
                    f"flow must have shape ({d},) (the raveled state), got {self.flow.shape}"
                )
            template = self.flow
            make_flow: Callable[[jax.Array], Any] = lambda key: template
            standardize = False
        else:
            template = _default_flow(jax.random.PRNGKey(0), d)
            make_flow = lambda key: _default_flow(key, d)
            standardize = True
        _, static = _partition_flow(template)

        def flow_of(flow_params):
            import equinox as eqx

            return paramax.unwrap(eqx.combine(flow_params, static))

        def sample_and_log_q(state_parts, key, n):
            shift, scale, flow_params = state_parts
            if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
                key = jax.random.wrap_key_data(key)  # flowjax takes typed keys only
            z, log_qz = flow_of(flow_params).sample_and_log_prob(key, (n,))
            return shift + scale * z, log_qz - jnp.sum(jnp.log(scale))

        def log_q(state_parts, x):
            shift, scale, flow_params = state_parts
            return flow_of(flow_params).log_prob((x - shift) / scale) - jnp.sum(jnp.log(scale))

        def init(rng_key, params, batch):
            x, rest = view.split(batch)
            if rest:
                raise ValueError(
                    f"FlowContrastiveEstimation draws noise for the state only; batch has extra "
                    f"site(s) {sorted(rest)}"
                )
            k_flow, k_noise = _random.split(_random.as_key(rng_key))
            flow_params, _ = _partition_flow(make_flow(k_flow))
            if standardize:
                shift, scale = jnp.mean(x, axis=0), jnp.std(x, axis=0) + 1e-6
            else:
                shift, scale = jnp.zeros(d), jnp.ones(d)
            parts = (shift, scale, flow_params)
            log_z = jax.jit(
                lambda p, pp, k: _init_log_z(
                    lambda v: view.batch_energy_fn(p)(v, {}), *sample_and_log_q(pp, k, 4096)
                )
            )(params, parts, k_noise)
            return FCEState(
                jax.lax.stop_gradient(log_z), shift, scale, flow_params, opt.init(flow_params)
            )

        def loss(params, obj_state, batch, rng_key):
            x, _ = view.split(batch)
            n = nu * x.shape[0]
            log_z = obj_state.log_z
            offset = log_z + math.log(nu)
            parts = (obj_state.shift, obj_state.scale, obj_state.flow_params)

            # The energy's loss: flow samples and densities are constants here.
            y, lq_y = jax.lax.stop_gradient(sample_and_log_q(parts, rng_key, n))
            lq_x = jax.lax.stop_gradient(log_q(parts, x))
            efn = view.batch_energy_fn(params)
            e_x, e_y = efn(x, {}), efn(y, {})
            lx, ly = -e_x - offset - lq_x, -e_y - offset - lq_y
            value = _nce_value(lx, ly, nu)

            # The flow's loss: it ascends the classification loss (energy held fixed),
            # reparameterized through its samples.
            frozen = jax.lax.stop_gradient(params)
            efn_frozen = view.batch_energy_fn(frozen)

            def flow_loss(flow_params):
                p = (obj_state.shift, obj_state.scale, flow_params)
                yy, lqy = sample_and_log_q(p, rng_key, n)
                lqx = log_q(p, x)
                lxx = -jax.lax.stop_gradient(e_x) - offset - lqx
                lyy = -efn_frozen(yy, {}) - offset - lqy
                return -_nce_value(lxx, lyy, nu) - mle * jnp.mean(lqx)

            grads = jax.grad(flow_loss)(jax.lax.stop_gradient(obj_state.flow_params))
            updates, flow_opt_state = opt.update(
                grads, obj_state.flow_opt_state, obj_state.flow_params
            )
            flow_params = optax.apply_updates(obj_state.flow_params, updates)
            new_log_z = _newton_log_z(log_z, lx, ly, nu, rate)
            new_state = FCEState(
                new_log_z,
                obj_state.shift,
                obj_state.scale,
                jax.lax.stop_gradient(flow_params),
                jax.lax.stop_gradient(flow_opt_state),
            )
            metrics = _metrics(lx, ly, e_x, e_y, log_z)
            metrics["flow_nll"] = -jnp.mean(lq_x)
            return value, (new_state, metrics)

        return Objective(init, loss)


FCE = FlowContrastiveEstimation
