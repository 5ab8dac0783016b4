"""Joint energy models (JEM): any classifier is an energy-based model of its inputs.

A classifier's logits ``f(x) ∈ R^K`` define the joint and the marginal energies

.. math::

    E(x, y) = -f(x)[y], \\qquad E(x) = -\\log \\sum_y e^{f(x)[y]},

so that ``p(y | x) = softmax(f(x))[y]`` is the classifier unchanged and ``p(x) ∝ exp(-E(x))``
is what softmax discards (Grathwohl et al. 2020). :func:`model` declares ``E(x)`` with
:func:`ebm_ppl.energy` over a flat ``x``; with ``joint=True`` (or an observed ``y``) it adds the
label site ``y ~ Categorical(logits=f(x))``, whose density ``softmax(f(x))[y]`` turns the total
energy into ``E(x, y)``.

Training maximizes ``log p(y | x) + log p(x)`` (:class:`JEMObjective`, :func:`train`): the
cross-entropy of the labelled examples, exact, plus the contrastive-divergence surrogate of
``-log p(x)`` on all examples, with Langevin negatives restarted from a replay buffer (reset to
uniform noise on ``[-1, 1]`` with probability 5%) and the L2 energy regularizer
``α (E(x⁺)² + E(x⁻)²)`` (Du & Mordatch 2019; :class:`ebm_ppl.objectives.ReplayBuffer`).
Giving labels for a fraction of the examples only is the semi-supervised variant: the
generative term still sees every input.

Examples:
    >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
    >>> em = ebm.EnergyModel(model, 4, 3, (8,))
    >>> em.state_sites, sorted(em.param_sites)
    (('x',), ['W0', 'W1', 'b0', 'b1'])
    >>> ebm.EnergyModel(model, 4, 3, (8,), joint=True).state_sites
    ('x', 'y')

References:
    Grathwohl, Wang, Jacobsen, Duvenaud, Norouzi & Swersky, "Your classifier is secretly an
    energy based model and you should treat it like one", ICLR 2020.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro import handlers

from ebm_ppl.data import DIGITS_NUM_TRAIN
from ebm_ppl.energy import EnergyModel, Flat
from ebm_ppl.energy import energy as declare_energy
from ebm_ppl.kernels import ula
from ebm_ppl.objectives import Objective, ReplayBuffer
from ebm_ppl.train import FitResult
from ebm_ppl.train import fit as _fit

__all__ = [
    "JEMObjective",
    "digits",
    "eqx_classifier",
    "logits",
    "model",
    "ood_scores",
    "predict",
    "sample_conditional",
    "train",
    "uniform_noise",
]

_ACTIVATIONS = {
    "swish": jax.nn.swish,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
}


def _int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _glorot(shape: tuple[int, int]) -> Callable[[jax.Array], jax.Array]:
    def init(rng_key):
        limit = jnp.sqrt(6.0 / (shape[0] + shape[1]))
        return jax.random.uniform(rng_key, shape, minval=-limit, maxval=limit)

    return init


def _mlp(x: jax.Array, widths: tuple[int, ...], activation: str) -> jax.Array:
    act = _ACTIVATIONS[activation]
    h = x
    for i in range(len(widths) - 1):
        w = numpyro.param(f"W{i}", _glorot((widths[i], widths[i + 1])))
        b = numpyro.param(f"b{i}", jnp.zeros(widths[i + 1]))
        h = h @ w + b
        if i < len(widths) - 2:
            h = act(h)
    return h


def eqx_classifier(
    num_features: int, num_classes: int, width: int = 64, depth: int = 1, *, seed: int = 0
) -> Callable[[jax.Array], jax.Array]:
    """An Equinox MLP classifier for :func:`model` (``classifier=``), registered by
    ``numpyro.contrib.module.eqx_module`` as the parameter site ``"net$params"``.

    Needs the ``[nn]`` extra (equinox). ``seed`` draws the initial weights.

    Returns:
        ``x (num_features,) -> logits (num_classes,)``, to be called inside the program.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(model, 4, 3, classifier=eqx_classifier(4, 3, 8))
        >>> p = em.init_params(jax.random.PRNGKey(0))
        >>> list(p), logits(p, jnp.zeros((2, 4)), model_args=(4, 3),
        ...                 model_kwargs={"classifier": eqx_classifier(4, 3, 8)}).shape
        (['net$params'], (2, 3))
    """
    import equinox as eqx
    from numpyro.contrib.module import eqx_module

    num_features = _int(num_features, "num_features", 1)
    num_classes = _int(num_classes, "num_classes", 2)
    width = _int(width, "width", 1)
    depth = _int(depth, "depth", 0)
    net = eqx.nn.MLP(
        num_features,
        num_classes,
        width,
        depth,
        activation=jax.nn.swish,
        key=jax.random.PRNGKey(seed),
    )

    def classifier(x):
        return eqx_module("net", net)(x)

    return classifier


def model(
    num_features: int = 64,
    num_classes: int = 10,
    hidden: Sequence[int] = (128,),
    *,
    classifier: Callable[[jax.Array], jax.Array] | None = None,
    activation: str = "swish",
    joint: bool = False,
    y: Any = None,
) -> None:
    """JEM program: ``E(x) = -logsumexp_y f(x)[y]`` over ``x ∈ R^num_features`` (flat base).

    The logits ``f(x)`` are recorded as the deterministic site ``"logits"``.

    Args:
        num_features: input dimension.
        num_classes: ``K``, the number of classes.
        hidden: hidden widths of the default MLP classifier (parameters ``W0, b0, W1, b1, ...``
            as ``numpyro.param`` sites, Glorot-uniform weights).
        classifier: any ``x (num_features,) -> logits (num_classes,)`` called inside the
            program (its parameters from ``numpyro.param`` or ``numpyro.contrib.module``), in
            place of the default MLP; e.g. :func:`eqx_classifier`.
        activation: of the default MLP: ``"swish"``, ``"relu"``, ``"tanh"``, ``"elu"``, ``"gelu"``.
        joint: add the label site ``y ~ Categorical(logits=f(x))``, a state site: the program
            is then the joint ``p(x, y) ∝ exp(f(x)[y])``.
        y: an observed label (the site ``y`` conditioned on it): ``p(x | y) ∝ exp(f(x)[y])``.

    Raises:
        ValueError: a bad size, ``hidden`` or ``activation``, or a ``classifier`` whose logits
            are not of shape ``(num_classes,)``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(model, 2, 3, (4,), joint=True)
        >>> p = em.init_params(jax.random.PRNGKey(0))
        >>> x = jnp.ones(2)
        >>> f = logits(p, x[None], model_args=(2, 3, (4,)))[0]
        >>> bool(jnp.allclose(em.energy(p, {"x": x, "y": 1}), -f[1]))
        True
    """
    num_features = _int(num_features, "num_features", 1)
    num_classes = _int(num_classes, "num_classes", 2)
    x = numpyro.sample("x", Flat((num_features,)))
    if classifier is None:
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        for h in hidden:
            _int(h, "hidden", 1)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        f = _mlp(x, (num_features, *hidden, num_classes), activation)
    else:
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {type(classifier).__name__}")
        f = jnp.asarray(classifier(x))
        if f.shape != (num_classes,):
            raise ValueError(
                f"classifier must return logits of shape (num_classes,) = ({num_classes},) for "
                f"one input of shape ({num_features},), got {f.shape}"
            )
    f = numpyro.deterministic("logits", f)
    declare_energy("E", -jax.nn.logsumexp(f))
    if joint or y is not None:
        # log softmax(f)[y] added to -E(x) gives f(x)[y]: the total energy is E(x, y)
        numpyro.sample("y", dist.Categorical(logits=f), obs=y)


# ------------------------------------------------------------------------------- evaluation
def _logits_fn(program: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any]):
    """``(params, x) -> (K,)`` logits of one input, read from the ``"logits"`` site."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("joint", "y")}

    def one(params, x):
        traced = handlers.trace(handlers.substitute(program, data={**params, "x": x}))
        tr = traced.get_trace(*args, **kwargs)
        if "logits" not in tr:
            raise ValueError("model must record the classifier's logits as the site 'logits'")
        return tr["logits"]["value"]

    return one


def _inputs(x: Any, num_features: int | None = None) -> jax.Array:
    x = jnp.asarray(x, jnp.result_type(float))
    if x.ndim != 2 or (num_features is not None and x.shape[1] != num_features):
        want = "num_features" if num_features is None else str(num_features)
        raise ValueError(f"x must have shape (num_examples, {want}), got {x.shape}")
    return x


def logits(
    params: Mapping[str, Any],
    x: Any,
    *,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    program: Callable[..., Any] | None = None,
) -> jax.Array:
    """Classifier logits ``f(x)`` of a batch: ``(n, num_features) -> (n, num_classes)``.

    Args:
        params: the program's parameters.
        x: inputs ``(n, num_features)``.
        model_args, model_kwargs: the arguments of :func:`model` (or of ``program``).
        program: a JEM program other than :func:`model` that records ``"logits"``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> p = ebm.EnergyModel(model, 3, 2, (4,)).init_params(jax.random.PRNGKey(0))
        >>> logits(p, jnp.zeros((5, 3)), model_args=(3, 2, (4,))).shape
        (5, 2)
    """
    fn = _logits_fn(program or model, tuple(model_args), dict(model_kwargs or {}))
    return jax.vmap(fn, in_axes=(None, 0))(dict(params), _inputs(x))


def predict(params: Mapping[str, Any], x: Any, **options: Any) -> jax.Array:
    """Class probabilities ``p(y | x) = softmax(f(x))``, ``(n, num_classes)``.

    ``options`` as in :func:`logits`.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> p = ebm.EnergyModel(model, 3, 2, (4,)).init_params(jax.random.PRNGKey(0))
        >>> predict(p, jnp.zeros((5, 3)), model_args=(3, 2, (4,))).sum(-1).round(5).tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    return jax.nn.softmax(logits(params, x, **options), axis=-1)


def ood_scores(
    params: Mapping[str, Any],
    x: Any,
    *,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Out-of-distribution scores ``E(x) = -logsumexp_y f(x)[y]`` (larger: more anomalous).

    The energy of the marginal program (``EnergyModel.batch_energy``), the same number as
    :func:`ebm_ppl.apps.classifier_energy` of :func:`logits`.

    Args:
        params: the program's parameters.
        x: inputs ``(n, num_features)``.
        model_args, model_kwargs: the arguments of :func:`model`.

    Returns:
        ``(n,)``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> p = ebm.EnergyModel(model, 3, 2, (4,)).init_params(jax.random.PRNGKey(0))
        >>> ood_scores(p, jnp.zeros((5, 3)), model_args=(3, 2, (4,))).shape
        (5,)
    """
    kwargs = {**dict(model_kwargs or {}), "joint": False, "y": None}
    em = EnergyModel(model, *model_args, **kwargs)
    x = _inputs(x, em.plan["x"].shape[0])
    return em.batch_energy(dict(params), {"x": x})


def sample_conditional(
    rng_key: Any,
    params: Mapping[str, Any],
    labels: Any,
    *,
    num_steps: int = 200,
    step_size: float = 0.01,
    box: tuple[float, float] | None = (-1.0, 1.0),
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Draws of ``x ~ p(x | y) ∝ exp(f(x)[y])``, one per label, by Langevin (ULA) from noise.

    Each chain starts uniform on ``box`` (the data range) and runs ``num_steps`` ULA steps on
    ``E(x, y) = -f(x)[y]``, clipped into ``box`` (``None``: unclipped, from ``U(-1, 1)``).

    Args:
        rng_key: PRNG key.
        params: trained parameters.
        labels: ``(n,)`` integer classes in ``0..K-1``.
        num_steps, step_size: Langevin steps and step size.
        box: ``(low, high)`` of the inputs.
        model_args, model_kwargs: the arguments of :func:`model`.

    Returns:
        ``(n, num_features)``.

    Raises:
        ValueError: labels outside ``0..K-1`` or not 1-D integers.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> p = ebm.EnergyModel(model, 3, 2, (4,)).init_params(jax.random.PRNGKey(0))
        >>> sample_conditional(jax.random.PRNGKey(1), p, jnp.array([0, 1]), num_steps=5,
        ...                    model_args=(3, 2, (4,))).shape
        (2, 3)
    """
    kwargs = dict(model_kwargs or {})
    em = EnergyModel(model, *model_args, **{**kwargs, "joint": False, "y": None})
    num_features = em.plan["x"].shape[0]
    fn = _logits_fn(model, tuple(model_args), kwargs)
    num_classes = jax.eval_shape(fn, dict(params), jnp.zeros(num_features)).shape[0]
    labels = _labels(labels, num_classes, "labels")
    num_steps = _int(num_steps, "num_steps", 1)
    kernel = ula.build_kernel(clip_position=box)
    low, high = box if box is not None else (-1.0, 1.0)
    n = labels.shape[0]
    k_init, k_run = jax.random.split(jnp.asarray(rng_key))
    start = jax.random.uniform(k_init, (n, num_features), minval=low, maxval=high)

    def chain(key, x0, label):
        efn = lambda x: -fn(params, x)[label]
        state = ula.init(x0, efn)

        def body(state, k):
            return kernel(k, state, efn, step_size)[0], None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return state.position

    return jax.jit(jax.vmap(chain))(jax.random.split(k_run, n), start, labels)


# ------------------------------------------------------------------------------- training
def _labels(labels: Any, num_classes: int, name: str) -> jax.Array:
    arr = np.asarray(labels)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(
            f"{name} must be a 1-D array of integer classes, got {arr.dtype} {arr.shape}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} must hold classes in 0..{num_classes - 1} (num_classes = {num_classes}), "
            f"got values in {int(arr.min())}..{int(arr.max())}"
        )
    return jnp.asarray(arr, jnp.int32)


def uniform_noise(num_features: int, low: float = -1.0, high: float = 1.0):
    """``noise_fn(rng_key, n) -> {"x": U(low, high)^(n, num_features)}`` for a replay buffer.

    Examples:
        >>> import jax
        >>> uniform_noise(3)(jax.random.PRNGKey(0), 2)["x"].shape
        (2, 3)
    """

    def noise_fn(rng_key, n):
        return {"x": jax.random.uniform(rng_key, (n, num_features), minval=low, maxval=high)}

    return noise_fn


@dataclasses.dataclass(frozen=True, eq=False)
class JEMObjective:
    """``-log p(y | x) - w · log p(x)``: cross-entropy on labelled examples plus a generative term.

    The generative term is any objective spec for the marginal program (default: a
    :class:`ebm_ppl.objectives.ReplayBuffer`, contrastive divergence with Langevin negatives from
    a replay buffer) applied to the batch ``fit`` draws from the data, which may be all inputs,
    labelled or not. The cross-entropy is exact and applies to a minibatch of
    ``labelled_batch_size`` rows drawn (with replacement) from ``(labelled_x, labelled_y)`` on
    every update: a labelled set smaller than the data is the semi-supervised variant.
    ``generative=None`` trains the plain classifier.

    The labelled arrays and ``w`` are objective state, not constants of the compiled update:
    fits whose labelled arrays have the same shapes share one compiled program (and its
    persistent-cache entry), and ``num_labelled`` pads labelled sets of different sizes to one
    shape. With ``w = 0`` the generative term is skipped at run time (a conditional on the
    traced weight, its metrics 0), so the plain classifier of :func:`train` shares the JEM's
    program too.

    Args:
        labelled_x: ``(n_l, num_features)`` labelled inputs.
        labelled_y: ``(n_l,)`` their classes in ``0..K-1``.
        generative: objective spec for ``-log p(x)``, or ``None``.
        generative_weight: ``w``.
        labelled_batch_size: rows of the cross-entropy minibatch (default: ``fit``'s batch size).
        num_labelled: only the first ``num_labelled`` rows are labelled examples (default: all);
            the other rows are padding, never read.

    Metrics: ``cross_entropy``, ``train_accuracy`` (on the labelled minibatch) and the
    generative objective's own (``energy_pos``, ``energy_neg``, ...).

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(model, 2, 2, (4,))
        >>> obj = JEMObjective(jnp.zeros((3, 2)), jnp.array([0, 1, 1]), generative=None).build(em)
        >>> p = em.init_params(jax.random.PRNGKey(0))
        >>> loss, (_, m) = obj.loss(p, obj.init(None, p, {}), {}, jax.random.PRNGKey(1))
        >>> round(float(loss), 4)    # zero inputs: equal logits when the biases are zero
        0.6931
    """

    labelled_x: Any
    labelled_y: Any
    generative: Any = dataclasses.field(
        default_factory=lambda: ReplayBuffer(num_mcmc_steps=20, reinit_prob=0.05)
    )
    generative_weight: float = 1.0
    labelled_batch_size: int | None = None
    num_labelled: int | None = None

    def __post_init__(self):
        x = np.asarray(self.labelled_x)
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(
                f"labelled_x must have shape (num_labelled, num_features), got {x.shape}"
            )
        y = np.asarray(self.labelled_y)
        if y.shape != x.shape[:1]:
            raise ValueError(
                f"labelled_y must have shape ({x.shape[0]},) like labelled_x's rows, got {y.shape}"
            )
        if not (isinstance(self.generative_weight, (int, float)) and self.generative_weight >= 0):
            raise ValueError(f"generative_weight must be >= 0, got {self.generative_weight!r}")
        if self.labelled_batch_size is not None:
            _int(self.labelled_batch_size, "labelled_batch_size", 1)
        if self.num_labelled is not None and _int(self.num_labelled, "num_labelled", 1) > len(y):
            raise ValueError(
                f"num_labelled must be <= the rows of labelled_x ({len(y)}), "
                f"got {self.num_labelled}"
            )
        if self.generative is not None and not hasattr(self.generative, "build"):
            raise TypeError(
                f"generative must be an objective spec or None, got {self.generative!r}"
            )

    def build(self, model: Any, **context: Any) -> Objective:
        """The pure :class:`ebm_ppl.objectives.Objective` for the JEM program ``model``."""
        em = model if isinstance(model, EnergyModel) else EnergyModel(model)
        if em.state_sites != ("x",):
            raise ValueError(
                "JEMObjective trains the marginal program (state site 'x' only, joint=False), "
                f"got state sites {list(em.state_sites)}"
            )
        fn = _logits_fn(em.model, em.args, em.kwargs)
        num_features = em.plan["x"].shape[0]
        x_l = _inputs(self.labelled_x, num_features)
        probe = jax.eval_shape(
            lambda k: fn(em.init_params(k), jnp.zeros(num_features)), jax.random.PRNGKey(0)
        )
        num_l = len(x_l) if self.num_labelled is None else int(self.num_labelled)
        y_l = _labels(np.asarray(self.labelled_y)[:num_l], probe.shape[0], "labelled_y")
        y_l = jnp.concatenate([y_l, jnp.zeros(len(x_l) - num_l, jnp.int32)])
        gen = None if self.generative is None else self.generative.build(em, **context)
        size = self.labelled_batch_size or context.get("batch_size") or min(num_l, 64)
        weight = float(self.generative_weight)
        batch_logits = jax.vmap(fn, in_axes=(None, 0))

        def init(rng_key, params, batch):
            # Data and weight travel in the state (arguments of the compiled update), so that
            # another labelled set or weight of the same shapes reuses the compiled program.
            state = {
                "labelled_x": x_l,
                "labelled_y": y_l,
                "num_labelled": jnp.asarray(num_l, jnp.int32),
                "weight": jnp.asarray(weight, jnp.float32),
            }
            if gen is not None:
                state["generative"] = gen.init(rng_key, params, batch)
            return state

        def loss(params, obj_state, batch, rng_key):
            k_pick, k_gen = jax.random.split(rng_key)
            idx = jax.random.randint(k_pick, (size,), 0, obj_state["num_labelled"])
            lg = batch_logits(params, obj_state["labelled_x"][idx])
            labels = obj_state["labelled_y"][idx]
            # -log softmax(f)[y]: exact, so this term needs no sampling
            ce = jnp.mean(
                jax.nn.logsumexp(lg, axis=-1) - jnp.take_along_axis(lg, labels[:, None], 1)[:, 0]
            )
            acc = jnp.mean((jnp.argmax(lg, axis=-1) == labels).astype(jnp.float32))
            metrics = {"cross_entropy": ce, "train_accuracy": acc}
            if gen is None:
                return ce, (obj_state, metrics)
            w = obj_state["weight"]

            def generative_term(params, g_state):
                g, (g_state, g_metrics) = gen.loss(params, g_state, batch, k_gen)
                return w * g, g_state, g_metrics

            def skipped(params, g_state):
                _, _, shapes = jax.eval_shape(generative_term, params, g_state)
                zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
                return jnp.zeros((), ce.dtype), g_state, zeros

            g, g_state, g_metrics = jax.lax.cond(
                w > 0, generative_term, skipped, params, obj_state["generative"]
            )
            obj_state = {**obj_state, "generative": g_state}
            return ce + g, (obj_state, {**g_metrics, **metrics})

        return Objective(init, loss)


def train(
    rng_key: Any,
    x: Any,
    y: Any,
    *,
    num_classes: int,
    labelled: Any = None,
    hidden: Sequence[int] = (128,),
    generative: bool = True,
    num_steps: int = 2000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    num_mcmc_steps: int = 20,
    step_size: float = 0.01,
    buffer_size: int = 2000,
    reinit_prob: float = 0.05,
    l2_reg: float = 0.1,
    generative_weight: float = 1.0,
    optimizer: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **fit_options: Any,
) -> FitResult:
    """Train a JEM (or, with ``generative=False``, the plain classifier) by :func:`ebm_ppl.fit`.

    ``log p(y | x)`` on the labelled rows, ``log p(x)`` on every row of ``x`` by a
    :class:`ebm_ppl.objectives.ReplayBuffer` (``num_mcmc_steps`` ULA steps of ``step_size``
    clipped into ``[-1, 1]``, restarts from uniform noise on ``[-1, 1]`` with probability
    ``reinit_prob``, L2 regularizer ``l2_reg``), Adam with ``learning_rate`` decayed along a
    cosine to 5% of it by the last update (unless an ``optimizer`` is given).

    Args:
        rng_key: PRNG key (or an int seed).
        x: ``(n, num_features)`` inputs (scaled to ``[-1, 1]``).
        y: ``(n,)`` classes; only the rows where ``labelled`` is true are read.
        num_classes: ``K``.
        labelled: ``(n,)`` booleans (default: all labelled).
        hidden: hidden widths of the MLP classifier.
        generative: include the ``log p(x)`` term (``False``: its weight is 0 and the term is
            skipped at run time; the program, the replay buffer and the metrics' names are the
            JEM's, the generative metrics 0).
        optimizer: an ``optax.GradientTransformation`` in place of the default Adam.
        model_kwargs: further arguments of :func:`model` (e.g. ``classifier``).
        fit_options: passed to :func:`ebm_ppl.fit` (``log_every``, ``progress``,
            ``checkpoint_dir``, ...).

    Returns:
        :class:`ebm_ppl.train.FitResult`; the program's arguments are
        ``model_args=(num_features, num_classes, hidden)`` and ``model_kwargs``.

    Raises:
        ValueError: labels outside ``0..K-1``, shapes that do not match, no labelled row.
    """
    x = _inputs(x)
    num_classes = _int(num_classes, "num_classes", 2)
    y = np.asarray(y)
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must have shape ({x.shape[0]},) like the rows of x, got {y.shape}")
    mask = np.ones(len(y), bool) if labelled is None else np.asarray(labelled, bool)
    if mask.shape != y.shape:
        raise ValueError(f"labelled must have shape {y.shape}, got {mask.shape}")
    if not mask.any():
        raise ValueError("labelled marks no row: at least one labelled example is needed")
    y_l = _labels(y[mask], num_classes, "y")
    spec = ReplayBuffer(
        kernel="ula",
        num_mcmc_steps=num_mcmc_steps,
        step_size=step_size,
        kernel_options={"clip_position": (-1.0, 1.0)},
        buffer_size=buffer_size,
        reinit_prob=reinit_prob,
        l2_reg=l2_reg,
        noise_fn=uniform_noise(x.shape[1]),
    )
    # The labelled rows first, padded to the data's shape: a semi-supervised fit, a fit on all
    # labels and (weight 0) the plain classifier then run one compiled program.
    x_np = np.asarray(x)
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    objective = JEMObjective(
        x_np[order],
        np.concatenate([np.asarray(y_l), np.zeros(len(y) - len(y_l), np.int32)]),
        generative=spec,
        generative_weight=generative_weight if generative else 0.0,
        num_labelled=len(y_l),
    )
    fit_options.setdefault("progress", False)
    fit_options.setdefault("log_every", min(num_steps, 250))
    return _fit(
        model,
        np.asarray(x),
        objective=objective,
        optimizer=optimizer
        or optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.05)),
        num_steps=num_steps,
        batch_size=batch_size,
        rng_key=rng_key,
        model_args=(x.shape[1], num_classes, tuple(hidden)),
        model_kwargs=dict(model_kwargs or {}),
        **fit_options,
    )


# ------------------------------------------------------------------------------- data
def digits(
    seed: int = 0, *, split: str = "random", exclude: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits with labels, scaled to ``[-1, 1]`` and dequantized.

    Grey levels ``g ∈ {0..16}`` become ``2 (g + u) / 17 - 1`` with ``u ~ U(0, 1)`` (uniform noise
    of one grey level, drawn once with ``seed``). 1500 rows train, 297 test: a random split
    drawn with ``seed`` (``split="random"``), or scikit-learn's order as in
    :func:`ebm_ppl.data.digits` (``split="ordered"``: the last 297 rows are the test set, whose
    writers the training rows do not include; there an RBF support-vector machine reaches 93%
    test accuracy, against 98–99% on random splits).

    Args:
        seed: of the dequantization noise and the random split.
        split: ``"random"`` or ``"ordered"``.
        exclude: a class left out of the training rows (the test rows keep it), for
            out-of-distribution checks.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: float32 ``(n_train, 64)``, int32 ``(n_train,)``,
        float32 ``(297, 64)``, int32 ``(297,)``.

    Raises:
        ValueError: an unknown ``split`` or an ``exclude`` outside ``0..9``.

    Examples:
        >>> xtr, ytr, xte, yte = digits()
        >>> xtr.shape, yte.shape, bool(xtr.min() >= -1 and xtr.max() < 1)
        ((1500, 64), (297,), True)
    """
    if split not in ("random", "ordered"):
        raise ValueError(f"split must be 'random' or 'ordered', got {split!r}")
    if exclude is not None and not (isinstance(exclude, (int, np.integer)) and 0 <= exclude <= 9):
        raise ValueError(f"exclude must be a class in 0..9 or None, got {exclude!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("digits() needs scikit-learn: pip install 'ebm_ppl[data]'") from err

    raw = load_digits()
    grey = np.asarray(raw.data, np.float64)
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=grey.shape)
    x = (2.0 * (grey + u) / 17.0 - 1.0).astype(np.float32)
    y = np.asarray(raw.target, np.int32)
    order = rng.permutation(len(y)) if split == "random" else np.arange(len(y))
    train, test = order[:DIGITS_NUM_TRAIN], order[DIGITS_NUM_TRAIN:]
    if exclude is not None:
        train = train[y[train] != exclude]
    return x[train], y[train], x[test], y[test]
