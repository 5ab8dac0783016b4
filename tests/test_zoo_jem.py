"""Joint energy models: the algebra of E(x, y) and E(x), bad input, a short training run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ebm_ppl.models import jem

import ebm_ppl as ebm
from ebm_ppl import apps

ARGS = (5, 4, (6,))


@pytest.fixture(scope="module")
def setup():
    em = ebm.EnergyModel(jem.model, *ARGS)
    params = em.init_params(jax.random.PRNGKey(0))
    # generic, non-zero biases so that no identity holds by accident
    params = {
        k: v + 0.3 * jax.random.normal(jax.random.PRNGKey(i), v.shape)
        for i, (k, v) in enumerate(sorted(params.items()))
    }
    x = jax.random.uniform(jax.random.PRNGKey(5), (7, 5), minval=-1.0, maxval=1.0)
    return em, params, x


def _mlp_logits(params, x):
    h = jax.nn.swish(x @ params["W0"] + params["b0"])
    return h @ params["W1"] + params["b1"]


def test_logits_are_the_classifier(setup):
    em, params, x = setup
    np.testing.assert_allclose(
        jem.logits(params, x, model_args=ARGS), _mlp_logits(params, x), rtol=1e-5, atol=1e-6
    )


def test_marginal_energy_is_minus_logsumexp(setup):
    em, params, x = setup
    f = _mlp_logits(params, x)
    want = -jax.nn.logsumexp(f, axis=-1)
    np.testing.assert_allclose(em.batch_energy(params, {"x": x}), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        jem.ood_scores(params, x, model_args=ARGS), want, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(apps.classifier_energy(f), want, rtol=1e-5, atol=1e-6)


def test_joint_energy_and_conditional_are_softmax(setup):
    _, params, x = setup
    joint = ebm.EnergyModel(jem.model, *ARGS, joint=True)
    assert joint.state_sites == ("x", "y")
    cond = ebm.EnergyModel(jem.model, *ARGS, y=2)

    @jax.jit  # one compiled program rather than an eager dispatch per operation
    def compute(params, x):
        e_xy = jnp.stack(
            [joint.batch_energy(params, {"x": x, "y": jnp.full(7, y)}) for y in range(4)], axis=1
        )
        pred = jem.predict(params, x, model_args=ARGS)
        return _mlp_logits(params, x), e_xy, pred, cond.batch_energy(params, {"x": x})

    f, e_xy, pred, e_cond = compute(params, x)
    np.testing.assert_allclose(e_xy, -f, rtol=1e-5, atol=1e-5)  # E(x, y) = -f(x)[y]
    # p(y | x) = exp(-E(x, y)) / Σ_y exp(-E(x, y)) = softmax f(x)
    np.testing.assert_allclose(jax.nn.softmax(-e_xy, axis=-1), pred, rtol=1e-5, atol=1e-6)
    # an observed label: the state is x alone and the energy is E(x, y)
    assert cond.state_sites == ("x",) and cond.data_sites == ("y",)
    np.testing.assert_allclose(e_cond, -f[:, 2], rtol=1e-5, atol=1e-5)


def test_energy_gradient_is_the_expected_logit_gradient(setup):
    em, params, x = setup

    @jax.jit
    def compute(params, x):
        # -∇x E(x) = ∇x logsumexp f(x) = Σ_y p(y | x) ∇x f(x)[y]
        jac = jax.vmap(jax.jacobian(lambda v: _mlp_logits(params, v)))(x)  # (n, K, D)
        p = jax.nn.softmax(_mlp_logits(params, x), axis=-1)
        want = jnp.einsum("nk,nkd->nd", p, jac)
        return jax.vmap(lambda v: em.score(params, {"x": v})["x"])(x), want

    got, want = compute(params, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_eqx_classifier():
    clf = jem.eqx_classifier(5, 3, 8, seed=1)
    em = ebm.EnergyModel(jem.model, 5, 3, classifier=clf)
    params = em.init_params(jax.random.PRNGKey(0))
    assert list(params) == ["net$params"]
    x = jnp.linspace(-1, 1, 10).reshape(2, 5)

    @jax.jit
    def compute(params, x):
        f = jem.logits(params, x, model_args=(5, 3), model_kwargs={"classifier": clf})
        return f, em.batch_energy(params, {"x": x})

    f, e = compute(params, x)
    assert f.shape == (2, 3)
    np.testing.assert_allclose(e, -jax.nn.logsumexp(f, axis=-1), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- bad input
def test_classifier_with_wrong_logit_shape():
    with pytest.raises(
        ValueError,
        match=r"classifier must return logits of shape \(num_classes,\) = \(4,\).*got \(3,\)",
    ):
        ebm.EnergyModel(jem.model, 5, 4, classifier=lambda x: x[:3])
    with pytest.raises(ValueError, match=r"classifier.*got \(2, 4\)"):
        ebm.EnergyModel(jem.model, 5, 4, classifier=lambda x: jnp.zeros((2, 4)) + x[0])
    with pytest.raises(TypeError, match="classifier must be callable"):
        ebm.EnergyModel(jem.model, 5, 4, classifier=3)


def test_bad_labels(setup):
    _, params, x = setup
    with pytest.raises(ValueError, match=r"y must hold classes in 0\.\.3"):
        jem.train(0, np.asarray(x), np.array([0, 1, 2, 3, 4, 0, 1]), num_classes=4, num_steps=1)
    with pytest.raises(ValueError, match=r"y must hold classes in 0\.\.3"):
        jem.train(0, np.asarray(x), np.array([0, 1, 2, 3, -1, 0, 1]), num_classes=4, num_steps=1)
    with pytest.raises(ValueError, match="y must have shape"):
        jem.train(0, np.asarray(x), np.zeros(6, int), num_classes=4, num_steps=1)
    with pytest.raises(ValueError, match="y must be a 1-D array of integer classes"):
        jem.train(0, np.asarray(x), np.zeros(7), num_classes=4, num_steps=1)
    with pytest.raises(ValueError, match="labelled marks no row"):
        jem.train(
            0,
            np.asarray(x),
            np.zeros(7, int),
            num_classes=4,
            labelled=np.zeros(7, bool),
            num_steps=1,
        )
    obj = jem.JEMObjective(np.asarray(x), np.full(7, 4), generative=None)
    with pytest.raises(ValueError, match=r"labelled_y must hold classes in 0\.\.3"):
        obj.build(ebm.EnergyModel(jem.model, *ARGS))
    with pytest.raises(ValueError, match="labelled_y must have shape"):
        jem.JEMObjective(np.asarray(x), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"labels must hold classes in 0\.\.3"):
        jem.sample_conditional(jax.random.PRNGKey(0), params, jnp.array([4]), model_args=ARGS)
    with pytest.raises(ValueError, match="marginal program"):
        jem.JEMObjective(np.asarray(x), np.zeros(7, int)).build(
            ebm.EnergyModel(jem.model, *ARGS, joint=True)
        )


def test_padding_and_zero_weight_share_the_program():
    em = ebm.EnergyModel(jem.model, *ARGS)
    params = em.init_params(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (6, 5), minval=-1.0, maxval=1.0)
    batch = {"x": x[:4]}
    # the first 4 rows labelled, the other two padding (NaN, an invalid class): never read
    obj = jem.JEMObjective(
        x.at[4:].set(jnp.nan),
        np.array([0, 1, 2, 3, 9, -1]),
        ebm.objectives.ReplayBuffer(num_mcmc_steps=1, buffer_size=8),
        generative_weight=0.0,
        num_labelled=4,
    ).build(em, batch_size=4)
    state = obj.init(jax.random.PRNGKey(3), params, batch)
    loss_fn = jax.jit(obj.loss)
    loss, (new_state, m) = loss_fn(params, state, batch, jax.random.PRNGKey(2))
    # weight 0: the loss is the cross-entropy alone, the buffer untouched, its metrics 0
    assert float(loss) == float(m["cross_entropy"]) and np.isfinite(float(loss))
    np.testing.assert_array_equal(
        new_state["generative"].buffer["x"], state["generative"].buffer["x"]
    )
    assert float(m["reinit_fraction"]) == 0.0 and float(m["pos_energy"]) == 0.0
    # another weight is a value in the state, not another compiled program
    loss_w, (state_w, m_w) = loss_fn(
        params, {**state, "weight": jnp.float32(0.5)}, batch, jax.random.PRNGKey(2)
    )
    assert loss_fn._cache_size() == 1
    assert float(m_w["cross_entropy"]) == float(m["cross_entropy"])
    np.testing.assert_allclose(
        float(loss_w) - float(m_w["cross_entropy"]),
        0.5 * float(m_w["energy_gap"]),
        rtol=1e-4,
        atol=1e-5,
    )
    assert not np.array_equal(state_w["generative"].buffer["x"], state["generative"].buffer["x"])
    with pytest.raises(ValueError, match=r"num_labelled must be <= the rows of labelled_x \(6\)"):
        jem.JEMObjective(x, np.zeros(6, int), num_labelled=7)
    with pytest.raises(ValueError, match="num_labelled must be an integer >= 1"):
        jem.JEMObjective(x, np.zeros(6, int), num_labelled=0)


# ------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained():
    xtr, ytr, xte, yte = jem.digits()
    labelled = np.arange(300) % 2 == 0  # semi-supervised: half the labels
    result = jem.train(
        0,
        xtr[:300],
        ytr[:300],
        num_classes=10,
        labelled=labelled,
        hidden=(32,),
        num_steps=100,
        batch_size=50,
        learning_rate=3e-3,
        num_mcmc_steps=5,
        buffer_size=200,
        log_every=100,
    )
    return result, xte, yte


def test_training_lowers_the_loss_and_classifies(trained):
    result, xte, yte = trained
    assert not result.flags["nonfinite"]
    ce = np.asarray(result.history["cross_entropy"])
    assert (
        ce[:5].mean() > 2.0 and ce[-20:].mean() < 0.5 * ce[:5].mean()
    )  # log 10 = 2.30 at the start
    acc = float(
        jnp.mean(jnp.argmax(jem.logits(result.params, xte, model_args=(64, 10, (32,))), -1) == yte)
    )
    assert acc > 0.6  # chance is 0.1
    reinit = np.asarray(result.history["reinit_fraction"])
    assert 0.0 < reinit.mean() < 0.15  # restarts from noise at about 5%
    # the buffer holds Langevin negatives, clipped into the data box
    buf = np.asarray(result.obj_state["generative"].buffer["x"])
    assert buf.shape == (200, 64) and np.all(np.abs(buf) <= 1.0)


def test_conditional_samples(trained):
    result, _, _ = trained
    labels = jnp.arange(10)
    s = jem.sample_conditional(
        jax.random.PRNGKey(3), result.params, labels, num_steps=30, model_args=(64, 10, (32,))
    )
    assert s.shape == (10, 64) and bool(jnp.all(jnp.abs(s) <= 1.0))
    # Langevin toward p(x | y) raises f(x)[y] above its value at the uniform start
    start = jax.random.uniform(jax.random.PRNGKey(3), (10, 64), minval=-1.0)
    f0, f1 = jnp.split(
        jem.logits(result.params, jnp.concatenate([start, s]), model_args=(64, 10, (32,))), 2
    )
    assert float(jnp.mean(f1[labels, labels])) > float(jnp.mean(f0[labels, labels]))
