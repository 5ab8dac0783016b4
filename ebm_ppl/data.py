"""Data sets for examples, tests and benchmarks.

A flat module with one section per family of data sets. Everything here is available offline:
the binarized digits come from scikit-learn's bundled ``load_digits`` (install the ``[data]``
extra); nothing downloads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TOY_SETS", "binarized_digits", "digits", "toy_data", "toy_log_density"]


# ----------------------------------------------------------------------------------------------
# Binarized digits (scikit-learn ``load_digits``)
# ----------------------------------------------------------------------------------------------

#: rows of ``load_digits`` used for training; the remaining 297 rows are the test set.
DIGITS_NUM_TRAIN = 1500


def _digits_csv() -> Any:
    """The path of scikit-learn's bundled ``digits.csv.gz``, found without importing sklearn."""
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):  # pragma: no cover - depends on the environment
        return None
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _digits_pixels() -> np.ndarray:
    """The ``(1797, 64)`` float64 grey levels of ``sklearn.datasets.load_digits().data``.

    Importing scikit-learn takes about 1.5 s; the CSV it ships is read in 0.1 s with NumPy,
    exactly as ``load_digits`` reads it (same parser, same dtype), so the arrays are identical.
    """
    path = _digits_csv()
    if path is not None:
        import gzip

        with gzip.open(path, mode="rt", encoding="utf-8") as f:
            table = np.loadtxt(f, delimiter=",")
        if table.ndim == 2 and table.shape[1] == 65:
            return table[:, :-1]
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("digits() needs scikit-learn: pip install 'ebm_ppl[data]'") from err
    return np.asarray(load_digits().data)


def digits(binarize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 8×8 digits of scikit-learn as ``(train, test)`` arrays of 64 pixels.

    Rows keep scikit-learn's order: the first 1500 rows are the training set, the last 297 the
    test set (the usual split: an independent-Bernoulli model reaches a test log-likelihood of
    −24.58 nats per image).

    Args:
        binarize: if true, pixels are ``1.0`` where the grey level is ``>= 8`` (of 16) and ``0.0``
            elsewhere; if false, grey levels are scaled to ``[0, 1]`` (divided by 16).

    Returns:
        ``(train, test)``: float32 arrays of shapes ``(1500, 64)`` and ``(297, 64)``.

    Raises:
        ImportError: if scikit-learn is not installed (``pip install ebm_ppl[data]``).

    Examples:
        >>> train, test = digits()
        >>> train.shape, test.shape, train.dtype
        ((1500, 64), (297, 64), dtype('float32'))
        >>> sorted(set(train.ravel().tolist()))
        [0.0, 1.0]
    """
    pixels = _digits_pixels()
    if binarize:
        x = (pixels >= 8.0).astype(np.float32)
    else:
        x = (pixels / 16.0).astype(np.float32)
    return x[:DIGITS_NUM_TRAIN].copy(), x[DIGITS_NUM_TRAIN:].copy()


def binarized_digits() -> tuple[np.ndarray, np.ndarray]:
    """Binarized digits ``(train, test)``: ``digits(binarize=True)``.

    Returns:
        ``(train, test)``: float32 arrays in ``{0, 1}`` of shapes ``(1500, 64)`` and ``(297, 64)``.

    Examples:
        >>> train, test = binarized_digits()
        >>> round(float(train.mean()), 3)
        0.323
    """
    return digits(binarize=True)


# ----------------------------------------------------------------------------------------------
# 2-D toy sets with exact densities
# ----------------------------------------------------------------------------------------------
# After the toy sets of Grathwohl et al. (FFJORD, 2019), with Gaussian noise only, so that each
# set has an exact density: a Gaussian mixture, a uniform density on squares, or a Gaussian
# smoothing of a curve, whose one-dimensional integral over the curve parameter is evaluated by
# Gauss-Legendre quadrature (to float64 precision at these noise widths).

#: names accepted by :func:`toy_data` and :func:`toy_log_density`.
TOY_SETS = ("8gaussians", "25gaussians", "swissroll", "2spirals", "checkerboard")

_EIGHT_RADIUS, _EIGHT_STD = 2.0 * np.sqrt(2.0), 0.5 / np.sqrt(2.0)
_GRID_STD = 0.1
_SWISS_STD, _SWISS_T = 0.2, (1.5 * np.pi, 4.5 * np.pi)
_SPIRAL_STD, _SPIRAL_T = 0.1, 3.0 * np.pi
# Gauss-Legendre nodes per arm: node spacing along the curve stays below a third of the noise sd.
_SWISS_NODES, _SPIRAL_NODES = 800, 1200


def _toy_centers(name: str) -> tuple[np.ndarray, float]:
    if name == "8gaussians":
        angles = 2.0 * np.pi * np.arange(8) / 8
        return _EIGHT_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1), _EIGHT_STD
    g = np.arange(-2, 3, dtype=np.float64)
    return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2), _GRID_STD


def _swiss_curve(t: np.ndarray) -> np.ndarray:
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=-1) / 5.0


def _spiral_curve(t: np.ndarray) -> np.ndarray:
    return np.stack([-np.cos(t) * t, np.sin(t) * t], axis=-1) / 3.0


def _check_toy(name: str, n: int | None = None) -> None:
    if name not in TOY_SETS:
        raise ValueError(f"name must be one of {TOY_SETS}, got {name!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")


def toy_data(name: str, rng_key, n: int) -> np.ndarray:
    """``n`` draws from a 2-D toy distribution, as a float32 array ``(n, 2)``.

    * ``"8gaussians"``: equal mixture of 8 isotropic Gaussians (sd 0.354) on a circle of radius
      2.83.
    * ``"25gaussians"``: equal mixture of 25 Gaussians (sd 0.1) on the grid {-2, ..., 2}².
    * ``"swissroll"``: ``(t cos t, t sin t) / 5`` with ``t ~ U(1.5π, 4.5π)``, plus N(0, 0.2²)
      noise.
    * ``"2spirals"``: ``±(−t cos t, t sin t) / 3`` with ``t = 3π√u``, ``u ~ U(0, 1)``, plus
      N(0, 0.1²) noise.
    * ``"checkerboard"``: uniform on the 8 dark unit squares of a 4×4 board on [-2, 2]².

    Args:
        name: one of :data:`TOY_SETS`.
        rng_key: a JAX PRNG key (or an int seed).
        n: number of points.

    Returns:
        float32 array of shape ``(n, 2)``.

    Raises:
        ValueError: for an unknown ``name`` or ``n < 1``.

    Examples:
        >>> import jax
        >>> x = toy_data("8gaussians", jax.random.PRNGKey(0), 1000)
        >>> x.shape, bool(abs(np.linalg.norm(x, axis=1).mean() - 2.83) < 0.1)
        ((1000, 2), True)
    """
    import jax

    _check_toy(name, n)
    if isinstance(rng_key, (int, np.integer)):
        rng_key = jax.random.PRNGKey(int(rng_key))
    seed = np.asarray(jax.random.randint(rng_key, (), 0, 2**31 - 1)).item()
    rng = np.random.default_rng(seed)
    if name in ("8gaussians", "25gaussians"):
        centers, std = _toy_centers(name)
        x = centers[rng.integers(len(centers), size=n)] + std * rng.standard_normal((n, 2))
    elif name == "swissroll":
        t = rng.uniform(*_SWISS_T, size=n)
        x = _swiss_curve(t) + _SWISS_STD * rng.standard_normal((n, 2))
    elif name == "2spirals":
        t = _SPIRAL_T * np.sqrt(rng.uniform(size=n))
        sign = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)[:, None]
        x = sign * _spiral_curve(t) + _SPIRAL_STD * rng.standard_normal((n, 2))
    else:
        x1 = rng.uniform(-2.0, 2.0, size=n)
        x2 = rng.uniform(0.0, 1.0, size=n) - 2.0 * rng.integers(0, 2, size=n) + np.floor(x1) % 2
        x = np.stack([x1, x2], axis=1)
    return x.astype(np.float32)


def _curve_log_density(x, curve, t_nodes, log_w, std, chunk=4096):
    """``log ∫ w(t) N(x; curve(t), std² I) dt`` from quadrature nodes and log weights."""
    import jax.numpy as jnp

    c = jnp.asarray(curve(t_nodes), jnp.float32)  # (K, 2)
    lw = jnp.asarray(log_w, jnp.float32)
    x = np.asarray(x, np.float32)
    n = len(x)
    size = min(chunk, n)
    pad = (-n) % size
    if pad:
        x = np.concatenate([x, np.zeros((pad, 2), np.float32)])
    out = [_kernel_sum(jnp.asarray(x[i : i + size]), c, lw, std) for i in range(0, len(x), size)]
    return np.asarray(np.concatenate(out)[:n], dtype=np.float64) - np.log(2.0 * np.pi * std**2)


def _kernel_sum_impl(x, c, lw, std):
    import jax
    import jax.numpy as jnp

    d2 = jnp.sum(x**2, 1)[:, None] - 2.0 * x @ c.T + jnp.sum(c**2, 1)[None]
    return jax.nn.logsumexp(lw[None] - 0.5 * jnp.maximum(d2, 0.0) / std**2, axis=1)


_KERNEL_SUM: list[Any] = []


def _kernel_sum(x, c, lw, std):
    if not _KERNEL_SUM:  # jit lazily: importing this module creates no JAX objects
        import jax

        _KERNEL_SUM.append(jax.jit(_kernel_sum_impl, static_argnums=3))
    return _KERNEL_SUM[0](x, c, lw, std)


def toy_log_density(name: str, x) -> np.ndarray:
    """Exact log density of a toy distribution of :func:`toy_data` at points ``x``.

    Mixtures and the checkerboard are closed forms (``-inf`` off the board); the swiss roll and
    the spirals integrate the Gaussian kernel along the curve with 800 (1200) Gauss-Legendre
    nodes per arm, spaced well below the noise width (exact to float32 rounding).

    Args:
        name: one of :data:`TOY_SETS`.
        x: array ``(n, 2)``.

    Returns:
        float64 array ``(n,)``.

    Raises:
        ValueError: for an unknown ``name`` or ``x`` not of shape ``(n, 2)``.

    Examples:
        >>> g = np.linspace(-6, 6, 121)
        >>> pts = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        >>> mass = np.exp(toy_log_density("8gaussians", pts)).sum() * (g[1] - g[0]) ** 2
        >>> round(float(mass), 3)
        1.0
    """
    _check_toy(name)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n, 2), got {x.shape}")
    if name in ("8gaussians", "25gaussians"):
        from scipy.special import logsumexp

        centers, std = _toy_centers(name)
        d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
        return (
            logsumexp(-0.5 * d2 / std**2, axis=1)
            - np.log(len(centers))
            - np.log(2.0 * np.pi * std**2)
        )
    if name == "checkerboard":
        inside = (np.abs(x) <= 2.0).all(axis=1)
        dark = (np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2 == 0
        return np.where(inside & dark, -np.log(8.0), -np.inf)
    if name == "swissroll":
        lo, hi = _SWISS_T
        nodes, weights = np.polynomial.legendre.leggauss(_SWISS_NODES)
        t = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
        log_w = np.log(0.5 * weights)  # uniform density on [lo, hi] times (hi - lo) / 2
        return _curve_log_density(x, _swiss_curve, t, log_w, _SWISS_STD)
    nodes, weights = np.polynomial.legendre.leggauss(_SPIRAL_NODES)
    t = 0.5 * _SPIRAL_T * (nodes + 1.0)
    # t = T√u has density 2t/T² on [0, T]; each arm carries half the mass.
    log_w = np.log(0.5 * _SPIRAL_T * weights * 2.0 * t / _SPIRAL_T**2) + np.log(0.5)
    arm = _curve_log_density(x, _spiral_curve, t, log_w, _SPIRAL_STD)
    other = _curve_log_density(x, lambda s: -_spiral_curve(s), t, log_w, _SPIRAL_STD)
    return np.logaddexp(arm, other)
