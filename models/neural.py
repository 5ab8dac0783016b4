"""Neural energies: a multilayer perceptron ``E_θ(x)`` over a flat continuous state, and a small
convolutional energy over images; spectral normalization of the weights is optional."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro

from ebm_ppl.energy import EnergyModel, Flat
from ebm_ppl.energy import energy as _energy

__all__ = ["conv_energy", "eqx_mlp_energy", "init_params", "mlp_energy", "spectral_normalize"]

_ACTIVATIONS = {
    "swish": jax.nn.swish,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
}


def _check(dim: Any, hidden: Any, activation: str, quadratic: Any) -> tuple[int, tuple[int, ...]]:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty tuple of integers >= 1, got {hidden!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if not float(quadratic) >= 0:
        raise ValueError(f"quadratic must be >= 0, got {quadratic!r}")
    return dim, hidden


def _glorot(shape: tuple[int, int]):
    fan_in, fan_out = shape

    def init(rng_key):
        limit = jnp.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(rng_key, shape, minval=-limit, maxval=limit)

    return init


def mlp_energy(
    dim: int = 2,
    hidden: Sequence[int] = (128, 128),
    *,
    activation: str = "swish",
    quadratic: float = 0.0,
    site: str = "x",
    spectral_norm: bool = False,
) -> None:
    """NumPyro EBM: ``E(x) = MLP_θ(x) + quadratic·‖x‖²`` over ``x ∈ R^dim`` (flat base measure).

    Weights are ``numpyro.param`` sites ``W0, b0, W1, b1, ...`` (Glorot-uniform weights, zero
    biases, drawn from the key given to ``EnergyModel.init_params``). The activation is smooth
    (swish by default), so score matching, which differentiates the energy twice in ``x``, sees
    a well-defined Hessian. ``quadratic > 0`` adds a fixed confining term that keeps
    ``exp(−E)`` normalizable however the network extrapolates.

    Args:
        dim: state dimension.
        hidden: widths of the hidden layers.
        activation: one of ``"swish"``, ``"softplus"``, ``"tanh"``, ``"elu"``, ``"gelu"``.
        quadratic: weight of the fixed ``‖x‖²`` term (``>= 0``).
        site: name of the state site.
        spectral_norm: divide every weight matrix by its largest singular value
            (:func:`spectral_normalize`; Miyato et al. 2018), so that with 1-Lipschitz
            activations (tanh, softplus, swish up to 1.1) the network part of the energy is
            Lipschitz in ``x`` with a constant set by the activations alone.

    Raises:
        ValueError: for a bad ``dim``, ``hidden``, ``activation`` or ``quadratic``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(mlp_energy, 2, (16,))
        >>> params = em.init_params(jax.random.PRNGKey(0))
        >>> sorted(params), params["W0"].shape
        (['W0', 'W1', 'b0', 'b1'], (2, 16))
        >>> em.energy(params, {"x": jnp.zeros(2)}).shape
        ()
    """
    dim, hidden = _check(dim, hidden, activation, quadratic)
    act = _ACTIVATIONS[activation]
    x = numpyro.sample(site, Flat((dim,)))
    h = x
    widths = (dim, *hidden, 1)
    for i in range(len(widths) - 1):
        w = numpyro.param(f"W{i}", _glorot((widths[i], widths[i + 1])))
        if spectral_norm:
            w = spectral_normalize(w)
        b = numpyro.param(f"b{i}", jnp.zeros(widths[i + 1]))
        h = h @ w + b
        if i < len(widths) - 2:
            h = act(h)
    _energy("E", h[..., 0] + quadratic * jnp.sum(x**2, axis=-1))


def init_params(
    rng_key: jax.Array, dim: int = 2, hidden: Sequence[int] = (128, 128), **kwargs: Any
):
    """Initial parameters of :func:`mlp_energy` (``EnergyModel(mlp_energy, ...).init_params``).

    Examples:
        >>> import jax
        >>> p = init_params(jax.random.PRNGKey(0), 3, (8, 8))
        >>> [p[k].shape for k in ("W0", "W1", "W2")]
        [(3, 8), (8, 8), (8, 1)]
    """
    return EnergyModel(mlp_energy, dim, hidden, **kwargs).init_params(rng_key)


def spectral_normalize(w: jax.Array) -> jax.Array:
    """``w / σ_max(w)``: the matrix scaled to spectral norm 1 (exact singular value).

    Convolution kernels ``(kh, kw, in, out)`` are normalized as the ``(kh·kw·in, out)``
    matrix (Miyato et al.'s reshaping: a bound up to the kernel's overlap, not the exact
    operator norm of the convolution).

    Examples:
        >>> import jax.numpy as jnp
        >>> spectral_normalize(jnp.diag(jnp.array([4.0, 2.0]))).tolist()
        [[1.0, 0.0], [0.0, 0.5]]
    """
    m = w.reshape(-1, w.shape[-1])
    return w / jnp.linalg.svd(m, compute_uv=False)[0]


def conv_energy(
    shape: Sequence[int] = (8, 8),
    channels: Sequence[int] = (8, 16),
    *,
    kernel_size: int = 3,
    activation: str = "swish",
    quadratic: float = 0.0,
    site: str = "x",
    spectral_norm: bool = False,
) -> None:
    """NumPyro EBM over single-channel images ``x ∈ R^{H×W}``: convolutions, then a linear head.

    ``len(channels)`` convolutions (``kernel_size`` square, stride 2, "SAME" padding, the
    activation after each), a global sum over positions, and a linear map to the energy;
    ``+ quadratic·‖x‖²``. Parameters ``K0, c0, K1, c1, ...`` (kernels ``(k, k, in, out)``) and
    the head ``w``, ``b``.

    Args:
        shape: ``(H, W)`` of the image site.
        channels: output channels of each convolution.
        kernel_size: side of the square kernels.
        activation: as in :func:`mlp_energy`.
        quadratic: weight of the fixed ``‖x‖²`` term.
        site: name of the state site.
        spectral_norm: normalize kernels and head (:func:`spectral_normalize`).

    Raises:
        ValueError: a bad ``shape``, ``channels``, ``kernel_size`` or ``activation``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(conv_energy, (8, 8), (4,))
        >>> p = em.init_params(jax.random.PRNGKey(0))
        >>> p["K0"].shape, em.energy(p, {"x": jnp.zeros((8, 8))}).shape
        ((3, 3, 1, 4), ())
    """
    shape = tuple(shape)
    if len(shape) != 2 or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape
    ):
        raise ValueError(f"shape must be (height, width) of integers >= 1, got {shape!r}")
    chans = (channels,) if isinstance(channels, int) else tuple(channels)
    if not chans or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in chans):
        raise ValueError(f"channels must be a non-empty tuple of integers >= 1, got {channels!r}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1, got {kernel_size!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    act = _ACTIVATIONS[activation]
    x = numpyro.sample(site, Flat(shape))
    h = x[..., None]  # (H, W, 1), NHWC without the batch axis
    widths = (1, *chans)
    for i in range(len(chans)):
        fan_in = kernel_size * kernel_size * widths[i]

        def init(key, i=i, fan_in=fan_in):
            k_shape = (kernel_size, kernel_size, widths[i], widths[i + 1])
            return jax.random.normal(key, k_shape) * jnp.sqrt(2.0 / fan_in)

        k = numpyro.param(f"K{i}", init)
        if spectral_norm:
            k = spectral_normalize(k)
        c = numpyro.param(f"c{i}", jnp.zeros(widths[i + 1]))
        h = jax.lax.conv_general_dilated(
            h[None], k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )[0]
        h = act(h + c)
    feats = jnp.sum(h, axis=(0, 1))
    w = numpyro.param("w", _glorot((chans[-1], 1)))
    if spectral_norm:
        w = spectral_normalize(w)
    b = numpyro.param("b", jnp.zeros(1))
    _energy("E", (feats @ w + b)[0] + quadratic * jnp.sum(x**2))


def eqx_mlp_energy(
    dim: int = 2,
    width: int = 64,
    depth: int = 2,
    *,
    activation: str = "swish",
    quadratic: float = 0.0,
    site: str = "x",
    seed: int = 0,
) -> None:
    """NumPyro EBM whose energy is an Equinox ``eqx.nn.MLP`` (``depth`` hidden layers of
    ``width``), registered by ``numpyro.contrib.module.eqx_module`` as the one parameter site
    ``"net$params"`` (a pytree everywhere: ``fit`` optimizes it, checkpoints store it).

    Needs the ``[nn]`` extra (equinox). ``seed`` draws the initial weights.

    Raises:
        ValueError: a bad ``dim``, ``width``/``depth``, ``activation`` or ``quadratic``.

    Examples:
        >>> import jax, jax.numpy as jnp, ebm_ppl as ebm
        >>> em = ebm.EnergyModel(eqx_mlp_energy, 2, 8, 1)
        >>> p = em.init_params(jax.random.PRNGKey(0))
        >>> list(p), em.energy(p, {"x": jnp.zeros(2)}).shape
        (['net$params'], ())
    """
    import equinox as eqx
    from numpyro.contrib.module import eqx_module

    dim, _ = _check(dim, (width,) * max(int(depth), 1), activation, quadratic)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    net = eqx_module(
        "net",
        eqx.nn.MLP(
            dim,
            "scalar",
            width,
            depth,
            activation=_ACTIVATIONS[activation],
            key=jax.random.PRNGKey(seed),
        ),
    )
    x = numpyro.sample(site, Flat((dim,)))
    _energy("E", net(x) + quadratic * jnp.sum(x**2))
