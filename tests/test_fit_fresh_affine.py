"""``check_model_affine`` runs the model's energy once for every site and parameter set."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro

import ebm_ppl as ebm
from ebm_ppl.energy.conditionals import check_model_affine

_CALLS = [0]


def _mixed():
    _CALLS[0] += 1
    w = numpyro.param("w", jnp.zeros(()))  # zero at init: only the perturbation reveals b**2
    s = numpyro.sample("s", ebm.Spins(5))
    b = numpyro.sample("b", ebm.Bits(3))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy(
        "E",
        -jnp.sum(s[:-1] * s[1:]) + w * jnp.sum(b**2) + b[0] * s[0] + jnp.sum(x**2) * s[1],
    )


def _affine():
    _CALLS[0] += 1
    w = numpyro.param("w", jnp.ones((4, 3)))
    v = numpyro.sample("v", ebm.Bits(4))
    h = numpyro.sample("h", ebm.Spins(3))
    ebm.energy("E", -v @ w @ h)


def test_check_model_affine_per_site_and_energy_traced_once():
    em = ebm.EnergyModel(_mixed)
    start = _CALLS[0]
    assert check_model_affine(em) == {"s": True, "b": False}
    # the initial parameters and one vmapped energy (both parameter sets, every site): the
    # model used to run once per site, parameter set and statistic (9 runs here)
    assert _CALLS[0] - start <= 2
    em = ebm.EnergyModel(_affine)
    assert check_model_affine(em, num_units=2) == {"v": True, "h": True}


def _no_params():
    x = numpyro.sample("x", ebm.Flat(2))
    b = numpyro.sample("b", ebm.Bits(2))
    c = numpyro.sample("c", ebm.Bits(2))
    ebm.energy("E", jnp.sum(x**2) - x @ b + jnp.sum(c) ** 2)  # c_0 c_1 cross term and c_i^2


def test_check_model_affine_without_parameters():
    """A model with no parameter (nothing to perturb) is checked like any other."""
    assert check_model_affine(ebm.EnergyModel(_no_params)) == {"b": True, "c": False}
