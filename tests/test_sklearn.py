"""scikit-learn estimators: BernoulliRBM (drop-in, true log-likelihood) and EnergyDensity."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from ebm_ppl.models import rbm as rbm_model
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import BernoulliRBM as SkBernoulliRBM
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import check_estimator

import ebm_ppl as ebm
from ebm_ppl.sklearn import BernoulliRBM, EnergyDensity

#: checks of scikit-learn's suite that feed real-valued (non-binary) data to ``fit``, which a
#: Bernoulli RBM refuses by design (its likelihood is defined on {0, 1} vectors only); they run
#: on binarized data in ``test_check_estimator_on_binary_data`` below.
NON_BINARY_CHECKS = {
    "check_fit_score_takes_y",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_estimators_dtypes",
    "check_dtype_object",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",  # finite but non-binary rows are refused first
    "check_estimator_sparse_tag",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_transformer_preserve_dtypes",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_dict_unchanged",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_predict1d",
    "check_positive_only_tag_during_fit",  # negative values are refused as non-binary
}


@pytest.fixture(scope="module")
def digits():
    train, test = ebm.data.binarized_digits()
    return train, test, load_digits().target[: len(train)]


@pytest.fixture(scope="module")
def fitted(digits):
    train, _, _ = digits
    options = dict(n_components=16, n_iter=3, batch_size=10, learning_rate=0.05, random_state=0)
    return BernoulliRBM(**options).fit(train), SkBernoulliRBM(**options).fit(train)


def test_drop_in_for_scikit_learn(fitted, digits):
    ours, theirs = fitted
    train, test, _ = digits
    assert ours.get_params() == {**theirs.get_params(), **{k: ours.get_params()[k] for k in
                                 ("log_z_method", "exact_max_units", "ais_num_chains",
                                  "ais_num_temperatures")}}  # fmt: skip
    for name in ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_"):
        assert getattr(ours, name).shape == getattr(theirs, name).shape
        # the same training: the same random numbers give the same weights
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
    assert ours.n_features_in_ == theirs.n_features_in_ == 64
    assert ours.transform(test).shape == theirs.transform(test).shape == (297, 16)
    np.testing.assert_array_equal(ours.transform(test), theirs.transform(test))
    assert ours.gibbs(test[:5]).shape == (5, 64)
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())


def test_score_samples_is_our_exact_log_likelihood(fitted, digits):
    ours, theirs = fitted
    _, test, _ = digits
    assert ours.log_z_method_ == "exact" and ours.log_z_stderr_ == 0.0
    ll = ebm.log_likelihood(rbm_model.model, ours.params(), {"v": test}, model_args=(64, 16))
    np.testing.assert_allclose(ours.score_samples(test), ll.per_example, rtol=2e-6)
    assert ours.score(test) == pytest.approx(ll.mean, rel=2e-6)
    # scikit-learn's pseudo-likelihood is another quantity (D times a one-unit term, at a
    # random unit): its mean may come close, its values per image do not
    assert np.max(np.abs(theirs.score_samples(test) - ll.per_example)) > 10.0


def test_log_likelihood_is_normalized_and_ais_for_large_layers():
    rng = np.random.default_rng(0)
    X = (rng.random((40, 6)) < 0.4).astype(np.float64)
    est = BernoulliRBM(n_components=3, n_iter=20, learning_rate=0.1, random_state=1).fit(X)
    every = np.array(list(itertools.product([0.0, 1.0], repeat=6)))
    assert np.exp(est.score_samples(every)).sum() == pytest.approx(1.0, rel=1e-12)
    exact = est.log_z_
    ais = BernoulliRBM(n_components=3, n_iter=20, learning_rate=0.1, random_state=1,
                       exact_max_units=2, ais_num_chains=128, ais_num_temperatures=200).fit(X)  # fmt: skip
    np.testing.assert_allclose(
        ais.score_samples(every), est.score_samples(every) + exact - ais.log_z_, rtol=1e-12
    )
    assert ais.log_z_method_ == "ais" and ais.log_z_stderr_ > 0
    assert abs(ais.log_z_ - exact) < 4.0 * ais.log_z_stderr_ + 1e-3
    # partial_fit: log Z follows the new weights
    est.partial_fit(X[:10])
    assert est.log_z_ != exact  # recomputed for the new weights
    assert np.exp(est.score_samples(every)).sum() == pytest.approx(1.0, rel=1e-12)


def test_pipeline_grid_search(digits):
    train, _, labels = digits
    scores = []
    for rbm_class in (BernoulliRBM, SkBernoulliRBM):
        pipe = Pipeline([
            ("rbm", rbm_class(n_iter=5, learning_rate=0.06, random_state=0)),
            ("clf", LogisticRegression(max_iter=200, C=10.0)),
        ])  # fmt: skip
        search = GridSearchCV(pipe, {"rbm__n_components": [8, 16]}, cv=2)
        scores.append(search.fit(train[:600], labels[:600]).best_score_)
    # the same features as scikit-learn's own RBM pipeline, so the same accuracy
    assert scores[0] == scores[1]
    assert scores[0] > 0.3  # three times chance on ten digits
    assert search.best_params_["rbm__n_components"] in (8, 16)


def test_check_estimator_the_checks_that_apply():
    est = BernoulliRBM(n_components=2, n_iter=2, batch_size=4)
    results = check_estimator(est, on_fail=None, on_skip=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed == NON_BINARY_CHECKS
    for r in results:
        if r["status"] == "failed":
            # our refusal, or scikit-learn's report wrapped around it
            chain, exc = [], r["exception"]
            while exc is not None and len(chain) < 5:
                chain.append(str(exc))
                exc = exc.__cause__ or exc.__context__
            message = " | ".join(chain)
            assert "must be binary" in message or "negative input" in message, r["check_name"]
    assert sum(r["status"] == "passed" for r in results) >= 15


class _Binarizing(BernoulliRBM):
    """The estimator behind a fixed binarization ``x > 1``, to run the remaining checks."""

    @staticmethod
    def _binary(X):
        if hasattr(X, "tocsr"):
            X = X.tocsr(copy=True)
            X.data = (np.asarray(X.data) > 1.0).astype(X.dtype)
            return X
        if hasattr(X, "iloc"):
            return (X > 1.0).astype(float)
        try:
            arr = np.asarray(X)
            if arr.dtype.kind == "O":
                arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            return X
        if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
            return X  # left to the estimator's own validation (complex, NaN, objects)
        return (arr > 1.0).astype(arr.dtype if arr.dtype.kind == "f" else np.float64)

    def fit(self, X, y=None):
        return super().fit(self._binary(X), y)

    def partial_fit(self, X, y=None):
        return super().partial_fit(self._binary(X), y)

    def score_samples(self, X):
        return super().score_samples(self._binary(X))


def test_check_estimator_on_binary_data():
    results = check_estimator(
        _Binarizing(n_components=2, n_iter=2, batch_size=4), on_fail=None, on_skip=None
    )
    failed = {
        r["check_name"]: str(r["exception"])[:200] for r in results if r["status"] == "failed"
    }
    assert failed == {}


def test_non_binary_data_is_refused(digits):
    grey = load_digits().data[:50]  # grey levels 0..16
    for call in (
        lambda: BernoulliRBM(n_components=2).fit(grey),
        lambda: BernoulliRBM(n_components=2).partial_fit(grey / 16.0),
    ):
        with pytest.raises(ValueError, match=r"X must be binary \(0/1\)"):
            call()
    est = BernoulliRBM(n_components=2, n_iter=1).fit(digits[0][:50])
    with pytest.raises(ValueError, match="score_samples: X must be binary"):
        est.score_samples(grey / 16.0)
    assert est.transform(grey / 16.0).shape == (50, 2)  # probabilities in [0, 1]: as sklearn


# ---------------------------------------------------------------------------------- EnergyDensity
def gaussian(dim=1):
    mu = numpyro.param("mu", jnp.zeros(dim))
    x = numpyro.sample("x", ebm.Flat((dim,)))
    ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))


def test_energy_density_in_a_pipeline():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 1.0, size=(400, 1)).astype(np.float32)
    est = EnergyDensity(gaussian, objective="sm", num_steps=300, batch_size=100,
                        learning_rate=0.05, log_z_method="quadrature", sample_kernel="mala",
                        random_state=0)  # fmt: skip
    pipe = Pipeline([("scale", StandardScaler(with_std=False)), ("density", est)]).fit(X)
    fitted = pipe.named_steps["density"]
    mu = float(fitted.params_["mu"][0])
    assert abs(mu) < 0.05  # score matching: the centred data's mean
    x = np.linspace(-2.0, 2.0, 5, dtype=np.float32)[:, None] + 3.0
    centred = x[:, 0] - float(pipe.named_steps["scale"].mean_[0])
    expected = -0.5 * (centred - mu) ** 2 - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(pipe.score_samples(x), expected, rtol=1e-4, atol=1e-4)
    assert pipe.score(x) == pytest.approx(float(np.mean(expected)), abs=1e-4)
    draws = fitted.sample(40, random_state=1)
    assert draws.shape == (40, 1) and np.all(np.isfinite(draws))
    assert clone(est).get_params()["objective"] == "sm"


@pytest.mark.parametrize(
    "check",
    [
        ec.check_parameters_default_constructible,
        ec.check_get_params_invariance,
        ec.check_set_params,
        ec.check_no_attributes_set_in_init,
        ec.check_estimators_unfitted,
    ],
)
def test_energy_density_estimator_checks(check):
    # the rest of the suite fits dozens of times, each a compiled training loop: see docs
    check("EnergyDensity", EnergyDensity(gaussian, num_steps=5, batch_size=4))


def test_energy_density_bad_input():
    with pytest.raises(TypeError, match="model must be a NumPyro model"):
        EnergyDensity().fit(np.zeros((4, 1)))
    with pytest.raises(ValueError, match="random_state must be an int"):
        EnergyDensity(gaussian, random_state=np.random.RandomState(0)).fit(np.zeros((4, 1)))
