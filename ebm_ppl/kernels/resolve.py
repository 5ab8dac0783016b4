"""Kernel resolution: a kernel name (or ``"auto"``) and the site plan -> a pure step function.

Every part of ``ebm_ppl`` that runs chains of the pure kernels (the contrastive objectives'
positive and negative phases, refinement of variational negatives, the NumPyro adapter of a
composite kernel) turns a user's ``kernel=`` into a :class:`Sampler` here, once.

:func:`resolve_kernel` reads the model's *site plan* (``EnergyModel.plan``) by duck typing: it
needs ``plan[name].kind`` (``"continuous"``, ``"binary"``, ...), ``plan[name].blocks`` (declared
colours, ``infer={"blocks": ...}``), ``plan[name].is_constrained``, ``plan.state_sites`` and
``plan.levels(names)``; nothing of :mod:`ebm_ppl.energy` is imported (kernels sit below it).

``kernel="auto"`` (:func:`auto_kernel_name` gives the choice without building it):

* all-continuous sites: MALA (``purpose="sample"`` names ``"nuts"``, which is NumPyro's and not a
  pure kernel: ``ebm.sample`` uses its NUTS adapter then; :func:`resolve_kernel` still returns
  MALA for a pure step);
* all-binary sites: block Gibbs (colours declared on the sites, or found from the interaction
  graph of ``probe``; gradient conditionals where ``affine`` says the energy is affine in each
  unit, exact energy differences otherwise);
* categorical sites: block Gibbs too (their q conditional logits are always available: from
  ``logits_fn``, one gradient with respect to the one-hot encoding, else exact differences),
  in the Gibbs block of a composite when other kinds are present;
* mixed sites: a composite (:mod:`ebm_ppl.kernels.composite`): one block-Gibbs block holding
  the binary sites whose conditionals are exact and cheap (energy affine in each unit, or
  declared blocks) together with the real-valued sites declared as Gibbs blocks (Gaussian
  conditionals, e.g. the visible layer of a Gaussian–Bernoulli RBM: ``v | h`` Gaussian,
  ``h | v`` Bernoulli); a GWG block for the other binary sites; a MALA block (``"ula"`` with
  ``continuous_kernel="ula"``) for the remaining continuous sites.

A named kernel that cannot move one of the sites is refused with a ``ValueError`` naming the
site and the kernels that can (``"mala"``/``"ula"`` move continuous sites only; ``"gwg"``,
``"dula"`` and ``"dmala"`` binary and categorical ones; ``"gibbs"`` binary and categorical
sites and real sites declared as Gibbs blocks).

Examples:
    >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
    >>> from ebm_ppl.models import rbm
    >>> plan = ebm.EnergyModel(rbm.model, 3, 2, visible="gaussian").plan
    >>> auto_kernel_name(plan), auto_kernel_name(plan, sites=("h",))
    ('gibbs', 'gibbs')
    >>> s = resolve_kernel("auto", plan=plan)
    >>> s.name, s.blocks
    ('gibbs', (('v', 'h'),))
    >>> resolve_kernel("mala", plan=plan)
    Traceback (most recent call last):
    ...
    ValueError: kernel 'mala' cannot move site 'h' (binary); kernels that can: 'auto', 'dmala', 'dula', 'gibbs', 'gwg'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_ppl.kernels import compact, composite, dlangevin, gibbs, gwg
from ebm_ppl.kernels.gibbs import categorical_interaction_colouring, interaction_colouring

__all__ = [
    "DEFAULT_STEP_SIZE",
    "KERNEL_MODULES",
    "KERNEL_MOVES",
    "Sampler",
    "auto_kernel_name",
    "gaussian_sites",
    "kernel_name",
    "resolve_kernel",
]

#: kernel names -> module of :mod:`ebm_ppl.kernels`.
KERNEL_MODULES: dict[str, str] = {
    "dmala": "ebm_ppl.kernels.dlangevin",
    "dula": "ebm_ppl.kernels.dlangevin",
    "gibbs": "ebm_ppl.kernels.gibbs",
    "gwg": "ebm_ppl.kernels.gwg",
    "mala": "ebm_ppl.kernels.mala",
    "ula": "ebm_ppl.kernels.ula",
}
#: names accepted by :func:`resolve_kernel` besides modules and kernel objects.
KERNEL_NAMES: tuple[str, ...] = ("auto", *sorted(KERNEL_MODULES), "swendsen_wang")
# Kernels whose transition takes a step size (Langevin); the default when none is given.
_STEP_SIZE_KERNELS = ("mala", "ula")
DEFAULT_STEP_SIZE = 0.01
# Discrete Langevin kernels (step size α) and their default α (Zhang et al. use 0.1 to 2).
_DISCRETE_STEP_SIZE_KERNELS = ("dula", "dmala")
DEFAULT_DISCRETE_STEP_SIZE = 0.5
_PURPOSES = ("train", "sample")
# Which kinds of site each named kernel moves ("gaussian": a real site declared as a block).
KERNEL_MOVES: dict[str, tuple[str, ...]] = {
    "mala": ("continuous", "gaussian"),
    "ula": ("continuous", "gaussian"),
    "gibbs": ("binary", "categorical", "gaussian"),
    "gwg": ("binary", "categorical"),
    "dula": ("binary", "categorical"),
    "dmala": ("binary", "categorical"),
    "auto": ("continuous", "gaussian", "binary", "categorical"),
    # a binary or categorical site that declares its lattice (infer={"lattice": ...})
    "swendsen_wang": ("lattice",),
}


class Sampler(NamedTuple):
    """A resolved kernel: pure ``init`` and ``step`` functions for one chain.

    Attributes:
        init: ``init(position, energy_fn) -> state``; ``position`` a dict site -> array (for
            modules and objects given by the user, whatever their ``init`` takes), the state
            has ``position`` and ``energy`` fields.
        step: ``step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None)
            -> (state, info)``; ``info`` has ``acceptance_rate``, ``is_accepted``,
            ``is_divergent``. ``step_size``/``inverse_mass_matrix`` (dynamic) override the
            bound ones of step-size kernels and are ignored by the others.
        name: ``"mala"``, ``"ula"``, ``"gibbs"``, ``"gwg"``, ``"composite"`` or the module's name.
        uses_step_size: whether ``step`` uses a step size (what an adaptation may tune).
        blocks: the sites each block moves, in order (one block for a single kernel; empty
            when resolved without a plan).
        block_names: the kernel name of each block (``("gibbs", "mala")`` for a composite).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> s = resolve_kernel("mala", step_size=0.1)
        >>> energy_fn = lambda x: 0.5 * jnp.sum(x**2)
        >>> state, info = s.step(jax.random.PRNGKey(0), s.init(jnp.zeros(2), energy_fn), energy_fn)
        >>> state.position.shape, s.uses_step_size
        ((2,), True)
    """

    init: Callable[..., Any]
    step: Callable[..., tuple[Any, Any]]
    name: str
    uses_step_size: bool = False
    blocks: tuple[tuple[str, ...], ...] = ()
    block_names: tuple[str, ...] = ()


def kernel_name(kernel: Any) -> str:
    """The lower-case name of a kernel given by name, module or object.

    Examples:
        >>> from ebm_ppl.kernels import mala
        >>> kernel_name("MALA"), kernel_name(mala)
        ('mala', 'mala')
    """
    if isinstance(kernel, str):
        return kernel.lower()
    name = getattr(kernel, "__name__", type(kernel).__name__)
    return name.rsplit(".", 1)[-1].lower()


def check_kernel(kernel: Any) -> None:
    """Check a ``kernel=`` argument before anything is built (name, module or object).

    Raises:
        ValueError: for an unknown name.
        TypeError: for an object without ``init``/``build_kernel``.

    Examples:
        >>> check_kernel("auto"); check_kernel("gibbs")
        >>> check_kernel("hmc")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: kernel must be one of ['auto', 'dmala', 'dula', 'gibbs', 'gwg', ...] or a kernel module, got 'hmc'
    """
    if kernel is None:
        return
    if isinstance(kernel, str):
        if kernel.lower() not in KERNEL_NAMES:
            raise ValueError(
                f"kernel must be one of {list(KERNEL_NAMES)} or a kernel module, got {kernel!r}"
            )
    elif not (
        callable(getattr(kernel, "init", None)) and callable(getattr(kernel, "build_kernel", None))
    ):
        raise TypeError(
            "kernel must be a name, a module of ebm_ppl.kernels or an object with "
            f"init(position, energy_fn) and build_kernel(**options), got {type(kernel).__name__}"
        )


# ------------------------------------------------------------------------------ the plan
def _site_kind(plan: Any, name: str) -> str:
    """``"continuous"``, ``"gaussian"`` (a real site declared as a Gibbs block), ``"binary"``,
    or the plan's kind for what no kernel here moves."""
    spec = plan[name]
    if spec.kind == "continuous":
        declared = getattr(spec, "blocks", None) is not None
        return (
            "gaussian" if declared and not getattr(spec, "is_constrained", False) else "continuous"
        )
    return str(spec.kind)


def _kinds(plan: Any, sites: tuple[str, ...]) -> dict[str, str]:
    state = tuple(getattr(plan, "state_sites", ()))
    unknown = [n for n in sites if n not in state]
    if unknown:
        raise ValueError(f"sites {unknown} are not state sites of the model {list(state)}")
    kinds = {n: _site_kind(plan, n) for n in sites}
    for n, k in kinds.items():
        if k not in ("continuous", "gaussian", "binary", "categorical"):
            raise ValueError(
                f"site {n!r} is {k}: no kernel of ebm_ppl.kernels moves it (continuous, "
                "binary and categorical sites only)"
            )
    return kinds


def _affine_of(affine: bool | Mapping[str, bool] | None, name: str) -> bool | None:
    if affine is None or isinstance(affine, bool):
        return affine
    value = affine.get(name)
    return None if value is None else bool(value)


def auto_kernel_name(
    plan: Any,
    sites: Iterable[str] | None = None,
    *,
    purpose: str = "train",
    affine: bool | Mapping[str, bool] | None = None,
) -> str:
    """What ``kernel="auto"`` resolves to for ``sites`` of ``plan``.

    Args:
        plan: the model's site plan (``EnergyModel.plan``; read by duck typing).
        sites: the state sites to move (default: every state site).
        purpose: ``"train"`` (chains inside a training loop) or ``"sample"`` (``ebm.sample``).
        affine: per binary site, whether the energy is affine in each unit
            (``EnergyModel.affine_sites``); ``None`` when unknown.

    Returns:
        ``"nuts"`` (all continuous, ``purpose="sample"``; NumPyro's NUTS, not a pure kernel),
        ``"mala"`` (all continuous, training), ``"gibbs"`` (all binary, or binary sites with
        exact conditionals plus real sites declared as Gaussian Gibbs blocks), or
        ``"composite"``.

    Raises:
        ValueError: for an unknown site or one no kernel moves (categorical, other discrete).

    Examples:
        >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     b = numpyro.sample("b", ebm.Bits(2))
        ...     ebm.energy("E", jnp.sum((x - b) ** 2))
        >>> plan = ebm.EnergyModel(m).plan
        >>> auto_kernel_name(plan, ["x"], purpose="sample"), auto_kernel_name(plan)
        ('nuts', 'composite')
    """
    if purpose not in _PURPOSES:
        raise ValueError(f"purpose must be one of {_PURPOSES}, got {purpose!r}")
    names = tuple(plan.state_sites if sites is None else sites)
    return _auto_blocks(plan, names, affine, purpose)[0]


def _auto_blocks(
    plan: Any, names: tuple[str, ...], affine: Any, purpose: str
) -> tuple[str, list[tuple[str, tuple[str, ...]]]]:
    """``(name, [(kernel, sites), ...])`` chosen by ``"auto"``."""
    kinds = _kinds(plan, names)
    binary = tuple(n for n in names if kinds[n] == "binary")
    categorical = tuple(n for n in names if kinds[n] == "categorical")
    gaussian = tuple(n for n in names if kinds[n] == "gaussian")
    cont = tuple(n for n in names if kinds[n] == "continuous")
    if not binary and not categorical:
        return ("nuts" if purpose == "sample" else "mala"), [("mala", names)]
    if not cont and not gaussian:
        return "gibbs", [("gibbs", names)]
    declared = {n: getattr(plan[n], "blocks", None) is not None for n in binary + categorical}
    # categorical units always have exact conditionals (logits_fn or energy differences)
    exact = tuple(
        n
        for n in names
        if n in categorical or (n in binary and (_affine_of(affine, n) is not False or declared[n]))
    )
    gwg_sites = tuple(n for n in binary if n not in exact)
    # Gaussian blocks share the Gibbs sweep only with binary sites that declare their colours
    # too (colours of one sweep must be consistent); otherwise they go to the Langevin block.
    gibbs_gauss = gaussian if exact and all(declared[n] for n in exact) else ()
    langevin = tuple(n for n in names if n in cont or (n in gaussian and n not in gibbs_gauss))
    blocks: list[tuple[str, tuple[str, ...]]] = []
    if exact:
        blocks.append(("gibbs", tuple(n for n in names if n in exact or n in gibbs_gauss)))
    if gwg_sites:
        blocks.append(("gwg", gwg_sites))
    if langevin:
        blocks.append(("mala", langevin))
    if len(blocks) == 1:
        return blocks[0][0], blocks
    return "composite", blocks


def _refuse(name: str, kinds: Mapping[str, str]) -> None:
    movable = KERNEL_MOVES.get(name)
    if movable is None:
        return
    for site, kind in kinds.items():
        if kind in movable:
            continue
        can = sorted(k for k, moves in KERNEL_MOVES.items() if kind in moves)
        what = {
            "continuous": "continuous, with no Gaussian Gibbs block declared "
            "(infer={'blocks': ...})",
        }.get(kind, kind)
        raise ValueError(
            f"kernel {name!r} cannot move site {site!r} ({what}); kernels that can: "
            + ", ".join(repr(k) for k in can)
        )


# ------------------------------------------------------------------------------ builders
def _langevin(module: Any, name: str, step_size: Any, options: Mapping[str, Any]) -> Sampler:
    if step_size is None:
        step_size = DEFAULT_STEP_SIZE
    _check_step_size(step_size)
    transition = module.build_kernel(**dict(options))
    default = float(step_size)

    def step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None):
        eps = default if step_size is None else step_size
        if inverse_mass_matrix is None:
            return transition(rng_key, state, energy_fn, eps)
        return transition(rng_key, state, energy_fn, eps, inverse_mass_matrix)

    return Sampler(module.init, step, name, True)


def _check_step_size(step_size: Any) -> None:
    if isinstance(step_size, jax.core.Tracer):
        return
    try:
        ok = bool(np.isfinite(step_size)) and float(step_size) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")


def _no_step_size(transition: Callable[..., Any]) -> Callable[..., Any]:
    def step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None):
        del step_size, inverse_mass_matrix
        return transition(rng_key, state, energy_fn)

    return step


def _gwg(levels: Mapping[str, tuple[float, float]], options: Mapping[str, Any]) -> Sampler:
    options = dict(options)
    levels = dict(options.pop("levels", levels))
    transition = gwg.build_kernel(levels=levels, **options)
    return Sampler(gwg.init, _no_step_size(transition), "gwg")


def _dlangevin(name: str, step_size: Any, options: Mapping[str, Any]) -> Sampler:
    """DULA (``"dula"``) or DMALA (``"dmala"``): a step size ``α``, dynamic like Langevin's."""
    if step_size is None:
        step_size = DEFAULT_DISCRETE_STEP_SIZE
    _check_step_size(step_size)
    transition = dlangevin.build_kernel(adjusted=name == "dmala", **dict(options))
    default = float(step_size)

    def step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None):
        del inverse_mass_matrix
        return transition(rng_key, state, energy_fn, default if step_size is None else step_size)

    return Sampler(dlangevin.init, step, name, True)


def _discrete_options(
    plan: Any, sites: tuple[str, ...], options: Mapping[str, Any], logits_fn: Any
) -> dict[str, Any]:
    """``levels``/``num_states``/``logits_fn`` of the discrete sites, unless given."""
    opts = dict(options)
    kinds = {n: plan[n].kind for n in sites}
    if "levels" not in opts:
        opts["levels"] = dict(plan.levels(tuple(n for n in sites if kinds[n] == "binary")))
    categorical = tuple(n for n in sites if kinds[n] == "categorical")
    if "num_states" not in opts and categorical:
        opts["num_states"] = {n: int(plan[n].num_states) for n in categorical}
    if "logits_fn" not in opts and logits_fn is not None and categorical:
        opts["logits_fn"] = logits_fn
    return opts


def _gibbs(options: Mapping[str, Any]) -> Sampler:
    missing = [
        k
        for k in ("colours", "levels")
        if k not in options and not (k == "levels" and "num_states" in options)
    ]
    if missing:
        raise ValueError(
            f"kernel 'gibbs' needs {missing} in kernel_options when resolved without the "
            "model's plan (e.g. {'colours': {'s': 0}, 'levels': {'s': (-1.0, 1.0)}})"
        )
    return Sampler(gibbs.init, _no_step_size(gibbs.build_kernel(**dict(options))), "gibbs")


def _colours(
    plan: Any,
    sites: tuple[str, ...],
    binary: tuple[str, ...],
    probe: Any,
    categorical: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Colours of the Gibbs block: declared on every site; else the interaction graph's
    colouring at ``probe``; else one colour per unit (a sequential sweep, exact for any
    energy, at one conditional per unit)."""
    declared = {n: getattr(plan[n], "blocks", None) for n in sites}
    if all(v is not None for v in declared.values()):
        return {n: np.asarray(v) for n, v in declared.items()}
    if categorical:
        # binary and categorical sites coloured apart, colours offset: sites one after another
        out: dict[str, Any] = {}
        if binary:
            out.update(_colours(plan, binary, binary, probe))
        offset = max((int(np.max(c)) + 1 for c in out.values() if np.size(c)), default=0)
        if all(declared[n] is not None for n in categorical):
            cat = {n: normalize_declared(declared[n], plan[n].shape) for n in categorical}
        elif probe is not None:
            energy_fn, position = probe
            cat = categorical_interaction_colouring(
                energy_fn, position, {n: int(plan[n].num_states) for n in categorical}
            )
        else:
            cat, k = {}, 0
            for n in categorical:
                size = int(np.prod(plan[n].shape, dtype=int))
                cat[n] = (k + np.arange(size, dtype=np.int32)).reshape(tuple(plan[n].shape))
                k += size
        for n, c in cat.items():
            out[n] = np.asarray(c) + offset
        return out
    real = [n for n in sites if n not in binary]
    if real:
        undeclared = [n for n, v in declared.items() if v is None]
        raise ValueError(
            f"block Gibbs over real site(s) {real} needs declared blocks on every site; "
            f"{undeclared} declare none (numpyro.sample(name, base, infer={{'blocks': c}}) or "
            "kernel_options={'colours': ...})"
        )
    if probe is not None:
        energy_fn, position = probe
        return interaction_colouring(energy_fn, position, plan.levels(binary))
    out, offset = {}, 0
    for n in binary:
        shape = tuple(plan[n].shape)
        size = int(np.prod(shape, dtype=int))
        out[n] = (offset + np.arange(size, dtype=np.int32)).reshape(shape)
        offset += size
    return out


def normalize_declared(colours: Any, shape: Any) -> np.ndarray:
    """Declared colours of one site, broadcast to its shape and renumbered ``0..K-1``.

    Examples:
        >>> normalize_declared(5, (2,)).tolist()
        [0, 0]
    """
    c, _ = gibbs.normalize_colours({"_": np.asarray(colours)}, {"_": tuple(shape)})
    return c["_"]


def gaussian_sites(probe: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """The sites among ``names`` whose energy is quadratic with constant positive curvature in
    each unit at the probe (two random points): conditionally Gaussian, so block Gibbs can draw
    them exactly. All of them without a probe; none if the probe cannot be evaluated.

    Args:
        probe: ``(energy_fn, position)`` (see :func:`resolve_kernel`) or ``None``.
        names: real-valued sites declared as Gibbs blocks.

    Examples:
        >>> import jax.numpy as jnp
        >>> probe = (lambda p: jnp.sum(p["v"] ** 2) + jnp.sum(p["w"] ** 4), {"v": jnp.zeros(2),
        ...          "w": jnp.zeros(2)})
        >>> gaussian_sites(probe, ("v", "w"))
        ('v',)
    """
    if probe is None or not names:
        return names
    energy_fn, position = probe

    def curvature(key):
        pos = {n: jnp.asarray(v) for n, v in position.items()}
        for i, n in enumerate(names):
            pos[n] = 3.0 * jax.random.normal(jax.random.fold_in(key, i), jnp.shape(pos[n]))
        sub = {n: pos[n] for n in names}
        rest = {n: v for n, v in pos.items() if n not in sub}
        f = lambda s: energy_fn({**rest, **s})  # noqa: E731
        return jax.jvp(jax.grad(f), (sub,), (jax.tree.map(jnp.ones_like, sub),))[1]

    try:
        with jax.ensure_compile_time_eval():
            fn = jax.jit(curvature)
            a1 = jax.device_get(fn(jax.random.PRNGKey(1)))
            a2 = jax.device_get(fn(jax.random.PRNGKey(2)))
    except Exception:  # noqa: BLE001  (not evaluable at the probe: not a Gaussian block)
        return ()
    return tuple(
        n
        for n in names
        if np.all(np.isfinite(a1[n]))
        and np.all(np.asarray(a1[n]) > 0)
        and np.allclose(a1[n], a2[n], rtol=1e-4, atol=1e-6)
    )


def _gibbs_for(
    plan: Any,
    sites: tuple[str, ...],
    kinds: Mapping[str, str],
    affine: Any,
    probe: Any,
    options: Mapping[str, Any],
    logits_fn: Any = None,
) -> Sampler:
    binary = tuple(n for n in sites if kinds[n] == "binary")
    gaussian = tuple(n for n in sites if kinds[n] == "gaussian")
    categorical = tuple(n for n in sites if kinds[n] == "categorical")
    opts = dict(options)
    if "levels" not in opts:
        opts["levels"] = dict(plan.levels(binary))
    if "affine" not in opts:
        opts["affine"] = {n: bool(_affine_of(affine, n)) for n in binary}
    if "gaussian" not in opts:
        opts["gaussian"] = gaussian
    if categorical:
        cat_opts = _discrete_options(plan, categorical, opts, logits_fn)
        opts["num_states"] = cat_opts.get("num_states", {})
        if "logits_fn" in cat_opts:
            opts["logits_fn"] = cat_opts["logits_fn"]
    if "colours" not in opts:
        opts["colours"] = _colours(plan, sites, binary, probe, categorical)
    return _gibbs(opts)._replace(blocks=(sites,), block_names=("gibbs",))


def _split_options(
    options: Mapping[str, Any], names: Iterable[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``kernel_options`` as ``({kernel: options}, flat options)``."""
    names = set(names) | set(KERNEL_MODULES)
    nested = {k: dict(v) for k, v in options.items() if k in names and isinstance(v, Mapping)}
    flat = {k: v for k, v in options.items() if k not in nested}
    return nested, flat


def _compact_for(
    plan: Any,
    names: tuple[str, ...],
    name: str,
    affine: Any,
    purpose: str,
    options: Mapping[str, Any],
) -> Sampler | None:
    """The compact lattice kernel for ``name`` on ``names`` (:mod:`ebm_ppl.kernels.compact`),
    or ``None`` where the generic resolution applies (``"gibbs"`` on a site without a declared
    lattice, or one the compact heat bath cannot run: same distribution either way)."""
    if name == "auto":
        if _auto_blocks(plan, names, affine, purpose)[0] != "gibbs":
            return None
        name = "gibbs"
    if name not in compact.METHODS:
        return None
    declared = [n for n in names if getattr(plan[n], "lattice", None) is not None]
    if name == "swendsen_wang":
        undeclared = [n for n in names if n not in declared]
        if undeclared:
            _refuse(name, {undeclared[0]: _site_kind(plan, undeclared[0])})
        if len(names) != 1:
            raise ValueError(
                f"kernel 'swendsen_wang' moves one lattice site, got sites {list(names)}"
            )
    elif len(names) != 1 or not declared:
        return None
    site = names[0]
    spec = plan[site]
    lat = spec.lattice
    want = {
        "ising": "binary with support {-1, 1}",
        "potts": f"categorical with q = {lat.num_states}",
    }
    ok = (lat.kind == "ising" and spec.levels == (-1.0, 1.0)) or (
        lat.kind == "potts" and spec.kind == "categorical" and spec.num_states == lat.num_states
    )
    if not ok or tuple(lat.shape) != tuple(spec.shape):
        raise ValueError(
            f"site {site!r} declares a {lat.kind} lattice of shape {tuple(lat.shape)}, which "
            f"needs a site of that shape {want.get(lat.kind, '')}; the site is {spec.kind} of "
            f"shape {tuple(spec.shape)}"
        )
    try:
        compact.check(name, lat)
    except ValueError:
        if name == "gibbs":
            return None  # the generic block Gibbs kernel: the same stationary distribution
        raise
    init, step = compact.build(
        name, lat.kind, site=site, num_states=lat.num_states, dtype=spec.dtype, **dict(options)
    )
    return Sampler(init, step, name, False, ((site,),), (name,))


def resolve_kernel(
    kernel: Any = "auto",
    *,
    plan: Any = None,
    sites: Iterable[str] | None = None,
    purpose: str = "train",
    step_size: Any = None,
    kernel_options: Mapping[str, Any] | None = None,
    affine: bool | Mapping[str, bool] | None = None,
    probe: tuple[Callable[[Any], jax.Array], Mapping[str, Any]] | None = None,
    continuous_kernel: str = "mala",
    logits_fn: Callable[..., jax.Array] | None = None,
    compact: bool = False,
) -> Sampler:
    """Turn a kernel name, ``"auto"`` or a kernel module into a :class:`Sampler`.

    Args:
        kernel: ``"auto"``, ``"gibbs"``, ``"gwg"``, ``"mala"``, ``"ula"``, a kernel module of
            :mod:`ebm_ppl.kernels`, or any object with ``init(position, energy_fn)`` and
            ``build_kernel(**options)``.
        plan: the model's site plan (``EnergyModel.plan``). Needed for ``"auto"``; with it a
            named kernel is checked against the sites it must move, and Gibbs/GWG options
            (levels, declared blocks, Gaussian blocks) come from the plan. Without it, the
            options must be given in ``kernel_options``.
        sites: the state sites the chains move (default: every state site of ``plan``); the
            positions given to ``init`` hold these (other sites of the energy are bound by
            the caller). Continuous sites are expected on their unconstrained space (the
            objectives pass ``EnergyModel.potential_fn``), discrete sites as floats
            (``plan.to_kernel``).
        purpose: ``"train"`` or ``"sample"``: only changes :func:`auto_kernel_name`'s answer
            for all-continuous sites (``"nuts"`` for sampling); the pure step is MALA.
        step_size: step size of Langevin kernels and of the Langevin block of a composite
            (default 0.01; the ``step`` of the :class:`Sampler` may override it dynamically).
        kernel_options: options for ``build_kernel``. For a composite, a dict kernel name ->
            options (e.g. ``{"gibbs": {...}, "mala": {"max_delta_energy": 100.0}}``); for a
            single kernel, its options (``colours``, ``affine``, ``clip_grad_norm``, ...).
        affine: per binary site, whether the energy is affine in each unit
            (``EnergyModel.affine_sites``; one gradient gives every Gibbs conditional). Unknown
            (``None``): exact energy differences for Gibbs, and ``"auto"`` keeps binary sites
            in the Gibbs block.
        probe: ``(energy_fn, position)``: the energy of one whole position (kernel space) at
            representative parameters, and such a position. Used, when given, to colour binary
            units without declared blocks (Hessian sparsity) and to check that real sites
            declared as Gibbs blocks are conditionally Gaussian (else they get MALA).
        continuous_kernel: ``"mala"`` (default) or ``"ula"``: the kernel ``"auto"`` uses for
            continuous sites (the replay-buffer objective uses ULA).
        logits_fn: ``logits_fn(energy_fn, position, num_states) -> (energy, {site: logits})``,
            the conditional logits ``site_shape + (q,)`` of categorical sites, for Gibbs, GWG,
            DULA and DMALA (``ebm_ppl.energy.conditionals.categorical_value_and_logits`` with
            the model's ``categorical_affine_sites``); default exact energy differences.
        compact: on one site that declares its lattice (``plan[site].lattice``,
            :class:`ebm_ppl.Lattice`), ``"gibbs"`` (and ``"auto"`` where it picks Gibbs) give
            the compact checkerboard heat bath (:mod:`ebm_ppl.kernels.compact`) when the
            lattice allows it (periodic, ``L x L``, ``L`` even), and ``"swendsen_wang"`` the
            cluster kernel. Their ``energy_fn`` is then the lattice's
            :class:`~ebm_ppl.kernels.compact.LatticeEnergy` (they read ``β``, ``J``, ``h``, not
            an energy function), so only callers that build it ask for them (``ebm.sample``);
            ``"swendsen_wang"`` needs ``compact=True``.

    Returns:
        :class:`Sampler`; ``name`` is the kernel's name or ``"composite"``.

    Raises:
        ValueError: an unknown kernel name or purpose; ``"auto"`` without a plan; a named
            kernel that cannot move one of the sites (the message names the site and the
            kernels that can); a site no kernel moves; a non-positive step size; Gibbs
            options missing without a plan.
        TypeError: for an object without ``init``/``build_kernel``.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Flat(2))
        ...     b = numpyro.sample("b", ebm.Bits(2))
        ...     ebm.energy("E", jnp.sum(x**2) - x @ b)     # affine in each bit
        >>> em = ebm.EnergyModel(m)
        >>> s = resolve_kernel("auto", plan=em.plan, affine=em.affine_sites, step_size=0.2)
        >>> s.name, s.blocks, s.block_names
        ('composite', (('b',), ('x',)), ('gibbs', 'mala'))
        >>> energy_fn = em.potential_fn({})
        >>> state = s.init({"x": jnp.zeros(2), "b": jnp.zeros(2)}, energy_fn)
        >>> state, info = s.step(jax.random.PRNGKey(0), state, energy_fn)
        >>> sorted(state.position), info.block_acceptance.shape
        (['b', 'x'], (2,))
    """
    check_kernel(kernel)
    if purpose not in _PURPOSES:
        raise ValueError(f"purpose must be one of {_PURPOSES}, got {purpose!r}")
    if continuous_kernel not in _STEP_SIZE_KERNELS:
        raise ValueError(
            f"continuous_kernel must be one of {_STEP_SIZE_KERNELS}, got {continuous_kernel!r}"
        )
    if step_size is not None:
        _check_step_size(step_size)
    options = dict(kernel_options or {})
    name = kernel_name("auto" if kernel is None else kernel)
    if plan is None:
        if name == "auto":
            raise ValueError("kernel='auto' needs the model's plan (plan=EnergyModel(...).plan)")
        return _resolve_plain(kernel, name, step_size, options)
    names = tuple(plan.state_sites if sites is None else sites)
    if not isinstance(kernel, str):
        return _resolve_plain(kernel, name, step_size, options)._replace(blocks=(names,))
    kinds = _kinds(plan, names)
    if compact or name == "swendsen_wang":
        lattice_sampler = _compact_for(plan, names, name, affine, purpose, options)
        if lattice_sampler is not None and not compact:
            raise ValueError(
                "kernel 'swendsen_wang' reads the declared lattice's beta, coupling and field, "
                "not an energy function: run it with ebm.sample(kernel='swendsen_wang') "
                "(resolve_kernel(..., compact=True))"
            )
        if lattice_sampler is not None:
            return lattice_sampler
    _refuse(name, kinds)
    if name == "auto":
        _, chosen = _auto_blocks(plan, names, affine, purpose)
        in_gibbs = tuple(n for k, s in chosen if k == "gibbs" for n in s if kinds[n] == "gaussian")
        gauss_ok = gaussian_sites(probe, in_gibbs)
        if len(gauss_ok) < len(in_gibbs):
            # a declared real block that is not conditionally Gaussian: Langevin moves it
            kinds = {
                n: ("continuous" if n in in_gibbs and n not in gauss_ok else k)
                for n, k in kinds.items()
            }
            chosen = _regroup(chosen, kinds)
        chosen = [(continuous_kernel if k == "mala" else k, s) for k, s in chosen]
    else:
        chosen = [(name, names)]
        if name == "gibbs":
            bad = [
                n for n in names if kinds[n] == "gaussian" and n not in gaussian_sites(probe, (n,))
            ]
            if bad:
                raise ValueError(
                    f"kernel 'gibbs' cannot move site {bad[0]!r}: it is declared as a Gibbs block "
                    "but its energy is not quadratic with positive curvature in each unit (not "
                    "conditionally Gaussian); kernels that can: 'auto', 'mala', 'ula'"
                )
    nested, flat = _split_options(options, (k for k, _ in chosen))
    if len(chosen) > 1 and flat:
        raise ValueError(
            f"kernel_options {sorted(flat)} are ambiguous for a composite of "
            f"{[k for k, _ in chosen]}: nest them by kernel name, e.g. "
            "{'mala': {'max_delta_energy': 100.0}}"
        )
    samplers = []
    for k, block_sites in chosen:
        opts = {**(flat if len(chosen) == 1 else {}), **nested.get(k, {})}
        if k in _STEP_SIZE_KERNELS:
            module = importlib.import_module(KERNEL_MODULES[k])
            sub = _langevin(module, k, step_size, opts)
        elif k == "gwg":
            sub = _gwg(
                plan.levels(block_sites), _discrete_options(plan, block_sites, opts, logits_fn)
            )
        elif k in _DISCRETE_STEP_SIZE_KERNELS:
            sub = _dlangevin(k, step_size, _discrete_options(plan, block_sites, opts, logits_fn))
        else:
            sub = _gibbs_for(plan, block_sites, kinds, affine, probe, opts, logits_fn)
        samplers.append(sub._replace(blocks=(block_sites,), block_names=(k,)))
    if len(samplers) == 1:
        return samplers[0]
    blocks = [(s.blocks[0], s) for s in samplers]
    step = composite.build_kernel(blocks=blocks)
    return Sampler(
        composite.init,
        step,
        "composite",
        any(s.uses_step_size for s in samplers),
        tuple(s.blocks[0] for s in samplers),
        tuple(s.name for s in samplers),
    )


def _regroup(
    chosen: list[tuple[str, tuple[str, ...]]], kinds: Mapping[str, str]
) -> list[tuple[str, tuple[str, ...]]]:
    """Move sites that became ``"continuous"`` from Gibbs blocks to the Langevin block."""
    moved = [n for k, s in chosen if k == "gibbs" for n in s if kinds[n] == "continuous"]
    out = []
    for k, s in chosen:
        if k == "gibbs":
            s = tuple(n for n in s if n not in moved)
        if k == "mala":
            s = s + tuple(moved)
            moved = []
        if s:
            out.append((k, s))
    if moved:
        out.append(("mala", tuple(moved)))
    return out


def _resolve_plain(kernel: Any, name: str, step_size: Any, options: dict[str, Any]) -> Sampler:
    """A name or module without a plan: the options come from ``kernel_options``."""
    if isinstance(kernel, str):
        if name == "gibbs":
            return _gibbs(options)._replace(block_names=("gibbs",))
        if name == "gwg":
            if "levels" not in options and "num_states" not in options:
                raise ValueError(
                    "kernel 'gwg' needs kernel_options={'levels': {site: (lo, hi)}} or "
                    "{'num_states': {site: q}}"
                )
            return _gwg(options.get("levels", {}), options)._replace(block_names=("gwg",))
        if name in _DISCRETE_STEP_SIZE_KERNELS:
            if "levels" not in options and "num_states" not in options:
                raise ValueError(
                    f"kernel {name!r} needs kernel_options={{'levels': {{site: (lo, hi)}}}} or "
                    "{'num_states': {site: q}}"
                )
            return _dlangevin(name, step_size, options)._replace(block_names=(name,))
        kernel = importlib.import_module(KERNEL_MODULES[name])
    if name in _STEP_SIZE_KERNELS:
        return _langevin(kernel, name, step_size, options)._replace(block_names=(name,))
    transition = kernel.build_kernel(**options)
    if step_size is None:
        return Sampler(kernel.init, _no_step_size(transition), name, False, (), (name,))
    default = float(step_size)

    def step(rng_key, state, energy_fn, step_size=None, inverse_mass_matrix=None):
        del inverse_mass_matrix
        return transition(rng_key, state, energy_fn, default if step_size is None else step_size)

    return Sampler(kernel.init, step, name, True, (), (name,))
