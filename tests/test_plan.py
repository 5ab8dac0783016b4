"""The site plan: one classification of every site, validation against it, parameter transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.distributions import constraints

import ebm_ppl as ebm
from ebm_ppl.energy.plan import SitePlan


def zoo(x_obs=None):
    scale = numpyro.param("scale", 2.0, constraint=constraints.positive)
    w = numpyro.param("w", jnp.zeros(3))
    x = numpyro.sample("x", ebm.Flat(2))
    r = numpyro.sample("r", ebm.Flat(2, support=constraints.positive))
    s = numpyro.sample("s", ebm.Spins(3))
    bits = numpyro.sample("bits", ebm.Bits(3))
    bern = numpyro.sample("bern", dist.Bernoulli(0.3).expand([3]))
    cat = numpyro.sample("cat", dist.Categorical(logits=jnp.zeros(4)))
    pois = numpyro.sample("pois", dist.Poisson(2.0))
    y = numpyro.sample("y", ebm.Flat(()), obs=x_obs if x_obs is not None else 0.5)
    e = (
        jnp.sum(x**2) / scale
        + jnp.sum(r)
        + w @ s
        + jnp.sum(bits)
        + jnp.sum(bern)
        + cat
        + 0.1 * pois
        + y**2
    )
    ebm.energy("E", e)


EXPECTED = {
    "scale": ("param", "array", (), None),
    "w": ("param", "array", (3,), None),
    "x": ("state", "continuous", (2,), None),
    "r": ("state", "continuous", (2,), None),
    "s": ("state", "binary", (3,), (-1.0, 1.0)),
    "bits": ("state", "binary", (3,), (0.0, 1.0)),
    "bern": ("state", "binary", (3,), (0.0, 1.0)),
    "cat": ("state", "categorical", (), (0.0, 1.0, 2.0, 3.0)),
    "pois": ("state", "discrete", (), None),
    "y": ("data", "continuous", (), None),
    "E": ("energy", "energy", (), None),
}


@pytest.fixture(scope="module")
def em():
    return ebm.EnergyModel(zoo)


def test_every_site_kind(em):
    plan = em.plan
    assert list(plan) == list(EXPECTED)
    for name, (role, kind, shape, values) in EXPECTED.items():
        spec = plan[name]
        assert (spec.role, spec.kind, spec.shape, spec.support_values) == (
            role,
            kind,
            shape,
            values,
        )
    assert plan.state_sites == ("x", "r", "s", "bits", "bern", "cat", "pois")
    assert plan.binary_sites == ("s", "bits", "bern")
    assert plan.categorical_sites == ("cat",)
    assert plan.is_mixed and plan.constrained_params == ("scale",)
    # the dtype the model declares: NumPyro's own discrete distributions are integers
    assert plan["bern"].dtype == np.int32 and plan["cat"].dtype == np.int32
    assert plan["s"].dtype == np.float32 and plan["bits"].dtype == np.float32
    assert plan["r"].is_constrained and not plan["x"].is_constrained
    # the model's own lists are the plan's
    assert em.state_sites == plan.state_sites and em.discrete_sites == plan.discrete_sites
    assert plan.latent_sites(["x", "s"]) == ("r", "bits", "bern", "cat", "pois")
    with pytest.raises(ValueError, match="'scale'"):
        plan.latent_sites(["scale"])


def test_require_binary_names_the_site(em):
    assert em.plan.require_binary(["s", "bern"], who="t") == {"s": (-1.0, 1.0), "bern": (0.0, 1.0)}
    with pytest.raises(ValueError, match=r"exact needs binary.*'cat' is categorical"):
        em.plan.require_binary(who="exact")


def test_plan_built_while_traced_is_the_same():
    def model(w):
        a = numpyro.param("a", w)
        s = numpyro.sample("s", ebm.Spins(3))
        b = numpyro.sample("b", dist.Bernoulli(0.5).expand([2]))
        ebm.energy("E", a * jnp.sum(s) + jnp.sum(b))

    def build(w):
        return SitePlan.from_trace(handlers.trace(handlers.seed(model, 0)).get_trace(w))

    outside = build(1.0)
    inside = {}

    def f(w):
        inside["plan"] = build(w)
        return w

    jax.jit(f)(1.0)
    for name in outside:
        a, b = outside[name], inside["plan"][name]
        assert (a.role, a.kind, a.shape, a.support_values) == (
            b.role,
            b.kind,
            b.shape,
            b.support_values,
        )


def test_unconstrained_params_round_trip(em):
    params = {"scale": jnp.asarray(3.0), "w": jnp.arange(3.0)}
    u = em.unconstrain_params(params)
    assert float(u["scale"]) == pytest.approx(np.log(3.0))
    np.testing.assert_array_equal(u["w"], params["w"])  # unconstrained: identity
    back = em.constrain_params(u)
    assert float(back["scale"]) == pytest.approx(3.0, rel=1e-6)


def test_kernel_casts(em):
    values = {"bern": jnp.array([0, 1, 1], jnp.int32), "x": jnp.ones(2)}
    k = em.plan.to_kernel(values)
    assert k["bern"].dtype == jnp.float32 and k["x"] is values["x"]
    back = em.plan.from_kernel(k)
    assert back["bern"].dtype == jnp.int32
    np.testing.assert_array_equal(back["bern"], values["bern"])


GOOD = {
    "x": np.zeros(2),
    "r": np.ones(2),
    "s": np.ones(3),
    "bits": np.zeros(3),
    "bern": np.zeros(3, np.int32),
    "cat": np.int32(2),
    "pois": np.int32(3),
}

BAD_VALUES = [
    ("unknown site", {**GOOD, "z": 1.0}, ValueError, "unknown site"),
    ("param as value", {**GOOD, "w": np.zeros(3)}, ValueError, "unknown site"),
    (
        "wrong shape",
        {**GOOD, "x": np.zeros(3)},
        ValueError,
        r"values\['x'\] must have shape \(2,\)",
    ),
    ("bits as spins", {**GOOD, "s": np.array([0.0, 1.0, 1.0])}, ValueError, r"\['s'\].*\{-1, 1\}"),
    ("3 for bits", {**GOOD, "bits": np.array([3.0, 0, 0])}, ValueError, r"\['bits'\].*\{0, 1\}"),
    ("2 for bernoulli", {**GOOD, "bern": np.array([2, 0, 0])}, ValueError, r"\['bern'\]"),
    ("category 4", {**GOOD, "cat": np.int32(4)}, ValueError, r"\['cat'\].*\{0, 1, 2, 3\}"),
    ("nan continuous", {**GOOD, "x": np.array([np.nan, 0.0])}, ValueError, r"\['x'\].*non-finite"),
    ("negative positive", {**GOOD, "r": np.array([-1.0, 1.0])}, ValueError, r"\['r'\].*support"),
    ("strings", {**GOOD, "x": np.array(["a", "b"])}, TypeError, r"\['x'\]"),
    ("not a dict", [1.0, 2.0], TypeError, "dict"),
]


@pytest.mark.parametrize("case, values, exc, match", BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_values(em, case, values, exc, match):
    with pytest.raises(exc, match=match):
        em.plan.validate_values(values)


def test_good_values_and_batches(em):
    out = em.plan.validate_values(GOOD, required=em.state_sites)
    assert set(out) == set(GOOD)
    batch = {n: np.stack([v, v]) for n, v in GOOD.items()}
    em.plan.validate_values(batch, batch_ndim=1)
    with pytest.raises(ValueError, match="batch"):
        em.plan.validate_values({**batch, "x": np.zeros((3, 2))}, batch_ndim=1)
    with pytest.raises(ValueError, match=r"missing state site\(s\) \['pois'\]"):
        em.plan.validate_values(
            {n: v for n, v in GOOD.items() if n != "pois"}, required=em.state_sites
        )


BAD_PARAMS = [
    ("unknown key", {"scale": 1.0, "w": np.zeros(3), "v": 1.0}, ValueError, r"unknown key.*'v'"),
    ("missing key", {"scale": 1.0}, ValueError, r"missing \['w'\]"),
    (
        "wrong shape",
        {"scale": 1.0, "w": np.zeros(2)},
        ValueError,
        r"\['w'\] must have shape \(3,\)",
    ),
    ("nan", {"scale": 1.0, "w": np.array([0.0, np.nan, 0])}, ValueError, r"\['w'\].*non-finite"),
    (
        "outside constraint",
        {"scale": -1.0, "w": np.zeros(3)},
        ValueError,
        r"\['scale'\].*constraint",
    ),
    ("complex", {"scale": 1.0, "w": np.zeros(3, complex)}, TypeError, r"\['w'\].*real"),
    ("not a dict", [1.0], TypeError, "dict"),
]


@pytest.mark.parametrize("case, params, exc, match", BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_bad_params(em, case, params, exc, match):
    with pytest.raises(exc, match=match):
        em.validate_params(params)
