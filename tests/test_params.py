"""Parameters: constraints honoured by fit, module parameters everywhere, bad params refused early.

* ``fit`` optimizes on the unconstrained space and returns constrained values: a
  ``constraints.positive`` scale trained by score matching reaches the closed-form optimum, and
  one trained by PCD never leaves its support (where an unconstrained declaration does).
* The zoo's Gaussian–Bernoulli RBM keeps every ``sigma > 0``.
* An equinox energy (``numpyro.contrib.module.eqx_module``) is sampled by ``ebm.sample`` (MALA,
  NUTS) and normalized by ``log_partition``/``log_likelihood`` against closed forms.
* Bad params dicts are refused by every entry point with a message naming the site, before JAX
  compiles anything.
"""

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from ebm_ppl.models import rbm
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints

import ebm_ppl as ebm
from ebm_ppl.objectives import PersistentContrastiveDivergence
from tests.helpers.compiles import no_compilation
from tests.helpers.stats import assert_within_mcse

NUM_TESTS = 10  # statistical assertions in this module (Bonferroni): 5 statistics x 2 kernels


# ------------------------------------------------------------------ a positive scale
def positive_scale(init=1.0):
    s = numpyro.param("scale", init, constraint=constraints.positive)
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 0.5 * (x / s) ** 2)


def real_scale(init=1.0):
    # The same energy with the scale declared without its constraint.
    s = numpyro.param("scale", init)
    x = numpyro.sample("x", ebm.Flat(()))
    ebm.energy("E", 0.5 * (x / s) ** 2)


def test_positive_scale_by_score_matching_reaches_closed_form():
    data = (2.0 * np.random.default_rng(0).normal(size=256)).astype(np.float32)
    res = ebm.fit(
        positive_scale,
        data,
        objective="sm",
        optimizer=optax.sgd(0.1),
        num_steps=300,
        batch_size=256,  # full batch: deterministic gradient descent
        rng_key=0,
        log_every=100,
        progress=False,
    )
    # Score matching for E = x²/(2s²): J(s) = mean(x²)/(2s⁴) - 1/s², minimized at s² = mean(x²)
    # (the maximum-likelihood estimate of a centred Gaussian's variance). In u = log s the
    # Hessian at the optimum is 4 (for mean(x²) ≈ 4: 4/mean(x²) ≈ 1), so each step of
    # lr 0.1 contracts the error by ~0.9: after 300 steps it is below float32 resolution and
    # what remains is the float32 rounding of the batch mean (~1e-6 relative).
    assert not res.flags["nonfinite"]
    scale = float(res.params["scale"])
    m2 = float(np.mean(data.astype(np.float64) ** 2))
    assert scale > 0
    np.testing.assert_allclose(scale**2, m2, rtol=1e-4)
    # converged: the loss no longer moves over the last 100 updates (float32 resolution)
    assert np.ptp(res.history["loss"][-100:]) < 1e-6


def test_constrained_fit_resumes_bit_for_bit(tmp_path):
    # The checkpoint stores the unconstrained carry: log(exp(u)) is not u in floating point.
    data = (2.0 * np.random.default_rng(0).normal(size=64)).astype(np.float32)

    def run(num_steps, checkpoint_dir=None):
        return ebm.fit(
            positive_scale,
            data,
            objective="dsm",
            optimizer=optax.adam(0.05),
            num_steps=num_steps,
            batch_size=16,
            rng_key=0,
            log_every=10,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=10,
            progress=False,
        )

    run(10, tmp_path)
    resumed = run(20, tmp_path)
    straight = run(20)
    assert resumed.flags["resumed_from"] == 10
    assert np.asarray(resumed.params["scale"]) == np.asarray(straight.params["scale"])
    np.testing.assert_array_equal(resumed.history["loss"], straight.history["loss"])


PCD_DATA = (0.5 * np.random.default_rng(0).normal(size=256)).astype(np.float32)


def _pcd_scales(model):
    """The scale after every 5 of 40 updates of an aggressive PCD run from 2 (optimum ~0.5)."""
    seen = []
    res = ebm.fit(
        model,
        PCD_DATA,
        model_kwargs={"init": 2.0},
        objective=PersistentContrastiveDivergence(
            "mala", num_mcmc_steps=5, step_size=0.5, num_chains=256
        ),
        # Negative chains lag behind a shrinking scale, so the gradient keeps pushing it down
        # after it has passed the optimum: with this step an update in s overshoots below 0.
        optimizer=optax.sgd(0.3),
        num_steps=40,
        batch_size=256,
        rng_key=0,
        log_every=5,
        progress=False,
        callbacks=[lambda step, params, obj_state, metrics: seen.append(params["scale"])],
    )
    return np.asarray(seen, dtype=np.float64), res


def test_positive_scale_by_pcd_never_leaves_its_support():
    scales, res = _pcd_scales(positive_scale)
    assert not res.flags["nonfinite"] and len(scales) == 8
    assert np.all(np.isfinite(scales)) and np.all(scales > 0), scales
    assert float(res.params["scale"]) == scales[-1] > 0
    # The same run with the scale declared unconstrained leaves the support: the setting
    # does test the constraint.
    free, _ = _pcd_scales(real_scale)
    assert np.min(free) < 0, free


def test_gaussian_bernoulli_rbm_keeps_sigma_positive():
    # Standardized 8x8 digits (the 3 constant pixels stay 0): the model's sigma of those pixels
    # shrinks for the whole run. Adam moves a coordinate by about its learning rate per update
    # while the gradient keeps its sign, so 200 updates of 0.01 taken on sigma itself carry it
    # from 1 below 0 (this run then ended at sigma = -0.08, -0.10, -0.10 for those pixels, with
    # no flag); on log sigma they stay positive (0.022).
    train, test = ebm.data.digits(binarize=False)
    mu, sd = train.mean(0), train.std(0)
    constant = sd == 0
    sd = np.where(sd > 0, sd, 1.0)
    train = ((train - mu) / sd).astype(np.float32)
    test = ((test - mu) / sd).astype(np.float32)
    nv, nh = train.shape[1], 8
    args = (nv, nh, "gaussian", True)  # hidden units summed out: F(v) is the energy of v
    p0 = rbm.init_params(jax.random.PRNGKey(0), train, num_hidden=nh, visible="gaussian")
    p0["sigma"] = jnp.ones(nv)
    res = ebm.fit(
        rbm.model,
        train,
        model_args=args,
        data_site="v",
        init_params=p0,
        objective="ssm",
        optimizer=optax.adam(0.01),
        num_steps=200,
        batch_size=100,
        rng_key=1,
        progress=False,
    )
    sigma = np.asarray(res.params["sigma"])
    assert not res.flags["nonfinite"]
    assert np.all(np.isfinite(sigma)) and np.all(sigma > 0), sigma
    assert constant.sum() == 3 and np.all(sigma[constant] < 0.1), sigma[constant]  # shrunk
    # exact log Z (hidden layer enumerated) and the test log-likelihood are finite
    ll = ebm.log_likelihood(rbm.model, res.params, test, model_args=args)
    assert ll.log_z.method == "exact" and np.all(np.isfinite(ll.per_example))


# ------------------------------------------------------------------ an equinox energy
A = jnp.array([[2.0, 0.0], [1.0, 1.0]])
COV = np.linalg.inv(np.asarray(A.T @ A, dtype=np.float64))  # x ~ N(0, (AᵀA)⁻¹)
LOG_Z = math.log(2 * math.pi) - math.log(abs(np.linalg.det(np.asarray(A, np.float64))))


def _linear(weight):
    lin = eqx.nn.Linear(2, 2, use_bias=False, key=jax.random.PRNGKey(0))
    return eqx.tree_at(lambda m: m.weight, lin, weight)


LINEAR = _linear(A)


def eqx_gaussian():
    net = eqx_module("net", LINEAR)
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum(net(x) ** 2))


def _eqx_params():
    return ebm.EnergyModel(eqx_gaussian).init_params(jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    "kernel, num_chains, num_warmup, num_samples", [("mala", 8, 500, 4000), ("nuts", 4, 300, 600)]
)
def test_equinox_energy_sampled_matches_closed_form(kernel, num_chains, num_warmup, num_samples):
    params = _eqx_params()
    assert isinstance(params["net$params"], eqx.nn.Linear)
    idata = ebm.sample(
        eqx_gaussian,
        params=params,
        kernel=kernel,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        rng_key=jax.random.PRNGKey(3),
        progress=False,
    )
    x = idata.posterior["x"].values.astype(np.float64)  # (chain, draw, 2)
    assert_within_mcse(x, np.zeros(2), num_tests=NUM_TESTS, name=f"{kernel} mean")
    assert_within_mcse(x**2, np.diag(COV), num_tests=NUM_TESTS, name=f"{kernel} E[x_i^2]")
    assert_within_mcse(
        x[..., 0] * x[..., 1], COV[0, 1], num_tests=NUM_TESTS, name=f"{kernel} E[x0 x1]"
    )


def test_equinox_energy_fit_by_score_matching_reaches_closed_form():
    # x ~ N(0, COV); for E = ½‖Wx‖² score matching minimizes ½ tr(P S P) - tr P in the
    # precision P = WᵀW, at P = S⁻¹ with S = mean(x xᵀ). W itself is identified only up to a
    # rotation, so compare WᵀW. Full-batch gradient descent on a quadratic in P: converged to
    # float32 resolution after 800 steps (the loss is flat to 1e-6 over the last 400).
    rng = np.random.default_rng(2)
    data = (rng.normal(size=(512, 2)) @ np.linalg.cholesky(COV).T).astype(np.float32)
    res = ebm.fit(
        eqx_gaussian,
        data,
        init_params={"net$params": _linear(jnp.eye(2))},
        objective="sm",
        optimizer=optax.sgd(0.05),
        num_steps=800,
        batch_size=512,
        rng_key=0,
        log_every=400,
        progress=False,
    )
    net = res.params["net$params"]
    assert isinstance(net, eqx.nn.Linear) and net.bias is None  # a module, not an array
    weight = np.asarray(net.weight, np.float64)
    second_moment = data.astype(np.float64).T @ data.astype(np.float64) / len(data)
    np.testing.assert_allclose(weight.T @ weight, np.linalg.inv(second_moment), rtol=1e-4)
    assert np.ptp(res.history["loss"][-400:]) < 1e-5


def test_equinox_energy_log_partition_and_log_likelihood():
    params = _eqx_params()
    est = ebm.log_partition(eqx_gaussian, params, method="quadrature")
    # The trapezoidal sum converges faster than any power of the spacing on this smooth
    # density; what remains is float32 rounding of the energies (~1e-7 relative on Z).
    assert abs(est.log_z - LOG_Z) < 1e-5, (est.log_z, LOG_Z)
    x = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    ll = ebm.log_likelihood(eqx_gaussian, params, {"x": x})
    exact = -0.5 * np.sum((x.astype(np.float64) @ np.asarray(A, np.float64).T) ** 2, -1) - LOG_Z
    assert ll.log_z.method == "quadrature"
    np.testing.assert_allclose(ll.per_example, exact, atol=1e-5)
    # The module's parameters matter: doubling A halves the density's width (log Z - log 4).
    doubled = {"net$params": _linear(2.0 * A)}
    est2 = ebm.log_partition(eqx_gaussian, doubled, method="quadrature")
    assert abs(est2.log_z - (LOG_Z - math.log(4.0))) < 1e-5


def flax_gaussian():
    import flax.linen as nn
    from numpyro.contrib.module import flax_module

    net = flax_module("net", nn.Dense(2, use_bias=False), input_shape=(2,))
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum(net(x) ** 2))


def test_flax_energy_params_are_a_pytree():
    pytest.importorskip("flax.linen")
    params = {"net$params": {"kernel": A.T}}  # flax's Dense computes x @ kernel
    est = ebm.log_partition(flax_gaussian, params, method="quadrature")
    assert abs(est.log_z - LOG_Z) < 1e-5, (est.log_z, LOG_Z)
    with pytest.raises(ValueError, match=r"\['net\$params'\]: leaf 0 must have shape \(2, 2\)"):
        ebm.log_partition(flax_gaussian, {"net$params": {"kernel": jnp.ones((3, 2))}})


# ------------------------------------------------------------------ bad params, refused early
def two_params():
    s = numpyro.param("scale", jnp.ones(2), constraint=constraints.positive)
    net = eqx_module("net", LINEAR)
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum((net(x) / s) ** 2))


def no_params():
    x = numpyro.sample("x", ebm.Flat(2))
    ebm.energy("E", 0.5 * jnp.sum(x**2))


GOOD = {"scale": jnp.ones(2), "net$params": LINEAR}
NAN_WEIGHT = _linear(jnp.array([[jnp.nan, 0.0], [1.0, 1.0]]))
WITH_BIAS = eqx.nn.Linear(2, 2, key=jax.random.PRNGKey(1))

BAD_PARAMS = [
    ("unknown key", {**GOOD, "scal": jnp.ones(2)}, ValueError, "unknown key(s) ['scal']"),
    ("missing key", {"scale": jnp.ones(2)}, ValueError, "missing ['net$params']"),
    ("wrong shape", {**GOOD, "scale": jnp.ones(3)}, ValueError, "['scale'] must have shape (2,)"),
    ("nan", {**GOOD, "scale": jnp.array([1.0, jnp.nan])}, ValueError, "['scale'] has non-finite"),
    ("negative", {**GOOD, "scale": jnp.array([1.0, -1.0])}, ValueError, "['scale'] is outside"),
    ("module nan", {**GOOD, "net$params": NAN_WEIGHT}, ValueError, "['net$params']: leaf 0"),
    (
        "module structure",
        {**GOOD, "net$params": WITH_BIAS},
        ValueError,
        "['net$params'] must be a module parameter pytree",
    ),
    ("module as array", {**GOOD, "net$params": A}, ValueError, "['net$params'] must be a module"),
    ("not a dict", [1.0, 2.0], TypeError, "must be a dict"),
]
DATA = np.zeros((8, 2), np.float32)
ENTRY_POINTS = {
    "fit": lambda p: ebm.fit(
        two_params,
        DATA,
        init_params=p,
        objective="sm",
        optimizer=optax.sgd(0.1),
        num_steps=1,
        batch_size=4,
        rng_key=0,
        progress=False,
    ),
    "sample": lambda p: ebm.sample(
        two_params,
        params=p,
        kernel="mala",
        num_chains=2,
        num_warmup=2,
        num_samples=2,
        progress=False,
    ),
    "log_partition": lambda p: ebm.log_partition(two_params, p, method="quadrature"),
    "log_likelihood": lambda p: ebm.log_likelihood(two_params, p, DATA),
}


@pytest.fixture(scope="module")
def warm():
    """Eager operations of building the model, compiled once outside the checked blocks."""
    em = ebm.EnergyModel(two_params)
    em.init_params(jax.random.PRNGKey(0))
    ebm.EnergyModel(no_params)
    return em


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("case, params, exc, fragment", BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_bad_params_refused_before_compilation(warm, entry, case, params, exc, fragment):
    with no_compilation():
        with pytest.raises(exc) as info:
            ENTRY_POINTS[entry](params)
    assert fragment in str(info.value), f"{entry}/{case}: {info.value}"


@pytest.mark.parametrize("case, params, exc, fragment", BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_energy_refuses_bad_params(warm, case, params, exc, fragment):
    # Checked on the host before tracing: an energy under jit sees only structure and shapes.
    with no_compilation():
        with pytest.raises(exc) as info:
            warm.energy(params, {"x": jnp.zeros(2)})
    assert fragment in str(info.value), f"energy/{case}: {info.value}"


def test_fit_names_init_params_and_refuses_a_model_without_parameters(warm):
    with no_compilation():
        with pytest.raises(ValueError, match=r"init_params\['scale'\] must have shape"):
            ENTRY_POINTS["fit"]({**GOOD, "scale": jnp.ones(3)})
        with pytest.raises(ValueError, match="nothing to fit"):
            ebm.fit(
                no_params,
                DATA,
                objective="sm",
                optimizer=optax.sgd(0.1),
                num_steps=1,
                batch_size=4,
                rng_key=0,
                progress=False,
            )


def test_good_params_pass_every_entry_point_checks(warm):
    # The same dict is accepted (modules as pytrees) and the energy is the closed form.
    x = jnp.array([1.0, -2.0])
    expected = 0.5 * float(jnp.sum((A @ x) ** 2))
    assert float(warm.energy(GOOD, {"x": x})) == pytest.approx(expected, rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = ebm.log_partition(two_params, GOOD, method="quadrature")
    assert abs(est.log_z - LOG_Z) < 1e-5
