"""Single-unit conditionals of binary units (``Bits``, ``Spins``) and categorical units
(``Categorical``) from an energy function.

Categorical units (states ``{0, ..., q-1}``) have q logits each, ``-(E(x_i = k) - E(x))``:
:func:`categorical_logits` reads them from one gradient with respect to the :func:`one_hot`
encoding when the energy is affine in it (:func:`check_categorical_affine`), else from exact
energy differences; :func:`check_one_hot` refuses an encoding with the wrong number of states.
The binary case follows.

For a unit ``x_i`` with two levels ``lo < hi`` and every other unit held fixed,

.. math::

    \\operatorname{logit} P(x_i = hi \\mid x_{-i}) = E(x_i{=}lo) - E(x_i{=}hi).

When ``E`` is affine in each unit (``∂²E/∂x_i² ≡ 0``: Ising models, Boltzmann machines with a
zero diagonal, RBMs) the difference is ``-(hi - lo) ∂E/∂x_i``, so one gradient gives every
unit's logit: ``-∂E/∂x_i`` for bits and ``-2 ∂E/∂s_i`` for spins. Otherwise the exact
differences are computed by flipping each unit (vmapped: one energy per unit).

:func:`is_affine` decides which formula is valid by comparing, for a few units of a few states,
the partial derivative at both levels and at the midpoint (it must be the same number) and the
gradient logit against the exact energy difference. Everything here is pure JAX: ``energy_fn``
maps a position (a dict site -> array) to a scalar.

Examples:
    >>> import jax.numpy as jnp
    >>> energy_fn = lambda pos: -jnp.sum(pos["s"][:-1] * pos["s"][1:])   # 1-D Ising chain
    >>> pos = {"s": jnp.array([1.0, -1.0, 1.0])}
    >>> gradient_logits(energy_fn, pos, {"s": (-1.0, 1.0)})["s"].tolist()
    [-2.0, 4.0, -2.0]
    >>> exact_logits(energy_fn, pos, "s", (-1.0, 1.0)).tolist()
    [-2.0, 4.0, -2.0]
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

__all__ = [
    "binary_levels",
    "categorical_logits",
    "categorical_logits_fn",
    "categorical_value_and_logits",
    "check_affine",
    "check_categorical_affine",
    "check_model_affine",
    "check_model_categorical_affine",
    "check_one_hot",
    "conditional_logits",
    "exact_categorical_logits",
    "exact_logits",
    "gradient_categorical_logits",
    "gradient_logits",
    "OneHotError",
    "is_affine",
    "one_hot",
]

Position = Mapping[str, jax.Array]
EnergyFn = Callable[[Position], jax.Array]


def binary_levels(support: Any) -> tuple[float, float] | None:
    """The two levels ``(lo, hi)`` of a binary support, or ``None`` for any other support.

    Args:
        support: a NumPyro constraint (``Spins(...).support``, ``Bits(...).support``, ...).

    Returns:
        ``(-1.0, 1.0)`` for spins, ``(0.0, 1.0)`` for bits, ``None`` otherwise.

    Examples:
        >>> from ebm_ppl import Bits, Spins
        >>> binary_levels(Spins(3).support), binary_levels(Bits(3).support)
        ((-1.0, 1.0), (0.0, 1.0))
        >>> import numpyro.distributions as dist
        >>> binary_levels(dist.Bernoulli(0.5).support)
        (0.0, 1.0)
    """
    if support is constraints.boolean:  # NumPyro's Bernoulli
        return 0.0, 1.0
    if isinstance(support, constraints.integer_interval):
        lo, hi = support.lower_bound, support.upper_bound
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and hi - lo == 1:
            return float(lo), float(hi)
        return None
    lo, hi = getattr(support, "low", None), getattr(support, "high", None)
    if not getattr(support, "is_discrete", False) or lo is None or hi is None:
        return None
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float))):
        return None
    return float(lo), float(hi)


def gradient_logits(
    energy_fn: EnergyFn, position: Position, levels: Mapping[str, tuple[float, float]]
) -> dict[str, jax.Array]:
    """Logits ``-(hi - lo) ∂E/∂x`` of every unit of the sites in ``levels``, from one gradient.

    Exact only when ``E`` is affine in each unit (see :func:`is_affine`).

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array; the other sites are held fixed.
        levels: dict site -> ``(lo, hi)`` for the binary sites to differentiate.

    Returns:
        dict site -> logits ``log P(x_i = hi | rest) / P(x_i = lo | rest)``, site-shaped.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda pos: -2.0 * jnp.sum(pos["x"])
        >>> gradient_logits(f, {"x": jnp.zeros(2)}, {"x": (0.0, 1.0)})["x"].tolist()
        [2.0, 2.0]
    """
    sub = {name: position[name] for name in levels}
    rest = {name: value for name, value in position.items() if name not in levels}
    grad = jax.grad(lambda s: energy_fn({**rest, **s}))(sub)
    return {name: -(hi - lo) * grad[name] for name, (lo, hi) in levels.items()}


def _flip_energies(energy_fn: EnergyFn, position: Position, site: str, levels, index) -> jax.Array:
    """Energy with unit ``index`` (flat) of ``site`` flipped, vmapped over ``index``."""
    lo, hi = levels
    x = position[site]
    flat = jnp.ravel(x)

    def one(i):
        flipped = flat.at[i].set(lo + hi - flat[i]).reshape(x.shape)
        return energy_fn({**position, site: flipped})

    return jax.vmap(one)(index)


def exact_logits(
    energy_fn: EnergyFn,
    position: Position,
    site: str,
    levels: tuple[float, float],
    index: Any = None,
) -> jax.Array:
    """Exact logits ``E(x_i=lo) - E(x_i=hi)`` by flipping each unit (one energy per unit).

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array.
        site: the binary site.
        levels: its ``(lo, hi)``.
        index: optional 1-D integer array of flat unit indices; default all units.

    Returns:
        logits with the site's shape (``index=None``) or shape ``index.shape``.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda pos: jnp.sum(pos["x"] ** 2)        # not affine in spins: constant
        >>> exact_logits(f, {"x": jnp.array([1.0, -1.0])}, "x", (-1.0, 1.0)).tolist()
        [0.0, 0.0]
    """
    hi = levels[1]
    x = position[site]
    full = index is None
    idx = jnp.arange(x.size) if full else jnp.asarray(index)
    e_flip = _flip_energies(energy_fn, position, site, levels, idx)
    e_0 = energy_fn(position)
    at_hi = jnp.ravel(x)[idx] == hi
    # logit = E(lo) - E(hi): the flipped state holds the other level.
    logits = jnp.where(at_hi, e_flip - e_0, e_0 - e_flip)
    return logits.reshape(x.shape) if full else logits


def conditional_logits(
    energy_fn: EnergyFn,
    position: Position,
    site: str,
    levels: tuple[float, float],
    *,
    affine: bool,
) -> jax.Array:
    """Logits of every unit of ``site``: one gradient if ``affine``, else exact differences.

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array.
        site: the binary site.
        levels: its ``(lo, hi)``.
        affine: whether the energy is affine in each unit of ``site`` (:func:`is_affine`).

    Returns:
        site-shaped logits of ``P(x_i = hi | rest)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda pos: -jnp.sum(pos["x"])
        >>> conditional_logits(f, {"x": jnp.zeros(2)}, "x", (0.0, 1.0), affine=True).tolist()
        [1.0, 1.0]
    """
    if affine:
        return gradient_logits(energy_fn, position, {site: levels})[site]
    return exact_logits(energy_fn, position, site, levels)


def _affine_stats(energy_fn: EnergyFn, pos: Position, site: str, levels, idx) -> dict:
    """Partials at lo/hi/mid, exact logits, gradient logits and E at units ``idx``.

    One vmapped gradient (over unit x value) and one vmapped energy (over flipped units plus
    the unflipped state, as an out-of-bounds index whose update is dropped): the energy
    function is traced twice however many units are checked.
    """
    lo, hi = levels
    x = jnp.asarray(pos[site])
    flat = jnp.ravel(x)
    size = flat.shape[0]
    idx = jnp.asarray(idx)
    k = idx.shape[0]
    grad_fn = jax.grad(lambda xs: energy_fn({**pos, site: xs}))

    def partial_at(i, value):
        return jnp.ravel(grad_fn(flat.at[i].set(value).reshape(x.shape)))[i]

    # numpy, not jnp: constants are folded eagerly (one compilation per op) at compile-time eval
    values = np.tile(np.asarray([lo, hi, 0.5 * (lo + hi)], flat.dtype), k)
    parts = jax.vmap(partial_at)(jnp.repeat(idx, 3), values).reshape(k, 3).T

    def energy_flipped(i):
        j = jnp.minimum(i, size - 1)
        flipped = flat.at[i].set(lo + hi - flat[j], mode="drop").reshape(x.shape)
        return energy_fn({**pos, site: flipped})

    energies = jax.vmap(energy_flipped)(jnp.append(idx, size))
    e0, e_flip = energies[k], energies[:k]
    at_hi = flat[idx] == hi
    return {
        "parts": parts,
        "exact": jnp.where(at_hi, e_flip - e0, e0 - e_flip),
        "grad_logit": -(hi - lo) * jnp.where(at_hi, parts[1], parts[0]),
        "energy": e0,
    }


def _affine_ok(stats: Mapping[str, Any]) -> bool:
    parts = np.asarray(stats["parts"], dtype=np.float64)
    exact = np.asarray(stats["exact"], dtype=np.float64)
    grad_logit = np.asarray(stats["grad_logit"], dtype=np.float64)
    e0 = float(stats["energy"])
    if not (np.all(np.isfinite(parts)) and np.all(np.isfinite(exact)) and np.isfinite(e0)):
        return False
    eps = float(np.finfo(np.asarray(stats["energy"]).dtype).eps)
    # The partial derivative must not depend on the unit's own value (affine).
    scale = np.abs(parts).max() + 1.0
    if np.any(np.abs(parts - parts[0]) > max(1e-4, 64 * eps) * scale):
        return False
    # And agree with the exact difference, which cancels |E|: tolerance scales with it.
    tol = 1e-4 * (1.0 + np.abs(exact)) + 64.0 * eps * (abs(e0) + 1.0)
    return bool(np.all(np.abs(grad_logit - exact) <= tol))


def _units(n: int, num_units: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, num_units), replace=False)).astype(np.int32)


def is_affine(
    energy_fn: EnergyFn,
    positions: list[Position],
    site: str,
    levels: tuple[float, float],
    *,
    num_units: int = 16,
    seed: int = 0,
) -> bool:
    """Whether ``energy_fn`` is affine in each unit of ``site``, checked on ``positions``.

    For up to ``num_units`` randomly chosen units of each position, the partial derivative
    ``∂E/∂x_i`` must be the same (to round-off) with ``x_i`` at ``lo``, at ``hi`` and at the
    midpoint, and ``-(hi - lo) ∂E/∂x_i`` must equal the exact energy difference (to a tolerance
    scaled by ``|E|``, since that difference cancels large energies). Non-finite values count
    as "not affine". Call it with concrete (not traced) values.

    Args:
        energy_fn: position -> scalar energy.
        positions: states to check at (dicts site -> array, no batch axis).
        site: the binary site.
        levels: its ``(lo, hi)``.
        num_units: units checked per position.
        seed: seed for choosing the units.

    Returns:
        bool.

    Examples:
        >>> import jax.numpy as jnp
        >>> pos = [{"x": jnp.array([0.0, 1.0, 1.0])}]
        >>> is_affine(lambda p: -jnp.prod(p["x"]), pos, "x", (0.0, 1.0))
        True
        >>> is_affine(lambda p: jnp.sum(p["x"] ** 2), pos, "x", (0.0, 1.0))
        False
    """
    stats_fn = jax.jit(lambda pos, idx: _affine_stats(energy_fn, pos, site, levels, idx))
    for pos in positions:
        idx = _units(int(np.size(pos[site])), num_units, seed)
        if not _affine_ok(stats_fn(pos, jnp.asarray(idx))):
            return False
    return True


def _random_states(rng_key, position: Position, levels, num_states: int) -> list[dict]:
    """``num_states`` copies of ``position`` with the binary sites redrawn uniformly."""
    out = []
    for j in range(num_states):
        pos = dict(position)
        for k, (n, (lo, hi)) in enumerate(sorted(levels.items())):
            key = jax.random.fold_in(jax.random.fold_in(rng_key, j), k)
            bits = jax.random.bernoulli(key, 0.5, jnp.shape(position[n]))
            pos[n] = jnp.where(bits, hi, lo).astype(jnp.result_type(float))
        out.append(pos)
    return out


def check_affine(
    energy_fn: EnergyFn,
    position: Position,
    levels: Mapping[str, tuple[float, float]],
    *,
    num_states: int = 2,
    num_units: int = 16,
    seed: int = 0,
) -> dict[str, bool]:
    """:func:`is_affine` for several binary sites at once, at random states, in one compilation.

    The binary sites of ``position`` are redrawn uniformly ``num_states`` times (other sites
    held fixed); every statistic is computed by one compiled function, evaluated eagerly
    (``jax.ensure_compile_time_eval``) so this also runs while an enclosing function is traced,
    provided ``energy_fn`` and ``position`` do not depend on traced values. A failure counts as
    "not affine".

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array (concrete).
        levels: dict binary site -> ``(lo, hi)``.
        num_states: random states.
        num_units: units checked per state and site.
        seed: seed of the states and units.

    Returns:
        dict site -> bool.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda p: -p["s"][0] * p["s"][1] + p["x"][0] ** 2
        >>> check_affine(f, {"s": jnp.ones(2), "x": jnp.ones(1)}, {"s": (-1.0, 1.0)})
        {'s': True}
    """
    if not levels:
        return {}
    idx = {n: _units(int(np.size(position[n])), num_units, seed) for n in levels}

    def all_stats(key, pos0):
        states = _random_states(key, pos0, levels, num_states)
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
        return jax.vmap(
            lambda pos: {
                n: _affine_stats(energy_fn, pos, n, lv, idx[n]) for n, lv in levels.items()
            }
        )(stacked)

    try:
        with jax.ensure_compile_time_eval():
            results = jax.jit(all_stats)(jax.random.PRNGKey(seed), dict(position))
            results = jax.device_get(results)
    except Exception:  # noqa: BLE001  (any failure selects exact differences)
        return {n: False for n in levels}
    return {n: _all_ok(results[n]) for n in levels}


def _all_ok(batched: Mapping[str, Any]) -> bool:
    """:func:`_affine_ok` on every row of stats with a leading batch axis."""
    num = np.shape(batched["energy"])[0]
    return all(_affine_ok({k: np.asarray(v)[j] for k, v in batched.items()}) for j in range(num))


def _perturb(model: Any, k_pert: Any, params: Mapping[str, Any]) -> dict:
    """Parameters moved randomly on their unconstrained space (network leaves too)."""
    out = {}
    for i, (name, value) in enumerate(params.items()):
        k_i = jax.random.fold_in(k_pert, i)
        try:
            t = biject_to(model.sites[name].support)
            u = t.inv(jnp.asarray(value))
            noise = jax.random.normal(k_i, jnp.shape(u)).astype(u.dtype)
            out[name] = t(u + 0.5 * noise)
        except Exception:  # noqa: BLE001  (network parameters: perturb every float leaf)
            out[name] = jax.tree.map(
                lambda a, k=k_i: (
                    a + 0.5 * jax.random.normal(k, jnp.shape(a)).astype(a.dtype)
                    if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                    else a
                ),
                value,
            )
    return out


def check_model_affine(
    model: Any, *, num_states: int = 2, seed: int = 0, num_units: int = 16
) -> dict[str, bool]:
    """For each binary state site of an :class:`~ebm_ppl.EnergyModel`, whether it is affine.

    Checked as in :func:`check_affine` at ``num_states`` random states, under the model's
    initial parameters and under a random perturbation of them (made in the unconstrained space
    of each parameter, so a zero initial weight matrix cannot hide a self-interaction). One
    compiled function computes every statistic (initial values included), evaluated eagerly, so
    this also runs while an enclosing function is traced as long as the model's arguments are
    concrete. A failure of the check counts as "not affine", which selects the always-correct
    exact differences.

    Args:
        model: an ``EnergyModel``.
        num_states: random states per parameter set.
        seed: seed of the states, the units and the perturbation.
        num_units: units checked per state.

    Returns:
        dict binary site -> bool (empty if the model has no binary state site).

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Bits(3))
        ...     ebm.energy("E", -x[0] * x[1] + x[2] ** 2)   # x_2 enters squared
        >>> check_model_affine(ebm.EnergyModel(m))
        {'x': False}
    """
    levels = model.plan.levels()
    if not levels:
        return {}
    sizes = {n: int(np.prod(model.sites[n].shape, dtype=int)) for n in levels}
    idx = {n: _units(sizes[n], num_units, seed) for n in levels}
    rows = _probe_rows(idx)

    def all_stats(key, rows):
        k_par, k_pert, k_state = jax.random.split(key, 3)
        params = model.init_params(k_par)
        states = model.plan.to_kernel(model.init_values(k_state, num_states))
        perturbed = _perturb(model, k_pert, params)

        def at(p):
            fn = lambda q: model.energy(p, q)  # noqa: E731
            return jax.vmap(lambda pos: _model_affine_stats(fn, pos, levels, rows))(states)

        if not jax.tree.leaves(params):  # nothing to perturb (and vmap needs a mapped leaf)
            return [at(params)] * 2
        try:
            stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, perturbed)
        except (TypeError, ValueError):  # leaves that cannot be stacked: one trace per set
            return [at(params), at(perturbed)]
        # both parameter sets in one vmapped evaluation: the model is traced once
        both = jax.vmap(at)(stacked)
        return [jax.tree.map(lambda a, i=i: a[i], both) for i in range(2)]

    try:
        with jax.ensure_compile_time_eval():
            # the unit indices are arguments: as closed-over constants, every operation on
            # them would run (and compile) eagerly under ensure_compile_time_eval
            results = jax.device_get(jax.jit(all_stats)(jax.random.PRNGKey(seed), rows))
    except Exception:  # noqa: BLE001  (any failure selects exact differences)
        return {n: False for n in levels}
    return {n: all(_all_ok(r[n]) for r in results) for n in levels}


def _probe_rows(idx: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Row layout of the one batch of probed states of :func:`_model_affine_stats`.

    Site ``n``'s checked unit ``idx[n][j]`` is set to ``lo``, ``hi`` and the midpoint in rows
    ``start_n + 3 j + (0, 1, 2)``; the last row is the state itself. Returns per site the rows,
    the units (flat indices) and which of the three values each row holds.
    """
    out, start = {}, 0
    for n, units in idx.items():
        k = len(units)
        out[n] = {
            "row": (start + np.arange(3 * k)).astype(np.int32),
            "unit": np.repeat(np.asarray(units, np.int32), 3),
            "which": np.tile(np.arange(3, dtype=np.int32), k),
        }
        start += 3 * k
    return out


def _model_affine_stats(energy_fn: EnergyFn, pos: Position, levels, rows) -> dict:
    """:func:`_affine_stats` of every binary site at once, from one vmapped value and gradient.

    Every probed state (each checked unit of each site at ``lo``, ``hi`` and the midpoint, and
    the state itself; layout :func:`_probe_rows`) is one row of a batch, so the energy is traced
    once whatever the number of sites: the exact differences come from the energies at ``lo``
    and ``hi``, the partials from the gradients.
    """
    total = sum(int(r["row"].shape[0]) for r in rows.values()) + 1
    flat = {n: jnp.ravel(jnp.asarray(pos[n])) for n in levels}
    batch = {}
    for n, (lo, hi) in levels.items():
        r = rows[n]
        # numpy, not jnp: constants are folded eagerly (one compilation per op) at compile-time eval
        values = np.asarray([lo, hi, 0.5 * (lo + hi)], flat[n].dtype)
        tiled = jnp.broadcast_to(flat[n], (total, flat[n].shape[0]))
        batch[n] = tiled.at[r["row"], r["unit"]].set(jnp.asarray(values)[r["which"]])

    def energy_of(sub):
        return energy_fn({**pos, **{n: sub[n].reshape(jnp.shape(pos[n])) for n in sub}})

    energies, grads = jax.vmap(jax.value_and_grad(energy_of))(batch)
    e0 = energies[total - 1]
    out = {}
    for n, (lo, hi) in levels.items():
        r = rows[n]
        k = r["row"].shape[0] // 3
        parts = grads[n][r["row"], r["unit"]].reshape(k, 3).T
        e = energies[r["row"]].reshape(k, 3)
        at_hi = flat[n][r["unit"][::3]] == hi
        out[n] = {
            "parts": parts,
            "exact": e[:, 0] - e[:, 1],  # E(x_i = lo) - E(x_i = hi), whichever x_i holds
            "grad_logit": -(hi - lo) * jnp.where(at_hi, parts[1], parts[0]),
            "energy": e0,
        }
    return out


# ---------------------------------------------------------------------- categorical units
#
# For a unit with states {0, ..., q-1} and every other unit fixed, the conditional logits are
# ``-E(x_i = k)`` for k = 0..q-1 (up to a per-unit constant). When ``E`` is affine in the unit's
# one-hot vector ``o_i`` (Potts models, categorical RBMs, pairwise couplings J[s_i, s_j]) they are
# ``-∂E/∂o_ik``: one gradient with respect to the encoding gives every unit's q logits. An
# integer state has no gradient, so the encoding is made differentiable by :func:`one_hot`: while
# the conditionals differentiate, it adds a zero "probe" of shape ``site_shape + (q,)`` to the
# encoding of the site's value, and the gradient with respect to that probe is ``∂E/∂o``.

_PROBES: contextvars.ContextVar[tuple[tuple[Any, Any, str], ...]] = contextvars.ContextVar(
    "ebm_ppl_one_hot_probes", default=()
)


class OneHotError(ValueError):
    """An energy one-hot encodes a categorical site with the wrong number of states."""


@contextlib.contextmanager
def _probing(value: Any, probe: Any, site: str) -> Iterator[None]:
    token = _PROBES.set(_PROBES.get() + ((value, probe, site),))
    try:
        yield
    finally:
        _PROBES.reset(token)


def one_hot(x: Any, num_states: int, *, dtype: Any = None) -> jax.Array:
    """One-hot encoding of categorical states, shape ``x.shape + (num_states,)``.

    The same values as ``jax.nn.one_hot(x, num_states)`` (integer or integer-valued float
    states; states outside ``{0, ..., num_states - 1}`` encode as zeros). Applied to the value of a
    categorical site, it lets :func:`categorical_logits` read all q conditional logits of every
    unit from one gradient with respect to the encoding (when the energy is affine in it), and it
    checks ``num_states`` against the site's number of states (:class:`OneHotError`, a
    ``ValueError``). With ``jax.nn.one_hot`` or integer indexing the conditionals are computed
    by exact energy differences instead: correct, but ``q`` energies per unit.

    Args:
        x: integer states, any shape.
        num_states: number of states q.
        dtype: float dtype of the result (default JAX's default float).

    Returns:
        array of shape ``x.shape + (num_states,)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> one_hot(jnp.array([0, 2]), 3).tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    probe = None
    for value, p, site in _PROBES.get():
        if x is value:
            if p.shape[-1] != num_states:
                raise OneHotError(
                    f"the energy one-hot encodes site {site!r} with num_states={num_states}, but "
                    f"the site has {p.shape[-1]} states (its base measure's num_states)"
                )
            probe = p
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        arr = arr.astype(jnp.int32)  # kernels may hold integer-valued floats
    out = jax.nn.one_hot(arr, num_states, dtype=dtype)
    if probe is not None:
        out = out + probe.astype(out.dtype)
    return out


def gradient_categorical_logits(
    energy_fn: EnergyFn, position: Position, site: str, num_states: int
) -> jax.Array:
    """Logits ``-(∂E/∂o_ik - ∂E/∂o_i,x_i)`` of every unit of ``site``, from one gradient.

    ``o`` is the one-hot encoding of the site made by :func:`one_hot` inside the energy. Exact
    only when ``E`` is affine in each unit's one-hot vector and every use of the site's value
    goes through :func:`one_hot` (see :func:`check_categorical_affine`).

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array; the site holds integer states.
        site: the categorical site.
        num_states: its number of states q.

    Returns:
        logits of shape ``site_shape + (q,)``, zero at each unit's current state.

    Examples:
        >>> import jax.numpy as jnp
        >>> h = jnp.array([0.0, 1.0, 3.0])
        >>> f = lambda pos: -jnp.sum(one_hot(pos["c"], 3) @ h)
        >>> gradient_categorical_logits(f, {"c": jnp.array([1, 0])}, "c", 3).tolist()
        [[-1.0, 0.0, 2.0], [0.0, 1.0, 3.0]]
    """
    x = position[site]
    ftype = jnp.result_type(float)

    def energy_of_probe(probe):
        with _probing(x, probe, site):
            return energy_fn({**position, site: x})

    grad = jax.grad(energy_of_probe)(jnp.zeros(jnp.shape(x) + (num_states,), ftype))
    current = jnp.take_along_axis(grad, jnp.asarray(x, jnp.int32)[..., None], axis=-1)
    return -(grad - current)


def exact_categorical_logits(
    energy_fn: EnergyFn,
    position: Position,
    site: str,
    num_states: int,
    index: Any = None,
) -> jax.Array:
    """Exact logits ``-(E(x_i = k) - E(x))`` by setting each unit to each state.

    ``q`` energies per unit (vmapped over units and states).

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array of integer states.
        site: the categorical site.
        num_states: its number of states q.
        index: optional 1-D integer array of flat unit indices; default all units.

    Returns:
        logits of shape ``site_shape + (q,)`` (``index=None``) or ``index.shape + (q,)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda pos: jnp.sum((pos["c"] - 1.0) ** 2)       # not affine in the encoding
        >>> exact_categorical_logits(f, {"c": jnp.array([0, 1])}, "c", 3).tolist()
        [[0.0, 1.0, 0.0], [-1.0, 0.0, -1.0]]
    """
    x = position[site]
    flat = jnp.ravel(x)
    full = index is None
    idx = jnp.arange(flat.shape[0]) if full else jnp.asarray(index)
    states = jnp.arange(num_states, dtype=flat.dtype)

    def one(i, k):
        return energy_fn({**position, site: flat.at[i].set(k).reshape(jnp.shape(x))})

    energies = jax.vmap(lambda i: jax.vmap(lambda k: one(i, k))(states))(idx)
    energies = energies.astype(jnp.result_type(float))  # an energy of integer states is an int
    e_0 = jnp.take_along_axis(energies, flat[idx].astype(jnp.int32)[:, None], axis=-1)
    logits = -(energies - e_0)
    return logits.reshape(jnp.shape(x) + (num_states,)) if full else logits


def categorical_logits(
    energy_fn: EnergyFn,
    position: Position,
    site: str,
    num_states: int,
    *,
    affine: bool = False,
) -> jax.Array:
    """The q conditional logits of every unit of a categorical ``site``.

    ``log P(x_i = k | x_-i) = logits[i, k] - logsumexp(logits[i])``. One gradient with respect
    to the one-hot encoding if ``affine`` (:func:`check_categorical_affine`), else exact energy
    differences.

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array; the site holds integer states (any integer-valued dtype).
        site: the categorical site.
        num_states: its number of states q.
        affine: whether the energy is affine in each unit's :func:`one_hot` encoding.

    Returns:
        logits of shape ``site_shape + (q,)``, ``-(E(x_i = k) - E(x))``.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda pos: -jnp.sum(pos["c"][1:] == pos["c"][:-1])   # 1-D Potts chain
        >>> categorical_logits(f, {"c": jnp.array([0, 0, 2])}, "c", 3).tolist()
        [[0.0, -1.0, -1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    if affine:
        return gradient_categorical_logits(energy_fn, position, site, num_states)
    return exact_categorical_logits(energy_fn, position, site, num_states)


def categorical_value_and_logits(
    energy_fn: EnergyFn,
    position: Position,
    num_states: Mapping[str, int],
    *,
    affine: Mapping[str, bool] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(E(position), {site: logits})`` for several categorical sites at once.

    The sites marked affine share one ``value_and_grad`` with respect to their one-hot
    encodings (the energy comes with it, traced once); the others get exact energy differences.
    This is the ``logits_fn`` the categorical kernels of :mod:`ebm_ppl.kernels` take.

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array; categorical sites hold integer states.
        num_states: dict categorical site -> q.
        affine: dict site -> whether one gradient gives its logits (default: none).

    Returns:
        the energy (a scalar) and dict site -> logits ``site_shape + (q,)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> f = lambda p: -jnp.sum(one_hot(p["c"], 3) @ jnp.array([0.0, 1.0, 2.0]))
        >>> e, lg = categorical_value_and_logits(f, {"c": jnp.array([2])}, {"c": 3},
        ...                                      affine={"c": True})
        >>> float(e), lg["c"].tolist()
        (-2.0, [[-2.0, -1.0, 0.0]])
    """
    affine = dict(affine or {})
    grad_sites = [n for n in num_states if affine.get(n, False)]
    ftype = jnp.result_type(float)
    out: dict[str, jax.Array] = {}
    if grad_sites:

        def energy_of_probes(probes):
            with contextlib.ExitStack() as stack:
                for n in grad_sites:
                    stack.enter_context(_probing(position[n], probes[n], n))
                return energy_fn(dict(position))

        probes0 = {
            n: jnp.zeros(jnp.shape(position[n]) + (num_states[n],), ftype) for n in grad_sites
        }
        energy, grads = jax.value_and_grad(energy_of_probes)(probes0)
        for n in grad_sites:
            current = jnp.take_along_axis(
                grads[n], jnp.asarray(position[n], jnp.int32)[..., None], axis=-1
            )
            out[n] = -(grads[n] - current)
    else:
        energy = energy_fn(dict(position))
    for n in num_states:
        if n not in out:
            out[n] = exact_categorical_logits(energy_fn, position, n, num_states[n])
    return jnp.asarray(energy, ftype), out


def categorical_logits_fn(affine: Mapping[str, bool]) -> Callable[..., Any]:
    """The ``logits_fn`` of the categorical kernels for a model's affinity flags.

    Args:
        affine: dict categorical site -> whether one gradient gives its logits
            (``EnergyModel.categorical_affine_sites``).

    Returns:
        ``logits_fn(energy_fn, position, num_states) -> (energy, {site: logits})``, i.e.
        :func:`categorical_value_and_logits` with ``affine`` bound.

    Examples:
        >>> import jax.numpy as jnp
        >>> fn = categorical_logits_fn({"c": True})
        >>> e, lg = fn(lambda p: -jnp.sum(one_hot(p["c"], 2)[:, 1]), {"c": jnp.array([0])}, {"c": 2})
        >>> lg["c"].tolist()
        [[0.0, 1.0]]
    """
    affine = dict(affine)

    def logits_fn(energy_fn, position, num_states):
        return categorical_value_and_logits(energy_fn, position, num_states, affine=affine)

    return logits_fn


def _categorical_stats(energy_fn: EnergyFn, pos: Position, site: str, q: int, idx) -> dict:
    """Gradient and exact logits of units ``idx`` (one gradient, one vmapped energy)."""
    grad = gradient_categorical_logits(energy_fn, pos, site, q)
    grad = grad.reshape(-1, q)[idx]
    exact = exact_categorical_logits(energy_fn, pos, site, q, index=idx)
    return {"grad": grad, "exact": exact, "energy": energy_fn(pos)}


def _categorical_ok(stats: Mapping[str, Any]) -> bool:
    grad = np.asarray(stats["grad"], dtype=np.float64)
    exact = np.asarray(stats["exact"], dtype=np.float64)
    e0 = float(stats["energy"])
    if not (np.all(np.isfinite(grad)) and np.all(np.isfinite(exact)) and np.isfinite(e0)):
        return False
    eps = float(np.finfo(np.asarray(stats["energy"]).dtype).eps)
    tol = 1e-4 * (1.0 + np.abs(exact)) + 64.0 * eps * (abs(e0) + 1.0)
    return bool(np.all(np.abs(grad - exact) <= tol))


def _random_categorical(rng_key, position: Position, num_states: Mapping[str, int], n: int):
    out = []
    for j in range(n):
        pos = dict(position)
        for k, (name, q) in enumerate(sorted(num_states.items())):
            key = jax.random.fold_in(jax.random.fold_in(rng_key, j), k)
            x = position[name]
            pos[name] = jax.random.randint(key, jnp.shape(x), 0, q).astype(jnp.asarray(x).dtype)
        out.append(pos)
    return out


def check_categorical_affine(
    energy_fn: EnergyFn,
    position: Position,
    num_states: Mapping[str, int],
    *,
    num_positions: int = 2,
    num_units: int = 16,
    seed: int = 0,
) -> dict[str, bool]:
    """Whether the gradient logits of each categorical site are exact, at random states.

    For ``num_positions`` uniformly redrawn states and up to ``num_units`` units, the logits of
    :func:`gradient_categorical_logits` must equal the exact energy differences (to a tolerance
    scaled by ``|E|``). This holds when the energy is affine in each unit's one-hot vector and
    reads the site only through :func:`one_hot`; an energy that indexes with the states or uses
    ``jax.nn.one_hot`` has a zero gradient and fails the check (exact differences are then used,
    which are always right). Evaluated eagerly in one compilation. A wrong ``num_states`` in
    :func:`one_hot` raises; any other failure counts as "not affine".

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array (concrete); categorical sites hold integer states.
        num_states: dict categorical site -> q.
        num_positions: random states checked.
        num_units: units checked per state and site.
        seed: seed of the states and units.

    Returns:
        dict site -> bool.

    Raises:
        OneHotError: :func:`one_hot` is applied to a site with another number of states.

    Examples:
        >>> import jax.numpy as jnp
        >>> pos = {"c": jnp.zeros(4, jnp.int32)}
        >>> J = lambda o: -jnp.sum(o[1:] * o[:-1])                       # Potts chain
        >>> check_categorical_affine(lambda p: J(one_hot(p["c"], 3)), pos, {"c": 3})
        {'c': True}
        >>> check_categorical_affine(lambda p: -jnp.sum(p["c"][1:] == p["c"][:-1]), pos, {"c": 3})
        {'c': False}
    """
    if not num_states:
        return {}
    idx = {n: _units(int(np.size(position[n])), num_units, seed) for n in num_states}

    def all_stats(key, pos0):
        states = _random_categorical(key, pos0, num_states, num_positions)
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
        return jax.vmap(
            lambda pos: {
                n: _categorical_stats(energy_fn, pos, n, q, idx[n]) for n, q in num_states.items()
            }
        )(stacked)

    try:
        with jax.ensure_compile_time_eval():
            results = jax.device_get(jax.jit(all_stats)(jax.random.PRNGKey(seed), dict(position)))
    except OneHotError:
        raise
    except Exception:  # noqa: BLE001  (any failure selects exact differences)
        return {n: False for n in num_states}
    return {n: _all_categorical_ok(results[n]) for n in num_states}


def _all_categorical_ok(batched: Mapping[str, Any]) -> bool:
    num = np.shape(batched["energy"])[0]
    return all(
        _categorical_ok({k: np.asarray(v)[j] for k, v in batched.items()}) for j in range(num)
    )


def check_one_hot(energy_fn: EnergyFn, position: Position, num_states: Mapping[str, int]) -> None:
    """Refuse an energy that one-hot encodes a categorical site with the wrong number of states.

    Traces the energy once (nothing is compiled) and looks, in its program, for every
    ``jax.nn.one_hot`` (or :func:`one_hot`) applied directly to a categorical site's value (or
    to a cast of it): its number of classes must be the site's ``q``. Not caught: an encoding
    built by hand (``x[..., None] == jnp.arange(3)``), one applied after other arithmetic on the
    states, or indexing with the states (``h[s]`` with ``h`` of the wrong length clamps
    silently, as JAX indexing does).

    Args:
        energy_fn: position -> scalar energy.
        position: dict site -> array (concrete).
        num_states: dict categorical site -> q.

    Raises:
        OneHotError: naming the site, the q of the encoding and the site's q.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda p: -jnp.sum(jax.nn.one_hot(p["c"], 2)[:, 0])
        >>> check_one_hot(f, {"c": jnp.zeros(3, jnp.int32)}, {"c": 3})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ebm_ppl.energy.conditionals.OneHotError: the energy one-hot encodes site 'c' with num_states=2, ...
    """
    if not num_states:
        return
    names = list(num_states)
    rest = {n: v for n, v in position.items() if n not in num_states}

    def fn(*xs):
        with _probing_all(dict(zip(names, xs, strict=True)), num_states):
            return energy_fn({**rest, **dict(zip(names, xs, strict=True))})

    try:
        closed = jax.make_jaxpr(fn)(*(position[n] for n in names))
    except OneHotError:
        raise
    except Exception:  # noqa: BLE001  (an energy that cannot be traced here is checked later)
        return
    jaxpr = closed.jaxpr
    _scan_one_hot(jaxpr, {v: n for v, n in zip(jaxpr.invars, names, strict=True)}, num_states)


@contextlib.contextmanager
def _probing_all(values: Mapping[str, Any], num_states: Mapping[str, int]) -> Iterator[None]:
    ftype = jnp.result_type(float)
    with contextlib.ExitStack() as stack:
        for n, x in values.items():
            probe = jnp.zeros(jnp.shape(x) + (num_states[n],), ftype)
            stack.enter_context(_probing(x, probe, n))
        yield


_PASS_THROUGH = ("convert_element_type", "copy", "copy_p", "reduce_precision", "round", "floor")


def _scan_one_hot(jaxpr: Any, tracked: dict, num_states: Mapping[str, int]) -> None:
    """Walk a jaxpr, following the site values through casts into ``_one_hot`` calls."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        sources = [tracked[v] for v in eqn.invars if not hasattr(v, "val") and v in tracked]
        if not sources:
            continue
        site = sources[0]
        if name in _PASS_THROUGH:
            for out in eqn.outvars:
                tracked[out] = site
            continue
        inner = eqn.params.get("jaxpr")
        if inner is None:
            continue
        inner_jaxpr = getattr(inner, "jaxpr", inner)
        if eqn.params.get("name") == "_one_hot" and len(eqn.outvars) == 1:
            num = eqn.outvars[0].aval.shape[-1]
            if num != num_states[site]:
                raise OneHotError(
                    f"the energy one-hot encodes site {site!r} with num_states={num}, but the "
                    f"site has {num_states[site]} states (its base measure's num_states)"
                )
            continue
        sub = {
            iv: tracked[ov]
            for iv, ov in zip(inner_jaxpr.invars, eqn.invars, strict=False)
            if not hasattr(ov, "val") and ov in tracked
        }
        _scan_one_hot(inner_jaxpr, sub, num_states)


def check_model_categorical_affine(
    model: Any, *, num_positions: int = 2, seed: int = 0, num_units: int = 16
) -> dict[str, bool]:
    """For each categorical state site of an :class:`~ebm_ppl.EnergyModel`: gradient logits exact?

    First :func:`check_one_hot` (a wrong ``num_states`` in a one-hot encoding raises), then
    :func:`check_categorical_affine` at random states under the model's initial parameters and
    under a random perturbation of them, in one compilation. ``True`` means
    :func:`categorical_logits` may use one gradient; ``False`` selects exact differences.

    Args:
        model: an ``EnergyModel``.
        num_positions: random states per parameter set.
        seed: seed of the states, the units and the perturbation.
        num_units: units checked per state.

    Returns:
        dict categorical site -> bool (empty if the model has none).

    Raises:
        OneHotError: the energy one-hot encodes a site with the wrong number of states.

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def potts():
        ...     o = ebm.one_hot(numpyro.sample("c", ebm.Categorical(5, 3)), 3)
        ...     ebm.energy("E", -jnp.sum(o[1:] * o[:-1]))
        >>> check_model_categorical_affine(ebm.EnergyModel(potts))
        {'c': True}
    """
    num_states = model.plan.num_states()
    if not num_states:
        return {}
    k_par, k_pert, k_state = jax.random.split(jax.random.PRNGKey(seed), 3)
    with jax.ensure_compile_time_eval():
        params = model.init_params(k_par)
        position = {n: v[0] for n, v in model.plan.to_kernel(model.init_values(k_state, 1)).items()}
    check_one_hot(lambda pos: model.energy(params, pos), position, num_states)
    out = {n: True for n in num_states}
    for p in (params, _perturb(model, k_pert, params)):

        def energy_fn(pos: Position, p: Any = p) -> jax.Array:
            return model.energy(p, pos)

        ok = check_categorical_affine(
            energy_fn,
            position,
            num_states,
            num_positions=num_positions,
            num_units=num_units,
            seed=seed,
        )
        out = {n: out[n] and ok[n] for n in num_states}
    return out
