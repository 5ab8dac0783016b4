"""Persistent contrastive divergence with parallel-tempering negative chains.

Two models whose maximum-likelihood estimate is known exactly and whose modes a local kernel
does not cross: a 1-D mixture of two unit Gaussians 8 sd apart with a learnable weight (MALA),
and a fully connected ferromagnet of 6 spins with a learnable field (block Gibbs). PCD whose
persistent chains all start in the data's minority mode keeps them there without tempering, so
its weight (field) runs away from the data's; with ``tempering=`` the chains re-weight the
modes and the fit lands on the exact MLE (the mixture shows both; the ferromagnet's untempered
field has no fixed point, so only the tempered fit and its chains' phases are checked).
Then: a tempered fit checkpointed and resumed equals the uninterrupted one bit for bit, and
bad ``tempering=`` options fail before compiling.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

import ebm_ppl as ebm
from ebm_ppl.objectives import PersistentContrastiveDivergence

MEANS = (-4.0, 4.0)  # unit variances: 8 sd apart
WEIGHT = 0.75  # of the right mode


def mixture():
    a = numpyro.param("a", 0.0)  # logit of the right mode's weight
    x = numpyro.sample("x", ebm.Flat(()))
    log_w = jax.nn.log_sigmoid(jnp.stack([-a, a]))
    # exactly normalized up to the constant sqrt(2 pi): E is -log p + const
    ebm.energy("E", -jax.nn.logsumexp(log_w - 0.5 * (x - jnp.asarray(MEANS)) ** 2))


def mixture_mle(x: np.ndarray) -> float:
    """The exact MLE of the right mode's weight (EM fixed point; means and sds known)."""
    w = 0.5
    for _ in range(200):
        lp = np.stack(
            [np.log1p(-w) - 0.5 * (x - MEANS[0]) ** 2, np.log(w) - 0.5 * (x - MEANS[1]) ** 2]
        )
        w = float(np.mean(np.exp(lp[1] - np.logaddexp(lp[0], lp[1]))))
    return w


N_SPINS, COUPLING, FIELD = 6, 1.0, 0.1


def ferromagnet():
    h = numpyro.param("h", 0.0)
    s = numpyro.sample("s", ebm.Spins(N_SPINS))
    m = jnp.sum(s)
    # -J sum_{i<j} s_i s_j - h sum_i s_i, with sum_{i<j} s_i s_j = (M^2 - n) / 2
    ebm.energy("E", -COUPLING * 0.5 * (m**2 - N_SPINS) - h * m)


_STATES = np.array(list(itertools.product([-1.0, 1.0], repeat=N_SPINS)))
_M = _STATES.sum(1)


def _magnetization(h: float) -> float:
    """Exact E_h[sum_i s_i] of the ferromagnet by enumeration (64 states)."""
    logp = COUPLING * 0.5 * (_M**2 - N_SPINS) + h * _M
    p = np.exp(logp - logp.max())
    return float(np.sum(p * _M) / p.sum())


def ferromagnet_mle(mean_m: float) -> float:
    """The exact MLE of the field: E_h[M] = mean M of the data (monotone in h; bisection)."""
    lo, hi = -5.0, 5.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _magnetization(mid) < mean_m else (lo, mid)
    return 0.5 * (lo + hi)


def _ferromagnet_data(n: int) -> np.ndarray:
    logp = COUPLING * 0.5 * (_M**2 - N_SPINS) + FIELD * _M
    p = np.exp(logp - logp.max())
    idx = np.random.default_rng(0).choice(len(_STATES), size=n, p=p / p.sum())
    return _STATES[idx].astype(np.float32)


def _mixture_data(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    right = rng.uniform(size=n) < WEIGHT
    return (np.where(right, MEANS[1], MEANS[0]) + rng.standard_normal(n)).astype(np.float32)


def _fit(model, data, objective, num_steps, lr, seed=0, **kw):
    return ebm.fit(
        model,
        data,
        objective=objective,
        optimizer=optax.adam(optax.cosine_decay_schedule(lr, num_steps, alpha=0.0)),
        num_steps=num_steps,
        batch_size=100,
        rng_key=jax.random.PRNGKey(seed),
        log_every=num_steps,
        progress=False,
        **kw,
    )


class _Started:
    """A PCD whose chains start at given states (init is the objective's, the data swapped)."""

    def __init__(self, spec, starts):
        self.spec, self.starts = spec, starts

    def build(self, model, **context):
        obj = self.spec.build(model, **context)
        starts = self.starts

        def init(rng_key, params, batch):
            return obj.init(rng_key, params, {**batch, **starts})

        return ebm.objectives.Objective(init, obj.loss)


@pytest.fixture(scope="module")
def mixture_fits():
    data = _mixture_data(2000)
    starts = {"x": jnp.full((64,), MEANS[0], jnp.float32)}  # all in the minority mode
    fits = {}
    for name, tempering in (("mala", None), ("pt", {"num_temperatures": 6, "num_warmup": 600})):
        spec = PersistentContrastiveDivergence(
            "mala", step_size=0.5, num_chains=64, num_mcmc_steps=2, tempering=tempering
        )
        fits[name] = _fit(mixture, data, _Started(spec, starts), 600, 0.1)
    return data, fits


def test_tempered_pcd_fits_mixture_weight(mixture_fits):
    data, fits = mixture_fits
    mle = mixture_mle(data.astype(np.float64))
    w_pt = float(jax.nn.sigmoid(fits["pt"].params["a"]))
    w_mala = float(jax.nn.sigmoid(fits["mala"].params["a"]))
    # chains stuck in the left mode: the data's 0.75 pulls the weight on without end
    assert abs(w_mala - mle) > 0.1, (w_mala, mle)
    # sd of the weight's gradient noise over the last updates is ~0.01 (64 chains, 100 data)
    assert abs(w_pt - mle) < 0.03, (w_pt, mle)
    last = fits["pt"].history.last()
    assert 0.3 < last["swap_acceptance"] <= 1.0
    assert last["barrier"] > 0.0


def test_tempered_pcd_fits_ferromagnet_field():
    # block Gibbs alone cannot leave the start's phase until the field grows large enough to
    # tilt it (then the chains cross together and the field swings back): no fixed point
    data = _ferromagnet_data(2000)
    mle = ferromagnet_mle(float(data.sum(1).mean()))
    starts = {"s": -jnp.ones((64, N_SPINS), jnp.float32)}  # all in the minority phase
    spec = PersistentContrastiveDivergence("gibbs", num_chains=64, tempering=6)
    res = _fit(ferromagnet, data, _Started(spec, starts), 400, 0.05)
    h = float(res.params["h"])
    assert abs(h - mle) < 0.03, (h, mle)
    # the 64 chains at the end: independent draws of the model at h, both phases present in
    # the exact proportion (binomial, z = 3.29)
    up = float(np.mean(np.asarray(res.obj_state.chains["s"]).sum(1) > 0))
    logp = COUPLING * 0.5 * (_M**2 - N_SPINS) + h * _M
    p = np.exp(logp - logp.max())
    p_up = float(p[_M > 0].sum() / p.sum())
    assert abs(up - p_up) < 3.29 * np.sqrt(p_up * (1 - p_up) / 64), (up, p_up)


def test_tempered_fit_resumes_bit_for_bit(tmp_path):
    data = _mixture_data(400)
    spec = PersistentContrastiveDivergence(
        "mala",
        step_size=0.5,
        num_chains=8,
        num_mcmc_steps=2,
        tempering={"num_temperatures": 3, "num_warmup": 20},
    )

    def run(num_steps, folder):
        return ebm.fit(
            mixture,
            data,
            objective=spec,
            optimizer=optax.adam(1e-2),
            num_steps=num_steps,
            batch_size=50,
            rng_key=jax.random.PRNGKey(3),
            checkpoint_dir=folder,
            checkpoint_every=6,
            log_every=6,
            progress=False,
        )

    whole = run(12, tmp_path / "whole")
    run(6, tmp_path / "split")
    resumed = run(12, tmp_path / "split")
    assert resumed.flags["resumed_from"] == 6
    assert int(resumed.obj_state.tempering.iteration[0]) == 24
    a = jax.tree.leaves((whole.params, whole.obj_state))
    b = jax.tree.leaves((resumed.params, resumed.obj_state))
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    "tempering, error, match",
    [
        (1, ValueError, "tempering: num_temperatures must be >= 2"),
        ("8", TypeError, "tempering must be None, an int"),
        (True, TypeError, "tempering must be None, an int"),
        ({"betas": [0.0, 0.7, 0.5, 1.0]}, ValueError, "tempering: betas"),
        ({"betas": [0.1, 0.5, 1.0]}, ValueError, "tempering: betas"),
        ({"swap": "random"}, ValueError, "tempering: swap must be one of"),
        ({"temperatures": 4}, ValueError, "tempering has unknown option"),
        ({"num_warmup": -1}, ValueError, "tempering: num_warmup"),
    ],
)
def test_bad_tempering_options(tempering, error, match):
    with pytest.raises(error, match=match):
        PersistentContrastiveDivergence(tempering=tempering)


def test_bad_reference_names_the_argument():
    spec = PersistentContrastiveDivergence(
        "mala", tempering={"reference": dist.Normal(jnp.zeros(3), 1.0).to_event(1)}
    )
    with pytest.raises(ValueError, match=r"tempering\['reference'\]"):
        spec.build(ebm.EnergyModel(mixture))
    # a Flat site without data to fit a Gaussian to, and no reference
    with pytest.raises(ValueError, match=r"tempering\['reference'\].*improper"):
        PersistentContrastiveDivergence("mala", tempering=3).build(ebm.EnergyModel(mixture))
