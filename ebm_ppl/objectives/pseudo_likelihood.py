"""Pseudo-likelihood: learning discrete energy models from their exact single-unit conditionals.

Besag's pseudo-likelihood replaces ``log p(x)`` by the sum of every unit's conditional
log-probability given all the others,

.. math::

    \\operatorname{PL}(θ; x) = \\sum_i \\log p_θ(x_i \\mid x_{-i}),

which needs no partition function and no sampling: each conditional is a logistic (binary
units) or a softmax over ``q`` states (categorical units) of energy differences, read off the
energy by :meth:`ebm_ppl.EnergyModel.conditional_logits` (one gradient when the energy is affine
in each unit, as for Ising and Potts models, Boltzmann machines and RBMs; exact differences
otherwise). The estimator is consistent, and it is the standard estimator of direct-coupling
analysis (plmDCA) for Potts Boltzmann machines.

References:
    Besag (1975), Statistical analysis of non-lattice data. The Statistician 24(3).
    Ekeberg, Lövkvist, Lan, Weigt & Aurell (2013), Improved contact prediction in proteins:
    using pseudolikelihoods to infer Potts models. Phys. Rev. E 87.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ebm_ppl.objectives.base import Objective

__all__ = ["PseudoLikelihood"]


class PseudoLikelihood:
    """Negative pseudo-log-likelihood ``-Σ_i log p(x_i | x_-i)``, averaged over the batch.

    Every state site must be binary (``Spins``, ``Bits``, ``Bernoulli``) or categorical
    (``Categorical``) and observed in the data: the conditionals are exact and the loss is
    deterministic (``rng_key`` is unused).

    Args:
        per_unit: report the loss per unit (divided by the number of units) instead of per
            example; the optimum is the same.

    Raises:
        ValueError: at ``build``, for a continuous state site; at ``init``, for a state site
            missing from the data (a latent site: use contrastive divergence).

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, ebm_ppl as ebm
        >>> def pair():
        ...     w = numpyro.param("w", 0.0)
        ...     s = numpyro.sample("s", ebm.Spins(2))
        ...     ebm.energy("E", -w * s[0] * s[1])
        >>> obj = PseudoLikelihood().build(ebm.EnergyModel(pair))
        >>> batch = {"s": jnp.array([[1.0, 1.0]])}
        >>> loss, _ = obj.loss({"w": jnp.array(0.0)}, obj.init(None, {}, batch), batch, None)
        >>> round(float(loss), 4)   # two fair coins: 2 log 2
        1.3863

    References:
        Besag (1975), Statistical analysis of non-lattice data. The Statistician 24(3).
    """

    def __init__(self, *, per_unit: bool = False):
        if not isinstance(per_unit, bool):
            raise TypeError(f"per_unit must be a bool, got {per_unit!r}")
        self.per_unit = per_unit

    def build(self, model: Any, **context: Any) -> Objective:
        """Build the pure ``Objective`` for ``model`` (an :class:`ebm_ppl.EnergyModel`)."""
        del context
        em = model
        plan = em.plan
        sites = plan.state_sites
        for n in sites:
            kind = plan[n].kind
            if kind not in ("binary", "categorical"):
                raise ValueError(
                    f"PseudoLikelihood needs binary or categorical state sites; site {n!r} is "
                    f"{kind} (support {plan[n].support}): use ScoreMatching or NCE for "
                    "continuous states"
                )
        levels = {n: plan[n].levels for n in sites if plan[n].kind == "binary"}
        num_units = sum(plan[n].size for n in sites)
        scale = 1.0 / num_units if self.per_unit else 1.0

        def check(batch):
            missing = [n for n in sites if n not in batch]
            if missing:
                raise ValueError(
                    f"PseudoLikelihood needs every state site in the data; {missing} are "
                    "missing (latent units have no observed conditional: use "
                    "PersistentContrastiveDivergence)"
                )

        def per_example(params, values):
            total = jnp.zeros((), jnp.result_type(float))
            for n in sites:
                logits = em.conditional_logits(params, values, n)
                if n in levels:
                    lo, hi = levels[n]
                    on = (values[n] - lo) / (hi - lo)
                    # log σ(ℓ) for units at hi, log σ(-ℓ) at lo
                    total = total + jnp.sum(on * logits - jax.nn.softplus(logits))
                else:
                    # logits are zero at the current state: log p(x_i | rest) = -logsumexp
                    total = total - jnp.sum(jax.scipy.special.logsumexp(logits, axis=-1))
            return total

        def init(rng_key, params, batch):
            del rng_key, params
            check(batch)
            # Decide gradient or exact-difference conditionals once, on the host (cached).
            if levels:
                em.affine_sites  # noqa: B018
            if plan.categorical_sites:
                em.categorical_affine_sites  # noqa: B018
            return ()

        def loss(params, obj_state, batch, rng_key):
            del rng_key
            check(batch)
            values = {n: batch[n] for n in sites}
            rest = {n: v for n, v in batch.items() if n not in values}
            pl = jax.vmap(lambda v, r: per_example(params, {**r, **v}))(values, rest)
            value = -scale * jnp.mean(pl)
            return value, (obj_state, {"pseudo_log_likelihood": jnp.mean(pl)})

        return Objective(init, loss)
