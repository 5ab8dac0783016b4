"""Mean-field pieces over binary state sites, shared by the variational ``log Z`` bounds and
the mean-field learning objective.

:class:`BinaryBernoulli` is a product of independent two-level units, :class:`BernoulliMeanField`
the NumPyro guide made of them, and :func:`energy_terms` the energy evaluated at fractional
(mean) values of binary units, without the counting base measure that is ``+inf`` off the
levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
from numpyro import handlers
from numpyro.distributions import Distribution, constraints

from ebm_ppl.energy.base import bits_support, spins_support
from ebm_ppl.energy.model import EnergyModel

__all__ = ["BernoulliMeanField", "BinaryBernoulli", "binary_site_levels", "energy_terms"]

Values = dict[str, jax.Array]


class BinaryBernoulli(Distribution):
    """Independent Bernoulli units on two levels ``{lo, hi}`` (``Bits``: 0/1, ``Spins``: ±1).

    Args:
        logits: logits of ``P(x = hi)``, shape = batch shape.
        low, high: the two levels.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> d = BinaryBernoulli(jnp.zeros(3), -1.0, 1.0)
        >>> sorted(set(d.sample(jax.random.PRNGKey(0), (50,)).ravel().tolist()))
        [-1.0, 1.0]
        >>> round(float(d.log_prob(jnp.ones(3)).sum()), 4)   # 3 log(1/2)
        -2.0794
    """

    arg_constraints = {"logits": constraints.real}
    pytree_data_fields = ("logits",)
    pytree_aux_fields = ("low", "high")
    has_enumerate_support = False

    def __init__(
        self, logits: Any, low: float = 0.0, high: float = 1.0, *, validate_args: bool | None = None
    ):
        self.logits = jnp.asarray(logits)
        self.low, self.high = float(low), float(high)
        super().__init__(
            batch_shape=jnp.shape(self.logits), event_shape=(), validate_args=validate_args
        )

    @property
    def support(self):
        return spins_support if self.low == -1.0 else bits_support

    @property
    def is_discrete(self) -> bool:
        return True

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        on = jax.random.bernoulli(key, jax.nn.sigmoid(self.logits), shape)
        return jnp.where(on, self.high, self.low).astype(jnp.result_type(float))

    def log_prob(self, value):
        on = (jnp.asarray(value) - self.low) / (self.high - self.low)
        # log σ(ℓ)·on + log σ(-ℓ)·(1 - on) = on·ℓ - softplus(ℓ)
        return on * self.logits - jax.nn.softplus(self.logits)

    @property
    def mean(self):
        return self.low + (self.high - self.low) * jax.nn.sigmoid(self.logits)

    def entropy(self):
        p = jax.nn.sigmoid(self.logits)
        return jax.nn.softplus(self.logits) - p * self.logits


def binary_site_levels(em: EnergyModel) -> dict[str, tuple[float, float]]:
    """The two levels ``(lo, hi)`` of every discrete state site, which must all be binary.

    Raises:
        ValueError: for a discrete site that is not binary.

    Examples:
        >>> import ebm_ppl as ebm
        >>> from ebm_ppl.models import ising
        >>> binary_site_levels(ebm.EnergyModel(ising.model, (2, 2)))
        {'s': (-1.0, 1.0)}
    """
    return em.plan.require_binary(who="guide: the mean-field guide", hint="pass guide=")


class BernoulliMeanField:
    """Mean-field guide ``q(x) = Π_i Bernoulli(x_i; σ(ℓ_i))`` over the binary state sites.

    A NumPyro guide (callable with the model's arguments) with one param site
    ``"{site}_logits"`` per binary state site, so it works with ``numpyro.infer.SVI``.

    Args:
        model: the EBM program (or an :class:`ebm_ppl.EnergyModel`).
        *args, **kwargs: the model's arguments (when ``model`` is a program).
        init_logits: initial logits (default 0: uniform).

    Raises:
        ValueError: if a state site is not binary.

    Examples:
        >>> import jax, numpyro, ebm_ppl as ebm
        >>> from ebm_ppl.models import ising
        >>> guide = BernoulliMeanField(ising.model, (2, 2))
        >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(guide, 0)).get_trace()
        >>> tr["s"]["value"].shape, tr["s_logits"]["value"].shape
        ((2, 2), (2, 2))
    """

    def __init__(self, model: Any, *args: Any, init_logits: float = 0.0, **kwargs: Any):
        em = model if isinstance(model, EnergyModel) else EnergyModel(model, *args, **kwargs)
        if em.continuous_sites:
            raise ValueError(
                f"guide: BernoulliMeanField covers binary sites only; {list(em.continuous_sites)} "
                "are continuous"
            )
        self.levels = binary_site_levels(em)
        self.shapes = {n: em.sites[n].shape for n in self.levels}
        self.init_logits = float(init_logits)

    def params_init(self) -> Values:
        """Initial logits, dict ``"{site}_logits"`` -> array."""
        return {f"{n}_logits": jnp.full(s, self.init_logits) for n, s in self.shapes.items()}

    def distributions(self, guide_params: Mapping[str, Any]) -> dict[str, BinaryBernoulli]:
        """Site -> :class:`BinaryBernoulli` for given guide parameters."""
        return {
            n: BinaryBernoulli(guide_params[f"{n}_logits"], *self.levels[n]) for n in self.levels
        }

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs
        for n, shape in self.shapes.items():
            logits = numpyro.param(f"{n}_logits", jnp.full(shape, self.init_logits))
            numpyro.sample(n, BinaryBernoulli(logits, *self.levels[n]))


# ----------------------------------------------------------------------------- energies
def energy_terms(
    em: EnergyModel,
    params: Mapping[str, Any] | None,
    values: Mapping[str, Any],
    *,
    skip: tuple[str, ...] | None = None,
) -> jax.Array:
    """Energy without the base measure of the binary state sites, valid at fractional values.

    ``EnergyModel.energy`` adds ``-log base(x)``, which is ``+inf`` off the binary levels; the
    mean-field bound evaluates ``E`` at the means ``μ`` instead, so the counting measure (0 on
    the levels) is left out.

    Args:
        em: the energy model.
        params: model parameters.
        values: dict state site -> value (binary sites may be fractional).
        skip: sites whose own log density is left out (default: the binary state sites).

    Returns:
        scalar array.

    Examples:
        >>> import jax.numpy as jnp, ebm_ppl as ebm
        >>> from ebm_ppl.models import ising
        >>> em = ebm.EnergyModel(ising.model, (4,), beta=1.0, periodic=False)
        >>> float(energy_terms(em, {}, {"s": jnp.full(4, 0.5)}))   # -(3 bonds · 0.25)
        -0.75
    """
    if skip is None:
        skip = tuple(em.discrete_sites)
    data = {**dict(params or {}), **dict(values)}
    tr = handlers.trace(handlers.substitute(handlers.seed(em.model, 0), data=data)).get_trace(
        *em.args, **em.kwargs
    )
    total = jnp.zeros(())
    for name, site in tr.items():
        if site["type"] != "sample" or name in skip:
            continue
        lp = jnp.sum(site["fn"].log_prob(site["value"]))
        if site.get("scale") is not None:
            lp = site["scale"] * lp
        total = total - lp
    return total
