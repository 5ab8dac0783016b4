"""Products of experts: ``p(x) ∝ Π_k p_k(x)``, i.e. the sum of the experts' energies (Hinton 2002).

Each expert is any EBM program of the zoo (or your own) that declares the shared state site
(``"x"`` by default) with the same base measure; its parameters, energy terms and other state
sites (an RBM's hidden units, say) are renamed ``"e{k}/<name>"`` so that experts never
collide. The product is itself a NumPyro EBM program, so sampling, training (of all experts
jointly), ``log Z`` and the applications all work on it unchanged.

.. math::

    E(x, h_1, \\dots, h_K) = \\sum_k E_k(x, h_k), \\qquad
    p(x) \\propto \\prod_k \\sum_{h_k} e^{-E_k(x, h_k)}.

A product is sharp where every expert agrees: samples fall in the intersection of the
experts' supports.

Examples:
    >>> import jax.numpy as jnp, numpyro, ebm_ppl as ebm
    >>> def bump(center):
    ...     x = numpyro.sample("x", ebm.Flat(2))
    ...     ebm.energy("E", 0.5 * jnp.sum((x - center) ** 2))
    >>> experts = [Expert(bump, (0.0,)), Expert(bump, (2.0,))]
    >>> em = ebm.EnergyModel(product, experts)
    >>> em.state_sites, em.energy_sites
    (('x',), ('e0/E', 'e1/E'))
    >>> float(em.energy({}, {"x": jnp.ones(2)}))     # 1 + 1
    2.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpyro
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform

__all__ = ["Expert", "expert_params", "product", "split_params"]


class Expert(NamedTuple):
    """One factor of a product: a NumPyro EBM program and the arguments it is called with."""

    model: Any
    args: tuple = ()
    kwargs: Mapping[str, Any] = {}


def _check_experts(experts: Any) -> list[Expert]:
    if isinstance(experts, Expert) or not isinstance(experts, Sequence) or len(experts) < 1:
        raise ValueError("experts must be a non-empty sequence of Expert(model, args, kwargs)")
    out = []
    for i, e in enumerate(experts):
        if callable(e):
            e = Expert(e)
        if not isinstance(e, tuple) or not callable(e[0]):
            raise ValueError(f"experts[{i}] must be an Expert(model, args, kwargs) or a model")
        out.append(Expert(*e))
    return out


def _base(expert: Expert, site: str, index: int) -> tuple[Any, dict[str, Any]]:
    # A trace of the expert alone (hidden from the enclosing handlers) finds the site's base
    # measure; its parameters are initialized from a fixed key, never used.
    with handlers.block():
        seeded = handlers.seed(expert.model, jax.random.PRNGKey(0))
        tr = handlers.trace(handlers.substitute(seeded, substitute_fn=init_to_uniform)).get_trace(
            *expert.args, **dict(expert.kwargs)
        )
    msg = tr.get(site)
    if msg is None or msg["type"] != "sample" or msg.get("is_observed"):
        names = [n for n, m in tr.items() if m["type"] == "sample" and not m.get("is_observed")]
        raise ValueError(f"experts[{index}] has no state site {site!r} (its state sites: {names})")
    return msg["fn"], dict(msg.get("infer") or {})


def product(experts: Sequence[Expert | Any], site: str = "x") -> None:
    """The product of ``experts`` as one NumPyro EBM program (state site ``site``).

    Args:
        experts: ``Expert(model, args, kwargs)`` (or bare programs without arguments), each
            declaring the state site ``site``.
        site: the shared state site.

    Raises:
        ValueError: an empty list, an expert without the site, or experts whose base measures
            of the site differ in type or shape (named by index).
    """
    experts = _check_experts(experts)
    bases = [_base(e, site, i) for i, e in enumerate(experts)]
    fn0, infer0 = bases[0]
    for i, (fn, _) in enumerate(bases[1:], start=1):
        if type(fn) is not type(fn0) or fn.shape() != fn0.shape():
            raise ValueError(
                f"experts[{i}] declares {site!r} as {type(fn).__name__}{fn.shape()}, experts[0] "
                f"as {type(fn0).__name__}{fn0.shape()}: the experts must share the state"
            )
    x = numpyro.sample(site, fn0, infer=infer0 or None)
    for k, e in enumerate(experts):
        scoped = f"e{k}/{site}"
        # the shared value is substituted into each expert's own copy of the site, which is
        # then hidden: the base measure counts once, each expert's energy counts once
        with (
            handlers.block(hide=[scoped]),
            handlers.substitute(data={scoped: x}),
            handlers.scope(prefix=f"e{k}"),
        ):
            e.model(*e.args, **dict(e.kwargs))


def expert_params(*params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters of :func:`product` from each expert's own parameters (in expert order).

    Examples:
        >>> expert_params({"a": 1.0}, {"a": 2.0})
        {'e0/a': 1.0, 'e1/a': 2.0}
    """
    return {f"e{k}/{n}": v for k, p in enumerate(params) for n, v in dict(p).items()}


def split_params(params: Mapping[str, Any], num_experts: int) -> list[dict[str, Any]]:
    """Inverse of :func:`expert_params`.

    Examples:
        >>> split_params({"e0/a": 1.0, "e1/a": 2.0}, 2)
        [{'a': 1.0}, {'a': 2.0}]
    """
    out: list[dict[str, Any]] = [{} for _ in range(int(num_experts))]
    for name, v in params.items():
        head, _, rest = name.partition("/")
        if not (head.startswith("e") and head[1:].isdigit()) or int(head[1:]) >= num_experts:
            raise ValueError(
                f"params has {name!r}, not a parameter of experts e0..e{num_experts - 1}"
            )
        out[int(head[1:])][rest] = v
    return out
