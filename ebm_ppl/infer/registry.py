"""Kernels selectable by name in :func:`ebm_ppl.sample` (``kernel="nuts"``, ``"mala"``, ...).

Each name maps to a factory ``(model, params) -> MCMCKernel`` and, when registered with
``moves=``, to the kinds of state site the kernel can move (the kinds of
:class:`~ebm_ppl.energy.plan.SitePlan`: ``"continuous"``, ``"binary"``, ``"categorical"``,
``"discrete"``, plus ``"gaussian-block"``: a real-valued site declared as a Gibbs block,
``infer={"blocks": ...}``, and ``"lattice"``: a binary or categorical site that declares its
nearest-neighbour lattice, ``infer={"lattice": ebm.Lattice...}``). :func:`check_kernel_moves`
refuses a named kernel that cannot move a site of a model, before anything compiles, naming
the site and the kernels that can.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from numpyro.distributions import constraints

from ebm_ppl.energy.plan import SitePlan, SiteSpec
from ebm_ppl.kernels.resolve import KERNEL_MOVES

__all__ = [
    "available_kernels",
    "check_kernel_moves",
    "get_kernel_factory",
    "kernels_for_site",
    "register_kernel",
    "site_tags",
]

KernelFactory = Callable[[Callable[..., Any], dict[str, Any]], Any]

_FACTORIES: dict[str, KernelFactory] = {}
_MOVES: dict[str, frozenset[str]] = {}
_TAGS = ("continuous", "binary", "categorical", "discrete", "gaussian-block", "lattice")
_CONTINUOUS = frozenset({"continuous"})
# What the library's own kernels move (a re-registration with moves= overrides it): the pure
# kernels' table of the one kernel resolution, plus the NumPyro-only kernels.
_BUILTIN_MOVES: dict[str, frozenset[str]] = {
    "nuts": _CONTINUOUS,
    "hmc": _CONTINUOUS,
    "sgld": _CONTINUOUS,
    **{
        name: frozenset("gaussian-block" if kind == "gaussian" else kind for kind in kinds)
        for name, kinds in KERNEL_MOVES.items()
        if name != "auto"
    },
    "composite": frozenset({"continuous", "binary", "categorical", "gaussian-block"}),
}

# Modules that register kernels when imported; imported lazily on the first lookup so that
# ``import ebm_ppl`` stays cheap.
_KERNEL_MODULES: tuple[str, ...] = (
    "ebm_ppl.infer.hmc",
    "ebm_ppl.infer.langevin",
    "ebm_ppl.infer.discrete",
    "ebm_ppl.infer.composite",
    "ebm_ppl.infer.lattice",
)


def register_kernel(
    name: str, factory: KernelFactory, *, moves: Iterable[str] | None = None
) -> None:
    """Make ``ebm_ppl.sample(kernel=name)`` build its kernel with ``factory(model, params)``.

    Args:
        name: lower-case kernel name.
        factory: ``factory(model, params) -> numpyro.infer.mcmc.MCMCKernel``.
        moves: the kinds of state site the kernel moves (see the module docstring); ``None``
            keeps what is known of the library's own names and otherwise skips the check of
            :func:`check_kernel_moves`.

    Raises:
        TypeError: an empty or non-str ``name``.
        ValueError: an unknown kind in ``moves``.

    Examples:
        >>> from numpyro.infer import HMC
        >>> register_kernel("hmc-short", lambda model, params: HMC(model, num_steps=4),
        ...                 moves=["continuous"])
        >>> "hmc-short" in available_kernels()
        True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if moves is not None:
        moves = frozenset(moves)
        unknown = sorted(moves - set(_TAGS))
        if unknown:
            raise ValueError(f"moves has unknown kind(s) {unknown}; known kinds are {list(_TAGS)}")
        _MOVES[name.lower()] = moves
    _FACTORIES[name.lower()] = factory


def site_tags(spec: SiteSpec) -> frozenset[str]:
    """The kinds a kernel must be able to move for the state site ``spec``.

    Examples:
        >>> import numpyro, ebm_ppl as ebm
        >>> def m():
        ...     x = numpyro.sample("x", ebm.Flat(2), infer={"blocks": 0})
        ...     ebm.energy("E", (x**2).sum())
        >>> sorted(site_tags(ebm.EnergyModel(m).plan["x"]))
        ['continuous', 'gaussian-block']
    """
    tags = {spec.kind}
    if spec.kind == "continuous" and spec.blocks is not None and not spec.is_constrained:
        tags.add("gaussian-block")
    if getattr(spec, "lattice", None) is not None and spec.kind in ("binary", "categorical"):
        tags.add("lattice")  # a declared lattice (infer={"lattice": ...}): Swendsen–Wang too
    return frozenset(tags)


def kernels_for_site(spec: SiteSpec) -> tuple[str, ...]:
    """Registered kernel names that can move the state site ``spec`` (sorted).

    Examples:
        >>> import numpyro, ebm_ppl as ebm
        >>> def m():
        ...     s = numpyro.sample("s", ebm.Spins(3))
        ...     ebm.energy("E", -(s[1:] * s[:-1]).sum())
        >>> kernels_for_site(ebm.EnergyModel(m).plan["s"])
        ('composite', 'dmala', 'dula', 'gibbs', 'gwg')
    """
    _load()
    tags = site_tags(spec)
    return tuple(sorted(n for n in _FACTORIES if (moves := _moves(n)) is not None and moves & tags))


def _moves(name: str) -> frozenset[str] | None:
    key = name.lower()
    return _MOVES.get(key, _BUILTIN_MOVES.get(key))


def _can_move(name: str, spec: SiteSpec) -> bool:
    moves = _moves(name)
    return moves is None or bool(moves & site_tags(spec))


def _describe(spec: SiteSpec) -> str:
    if spec.support_values is not None:
        values = ", ".join(f"{v:g}" for v in spec.support_values)
        return f"{spec.kind} with support {{{values}}}"
    support = spec.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return f"{spec.kind} ({support})"


def check_kernel_moves(
    name: str, plan: SitePlan, sites: Iterable[str] | None = None, *, argument: str = "kernel"
) -> None:
    """Refuse the kernel ``name`` if it cannot move one of the state sites ``sites``.

    Args:
        name: a registered kernel name.
        plan: the model's :class:`~ebm_ppl.energy.plan.SitePlan`.
        sites: the state sites the kernel must move (default: all).
        argument: the argument's name, for messages.

    Raises:
        ValueError: naming the first site the kernel cannot move and the kernels that can
            (``kernel="auto"`` composes kernels for models that mix kinds).

    Examples:
        >>> import numpyro, ebm_ppl as ebm
        >>> def m():
        ...     s = numpyro.sample("s", ebm.Spins(3))
        ...     ebm.energy("E", -(s[1:] * s[:-1]).sum())
        >>> check_kernel_moves("mala", ebm.EnergyModel(m).plan)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: kernel='mala' cannot move site 's', which is binary with support {-1, 1}; ...
    """
    _load()
    names = plan.state_sites if sites is None else tuple(sites)
    for site in names:
        spec = plan[site]
        if _can_move(name, spec):
            continue
        can = kernels_for_site(spec)
        hint = (
            f"kernels that can move it: {', '.join(repr(k) for k in can)}"
            if can
            else "no registered kernel moves it (give an MCMCKernel instance, e.g. NumPyro's "
            "DiscreteHMCGibbs)"
        )
        mixed = any(plan[n].kind == "continuous" for n in names) and any(
            plan[n].is_discrete for n in names
        )
        what = _describe(spec)
        if spec.kind == "continuous" and "gaussian-block" in (_moves(name) or ()):
            what += " with no Gaussian block declared (infer={'blocks': ...})"
        raise ValueError(
            f"{argument}={name!r} cannot move site {site!r}, which is {what}; "
            + hint
            + ("; kernel='auto' composes kernels for models mixing kinds" if mixed else "")
        )


def _load() -> None:
    for module in _KERNEL_MODULES:
        importlib.import_module(module)


def available_kernels() -> tuple[str, ...]:
    """Names accepted by ``ebm_ppl.sample(kernel=...)``.

    Examples:
        >>> "nuts" in available_kernels()
        True
    """
    _load()
    return tuple(sorted(_FACTORIES))


def get_kernel_factory(name: str) -> KernelFactory:
    """Factory registered under ``name``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).

    Examples:
        >>> callable(get_kernel_factory("nuts"))
        True
    """
    _load()
    key = name.lower() if isinstance(name, str) else name
    if key not in _FACTORIES:
        raise ValueError(
            f"kernel must be one of {['auto', *sorted(_FACTORIES)]} or an MCMCKernel, got {name!r}"
        )
    return _FACTORIES[key]
