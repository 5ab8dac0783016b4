"""Samplers read the site plan: NumPyro's Bernoulli sites, kernel x site kind, data checks.

* Boltzmann machines on ``dist.Bernoulli`` sites (a uniform and a non-uniform base, which is
  then part of the energy) sampled by block Gibbs and Gibbs with gradients match the marginals of
  exact enumeration, and their draws keep the model's ``int32`` dtype.
* A table of kernels (nuts, mala, gibbs, gwg, auto) by site kinds (real ``Flat``, positive
  ``Flat``, ``Spins``, ``Bits``, ``Bernoulli``, mixed): each cell either samples a tiny model
  with a closed-form moment (MCSE-gated) or raises the ``ValueError`` naming the site and the
  kernels that can move it, before anything compiles.
* Data against the plan: values outside a discrete support or a constraint, wrong dtype or
  shape, unknown sites: ``ValueError``/``TypeError`` naming the site, before compilation, in
  ``fit``, ``log_likelihood`` and ``sample(init_values=...)``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.distributions import constraints
from numpyro.infer import MCMC

import ebm_ppl as ebm
from ebm_ppl.infer.composite import Composite
from ebm_ppl.infer.discrete import BlockGibbs, GibbsWithGradients
from tests.helpers.compiles import no_compilation
from tests.helpers.stats import assert_within_mcse

# Statistical assertions in this module (Bonferroni): 2 Boltzmann machines x 2 kernels x 4
# marginals, and one moment per sampling cell of the table (8 cells) plus 2 for the mixed one.
NUM_TESTS = 16 + 8 + 2
RUN = dict(num_chains=4, num_samples=2000, progress=False)
# Warmup adapts step sizes; the discrete kernels have none (their chains start from random
# states of 2-5 units, whose transient is far below the Monte Carlo error of 8000 draws).
WARMUP = {"continuous": 300, "mixed": 300, "discrete": 0}

# ----------------------------------------------------------------------------- models
# A 4-unit Boltzmann machine on NumPyro's Bernoulli sites: E(x) = -x'Wx/2 - b'x, base
# Bernoulli(p) (a counting measure weighted by p^x (1-p)^(1-x), i.e. part of the energy).
W = np.array(
    [
        [0.0, 0.9, -0.6, 0.3],
        [0.9, 0.0, 0.5, -0.4],
        [-0.6, 0.5, 0.0, 0.8],
        [0.3, -0.4, 0.8, 0.0],
    ]
)
B = np.array([0.2, -0.5, 0.1, 0.4])
P_BASE = np.array([0.2, 0.7, 0.5, 0.35])


def _boltzmann(probs):
    def model():
        x = numpyro.sample("x", dist.Bernoulli(probs).expand([4]))
        ebm.energy("E", -0.5 * x @ jnp.asarray(W) @ x - jnp.asarray(B) @ x)

    return model


bm_half = _boltzmann(0.5)
bm_skewed = _boltzmann(jnp.asarray(P_BASE))


def _enumerate(probs):
    """(log Z, marginals P(x_i = 1)) by summing over the 16 states."""
    states = np.array(list(itertools.product([0.0, 1.0], repeat=4)))
    probs = np.broadcast_to(np.asarray(probs, np.float64), (4,))
    log_base = states @ np.log(probs) + (1.0 - states) @ np.log1p(-probs)
    log_w = log_base + 0.5 * np.einsum("ni,ij,nj->n", states, W, states) + states @ B
    log_z = np.logaddexp.reduce(log_w)
    return float(log_z), np.exp(log_w - log_z) @ states


BETA = 0.6


def spins_chain():
    """Open Ising chain of 3 spins: E[s_0 s_1] = tanh(beta)."""
    s = numpyro.sample("s", ebm.Spins(3))
    ebm.energy("E", -BETA * jnp.sum(s[1:] * s[:-1]))


H = 0.7


def bits_field():
    """Two coupled bits: E = -h (x_0 + x_1) - x_0 x_1 / 2 (marginals by enumeration)."""
    x = numpyro.sample("x", ebm.Bits(2))
    ebm.energy("E", -H * jnp.sum(x) - 0.5 * x[0] * x[1])


def _bits_mean():
    states = np.array(list(itertools.product([0.0, 1.0], repeat=2)))
    w = np.exp(H * states.sum(1) + 0.5 * states[:, 0] * states[:, 1])
    return float(w @ states[:, 0] / w.sum())


def gaussian():
    """x ~ N(1, 1) on a flat base: E[x] = 1."""
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 0.5 * (x - 1.0) ** 2)


def gamma():
    """x ~ Gamma(3, rate 2) on a flat positive base: E[x] = 3/2."""
    x = numpyro.sample("x", ebm.Flat((), support=constraints.positive))
    ebm.energy("E", 2.0 * x - 2.0 * jnp.log(x))


def continuous_pair():
    """``gaussian`` and ``gamma`` side by side (independent): one run samples both kinds."""
    x = numpyro.sample("x", ebm.Flat(()))
    y = numpyro.sample("y", ebm.Flat((), support=constraints.positive))
    ebm.energy("E", 0.5 * (x - 1.0) ** 2 + 2.0 * y - 2.0 * jnp.log(y))


def binary_pair():
    """``spins_chain`` and ``bits_field`` side by side (independent)."""
    s = numpyro.sample("s", ebm.Spins(3))
    x = numpyro.sample("x", ebm.Bits(2))
    ebm.energy("E", -BETA * jnp.sum(s[1:] * s[:-1]) - H * jnp.sum(x) - 0.5 * x[0] * x[1])


def switch():
    """b ~ Bernoulli(1/2), x | b ~ N(2b, 1): E[x] = 1, P(b = 1) = 1/2.

    The energy 0.5 x^2 - 2 x b + 2 b equals 0.5 (x - 2b)^2 on b in {0, 1} and is affine in b.
    """
    b = numpyro.sample("b", dist.Bernoulli(0.5))
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 0.5 * x**2 - 2.0 * x * b + 2.0 * b)


@functools.cache
def _run(model, kernel, family):
    return ebm.sample(
        model, kernel=kernel, num_warmup=WARMUP[family], rng_key=jax.random.PRNGKey(7), **RUN
    )


# ----------------------------------------------------------------------------- Bernoulli
@pytest.mark.parametrize("model,probs", [(bm_half, 0.5), (bm_skewed, P_BASE)], ids=["half", "p"])
def test_bernoulli_boltzmann_exact_log_partition(model, probs):
    log_z, _ = _enumerate(probs)
    est = ebm.log_partition(model, None, method="exact")
    assert est.log_z == pytest.approx(log_z, abs=1e-5)
    assert ebm.EnergyModel(model).plan["x"].dtype == np.int32


@pytest.mark.parametrize("kernel", ["gibbs", "gwg"])
@pytest.mark.parametrize("model,probs", [(bm_half, 0.5), (bm_skewed, P_BASE)], ids=["half", "p"])
def test_bernoulli_boltzmann_marginals_match_enumeration(model, probs, kernel):
    idata = _run(model, kernel, "discrete")
    x = idata.posterior["x"].values
    assert x.dtype == np.int32  # the model's dtype, not the kernel's floats
    assert set(np.unique(x).tolist()) <= {0, 1}
    _, marginals = _enumerate(probs)
    assert_within_mcse(x, marginals, num_tests=NUM_TESTS, name=f"{kernel} P(x_i = 1)")


def test_bernoulli_adapters_under_numpyro_mcmc():
    """BlockGibbs and GWG under numpyro's MCMC (vectorized): int32 draws, energies finite."""
    for kernel in (BlockGibbs(bm_skewed), GibbsWithGradients(bm_skewed)):
        mcmc = MCMC(
            kernel,
            num_warmup=0,
            num_samples=20,
            num_chains=2,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(0), extra_fields=("potential_energy",))
        x = mcmc.get_samples()["x"]
        assert x.dtype == jnp.int32 and x.shape == (40, 4)
        assert set(np.unique(np.asarray(x)).tolist()) <= {0, 1}
        energy = mcmc.get_extra_fields()["potential_energy"]
        assert np.all(np.isfinite(np.asarray(energy)))
    # integer starts of the model's dtype are accepted, outside values are refused
    GibbsWithGradients(bm_half).init(
        jax.random.PRNGKey(0), 0, {"x": jnp.array([0, 1, 1, 0], jnp.int32)}, (), {}
    )
    with pytest.raises(ValueError, match=r"init_params\['x'\] must hold only the values 0 and 1"):
        BlockGibbs(bm_half).init(jax.random.PRNGKey(0), 0, {"x": jnp.full(4, 2)}, (), {})


# ----------------------------------------------------------------------------- kernel x kind
# Each site kind: the model the refusals are checked on (one site of that kind), and the model,
# family (warmup), statistic and exact value of its sampling cells. The real and positive kinds
# share one run, as do spins and bits; the Bernoulli cells are the Boltzmann machine above.
KINDS = {
    "real": (gaussian, continuous_pair, "continuous", lambda p: p["x"], 1.0),
    "positive": (gamma, continuous_pair, "continuous", lambda p: p["y"], 1.5),
    "spins": (
        spins_chain,
        binary_pair,
        "discrete",
        lambda p: p["s"][..., 0] * p["s"][..., 1],
        math.tanh(BETA),
    ),
    "bits": (bits_field, binary_pair, "discrete", lambda p: p["x"][..., 0], _bits_mean()),
    "bernoulli": (bm_skewed, bm_skewed, "discrete", None, None),
    "mixed": (switch, switch, "mixed", None, None),
}
KERNELS = ("nuts", "mala", "gibbs", "gwg", "auto")
# What each cell does: "ok" (the named kernel samples it), the kernel "auto" picks, or the
# site the refusal names.
TABLE = {
    "real": {"nuts": "ok", "mala": "ok", "gibbs": "x", "gwg": "x", "auto": "nuts"},
    "positive": {"nuts": "ok", "mala": "ok", "gibbs": "x", "gwg": "x", "auto": "nuts"},
    "spins": {"nuts": "s", "mala": "s", "gibbs": "ok", "gwg": "ok", "auto": "gibbs"},
    "bits": {"nuts": "x", "mala": "x", "gibbs": "ok", "gwg": "ok", "auto": "gibbs"},
    "bernoulli": {"nuts": "x", "mala": "x", "gibbs": "enum", "gwg": "enum", "auto": "gibbs"},
    "mixed": {"nuts": "b", "mala": "b", "gibbs": "x", "gwg": "x", "auto": "composite"},
}
CAN_MOVE = {
    "real": "'composite', 'hmc', 'mala', 'nuts', 'sgld', 'ula'",
    "binary": "'composite', 'dmala', 'dula', 'gibbs', 'gwg'",
}
# The Bernoulli cells of gibbs and gwg are test_bernoulli_boltzmann_marginals_match_enumeration.
CELLS = [(k, n) for k in TABLE for n in KERNELS if TABLE[k][n] != "enum"]


@pytest.mark.parametrize("kind,kernel", CELLS, ids=[f"{k}-{n}" for k, n in CELLS])
def test_kernel_by_site_kind(kind, kernel):
    one_site, model, family, stat, truth = KINDS[kind]
    cell = TABLE[kind][kernel]
    if cell == "ok":  # a named kernel samples the model: the closed-form moment
        post = {k: v.values for k, v in _run(model, kernel, family).posterior.items()}
        assert_within_mcse(stat(post), truth, num_tests=NUM_TESTS, name=f"{kind}/{kernel}")
    elif kernel == "auto" and cell != "composite":
        # auto picks the named kernel: same kernel, same key, the same draws bit for bit
        idata = _run(model, "auto", family)
        assert idata.posterior.attrs["kernel"] == cell
        named = _run(model, cell, family)
        for name in named.posterior.data_vars:
            np.testing.assert_array_equal(idata.posterior[name], named.posterior[name])
    elif kernel == "auto":
        idata = _run(model, "auto", family)
        assert idata.posterior.attrs["kernel"] == "composite"
        post = idata.posterior
        assert post["b"].dtype == np.int32
        assert_within_mcse(post["x"].values, 1.0, num_tests=NUM_TESTS, name="mixed E[x]")
        assert_within_mcse(post["b"].values, 0.5, num_tests=NUM_TESTS, name="mixed P(b=1)")
    else:  # refused before compilation, naming the site and the kernels that can move it
        ebm.EnergyModel(one_site)  # warm-up: eager ops of the prototype trace
        binary = ebm.EnergyModel(one_site).plan[cell].kind == "binary"
        can = CAN_MOVE["binary" if binary else "real"]
        with no_compilation(), pytest.raises(ValueError) as info:
            ebm.sample(one_site, kernel=kernel, num_warmup=0, **RUN)
        msg = str(info.value)
        assert f"kernel={kernel!r} cannot move site {cell!r}" in msg, msg
        assert f"kernels that can move it: {can}" in msg, msg


def test_composite_blocks_follow_the_plan():
    """auto on mixed models: Gibbs for affine binary sites, GWG otherwise, MALA for reals;
    a Gaussian-Bernoulli RBM's declared layers are one Gibbs sweep (v | h Gaussian)."""
    from ebm_ppl.models import rbm

    k = Composite(switch)
    k.init(jax.random.PRNGKey(0), 10, None, (), {})
    assert (k.blocks, k.block_names) == ((("b",), ("x",)), ("gibbs", "mala"))

    def non_affine():
        b = numpyro.sample("b", dist.Bernoulli(0.5))
        x = numpyro.sample("x", ebm.Flat(()))
        ebm.energy("E", 0.5 * (x - 2.0 * b) ** 2)  # b**2: not affine in b

    k = Composite(non_affine)
    k.init(jax.random.PRNGKey(0), 10, None, (), {})
    assert k.block_names == ("gwg", "mala")
    k = Composite(rbm.model)
    k.init(jax.random.PRNGKey(0), 10, None, (3, 2), {"visible": "gaussian"})
    assert (k.blocks, k.block_names) == ((("v", "h"),), ("gibbs",))


def test_categorical_site_is_refused_by_continuous_kernels():
    # categorical sites are moved by the discrete kernels (tests/test_categorical.py); the
    # continuous ones refuse them, naming the kernels that can
    def potts():
        c = numpyro.sample("c", dist.Categorical(probs=jnp.ones(3) / 3).expand([2]))
        ebm.energy("E", -(c[0] == c[1]).astype(jnp.float32))

    ebm.EnergyModel(potts)
    for kernel in ("nuts", "mala"):
        with no_compilation(), pytest.raises(ValueError, match="cannot move site 'c'.*'gibbs'"):
            ebm.sample(potts, kernel=kernel, **RUN)


# ----------------------------------------------------------------------------- data checks
def ising_param():
    J = numpyro.param("J", 0.5)
    s = numpyro.sample("s", ebm.Spins(3))
    ebm.energy("E", -J * jnp.sum(s[1:] * s[:-1]))


def bits_param():
    h = numpyro.param("h", jnp.zeros(3))
    x = numpyro.sample("x", ebm.Bits(3))
    ebm.energy("E", -h @ x)


def bernoulli_param():
    h = numpyro.param("h", jnp.zeros(3))
    x = numpyro.sample("x", dist.Bernoulli(0.5).expand([3]))
    ebm.energy("E", -h @ x)


def positive_param():
    rate = numpyro.param("rate", 1.0, constraint=constraints.positive)
    x = numpyro.sample("x", ebm.Flat((2,), support=constraints.positive))
    ebm.energy("E", rate * jnp.sum(x))


DATA_ROWS = [
    ("spins 0/1", ising_param, np.array([[0.0, 1.0, 1.0]] * 4), ValueError, r"'s'.* \{-1, 1\}"),
    ("bits 3.0", bits_param, np.array([[0.0, 3.0, 1.0]] * 4), ValueError, r"'x'.* \{0, 1\}"),
    ("bernoulli 2", bernoulli_param, np.array([[0, 2, 1]] * 4), ValueError, r"'x'.* \{0, 1\}"),
    ("positive -1", positive_param, -np.ones((4, 2)), ValueError, r"'x'\] is outside"),
    ("unknown site", bits_param, {"y": np.zeros((4, 3))}, ValueError, r"site 'y'"),
    ("wrong shape", bits_param, {"x": np.zeros((4, 2))}, ValueError, r"site 'x' has shape"),
    ("complex", bits_param, np.zeros((4, 3), np.complex64), TypeError, r"site 'x'"),
]


@pytest.mark.parametrize(
    "model,data,exc,match", [r[1:] for r in DATA_ROWS], ids=[r[0] for r in DATA_ROWS]
)
def test_bad_data_is_refused_by_fit_and_log_likelihood(model, data, exc, match):
    em = ebm.EnergyModel(model)  # warm-up: eager ops of the prototype trace and parameters
    params = em.validate_params(em.init_params(jax.random.PRNGKey(0)))
    jax.random.PRNGKey(1)
    with no_compilation(), pytest.raises(exc, match=match):
        ebm.fit(
            model,
            data,
            objective="pcd",
            optimizer=optax.sgd(0.1),
            num_steps=2,
            batch_size=2,
            rng_key=jax.random.PRNGKey(1),
            progress=False,
        )
    with no_compilation(), pytest.raises(exc, match=match):
        ebm.log_likelihood(model, params, data)


_INIT = (
    "init_values" if "init_values" in inspect.signature(ebm.sample).parameters else "init_params"
)
INIT_ROWS = [
    ("spins 0/1", ising_param, {"s": np.zeros((2, 3))}, r"\['s'\] must hold values in \{-1, 1\}"),
    ("bernoulli 2", bernoulli_param, {"x": np.full((2, 3), 2)}, r"\['x'\] must hold values"),
    ("positive -1", positive_param, {"x": -np.ones((2, 2))}, r"\['x'\] is outside"),
    ("non-finite", positive_param, {"x": np.full((2, 2), np.nan)}, r"\['x'\] has non-finite"),
    (
        "unknown site",
        bits_param,
        {"x": np.zeros((2, 3)), "y": np.zeros(2)},
        r" has unknown site.*'y'",
    ),
    ("missing site", bits_param, {}, r" is missing state site\(s\) \['x'\]"),
    ("num chains", bits_param, {"x": np.zeros((3, 3))}, r"\['x'\] must have shape \(2, 3\)"),
]


@pytest.mark.parametrize(
    "model,values,match", [r[1:] for r in INIT_ROWS], ids=[r[0] for r in INIT_ROWS]
)
def test_bad_init_values_are_refused_by_sample(model, values, match):
    ebm.EnergyModel(model).init_params(jax.random.PRNGKey(0))  # warm-up
    with no_compilation(), pytest.raises(ValueError, match=f"{_INIT}{match}"):
        ebm.sample(
            model, num_chains=2, num_warmup=1, num_samples=1, progress=False, **{_INIT: values}
        )


def test_energy_refuses_values_outside_the_support():
    em = ebm.EnergyModel(bernoulli_param)
    params = em.init_params(jax.random.PRNGKey(0))
    assert float(em.energy(params, {"x": jnp.array([0, 1, 1], jnp.int32)})) == pytest.approx(
        3 * math.log(2.0)
    )
    with no_compilation(), pytest.raises(ValueError, match=r"values\['x'\] must hold values"):
        em.energy(params, {"x": jnp.array([0, 2, 1])})
