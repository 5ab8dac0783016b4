"""scikit-learn estimators: a ``BernoulliRBM`` that reports true log-likelihoods, ``EnergyDensity``.

* :class:`BernoulliRBM` is a drop-in for ``sklearn.neural_network.BernoulliRBM``: the same
  constructor arguments, attributes (``components_``, ``intercept_hidden_``,
  ``intercept_visible_``, ``h_samples_``), training (persistent contrastive divergence, the same
  updates and random numbers, so the same ``random_state`` gives the same weights), ``transform``
  and ``gibbs``; but ``score_samples`` returns the **true** log-likelihood ``log p(v)``, exact
  (enumerating the smaller layer) for small layers and annealed importance sampling otherwise,
  where scikit-learn's returns a one-unit pseudo-likelihood (scikit-learn#23179). The method is
  recorded in ``log_z_method_``.
* :class:`EnergyDensity` fits any NumPyro energy model with any objective of :func:`ebm_ppl.fit`
  and offers ``score_samples`` (log-likelihood through a log partition function), ``score`` and
  ``sample`` (MCMC), like ``sklearn.neighbors.KernelDensity``.

Both work in ``Pipeline`` and ``GridSearchCV``. Needs scikit-learn (the ``sklearn`` extra).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax

try:
    from sklearn.base import BaseEstimator, DensityMixin
    from sklearn.neural_network import BernoulliRBM as _SkBernoulliRBM
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError("ebm_ppl.sklearn needs scikit-learn: pip install 'ebm_ppl[sklearn]'") from err

from ebm_ppl.infer.driver import sample as _sample
from ebm_ppl.models import rbm as _rbm
from ebm_ppl.partition.base import LogZEstimate, log_partition
from ebm_ppl.partition.likelihood import log_likelihood
from ebm_ppl.train.fit import fit as _fit

__all__ = ["BernoulliRBM", "EnergyDensity", "EXACT_MAX_UNITS"]

#: Largest smaller layer whose states :class:`BernoulliRBM` enumerates for an exact ``log Z``.
EXACT_MAX_UNITS = 20


def _require_binary(X: np.ndarray, who: str) -> None:
    if X.size and not np.all((X == 0) | (X == 1)):
        bad = X[(X != 0) & (X != 1)]
        raise ValueError(
            f"{who}: X must be binary (0/1) for a Bernoulli RBM, got values such as "
            f"{float(bad.flat[0])!r}; binarize it first (e.g. sklearn.preprocessing.Binarizer)"
        )


def _exact_log_z(W: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """``log Z`` of a Bernoulli RBM in float64, enumerating the smaller layer (in chunks)."""
    if W.shape[1] > W.shape[0]:  # enumerate the visible layer instead: exchange the roles
        W, b, c = W.T, c, b
    n = W.shape[1]  # enumerated (hidden) units; the other layer is summed in closed form
    total = -np.inf
    chunk = 1 << min(n, 16)
    for start in range(0, 1 << n, chunk):
        idx = np.arange(start, min(start + chunk, 1 << n), dtype=np.uint64)
        h = ((idx[:, None] >> np.arange(n, dtype=np.uint64)) & 1).astype(np.float64)
        terms = h @ c + np.logaddexp(0.0, b + h @ W.T).sum(axis=1)
        total = np.logaddexp(total, np.logaddexp.reduce(terms))
    return float(total)


class BernoulliRBM(_SkBernoulliRBM):
    """Bernoulli RBM, a drop-in for scikit-learn's, whose ``score_samples`` is ``log p(v)``.

    Training, ``transform`` (``P(h = 1 | v)``) and ``gibbs`` are scikit-learn's (persistent
    contrastive divergence; the same ``random_state`` gives the same weights); the energy is
    ``E(v, h) = -intercept_visible_·v - intercept_hidden_·h - hᵀ components_ v``, the model of
    :mod:`ebm_ppl.models.rbm` with ``W = components_.T``, ``b = intercept_visible_``,
    ``c = intercept_hidden_`` (:meth:`params`).

    ``log Z`` is exact when the smaller layer has at most ``exact_max_units`` units
    (``log_z_method="auto"``), else estimated by annealed importance sampling
    (:func:`ebm_ppl.log_partition` with ``method="ais"``, its standard error in
    ``log_z_stderr_``). It is computed when first needed (``score_samples``, ``log_z_``) and kept
    until the weights change, so a pipeline that only transforms never pays for it. Data given to ``fit``,
    ``partial_fit`` and ``score_samples`` must be binary; ``transform`` and ``gibbs`` accept
    values in ``[0, 1]`` as scikit-learn's.

    Args:
        n_components, learning_rate, batch_size, n_iter, verbose, random_state: as
            ``sklearn.neural_network.BernoulliRBM``.
        log_z_method: ``"auto"``, ``"exact"`` or ``"ais"``.
        exact_max_units: largest smaller layer enumerated by ``"auto"`` (2^units states).
        ais_num_chains, ais_num_temperatures: AIS settings (more: smaller ``log_z_stderr_``).

    Attributes:
        components_, intercept_hidden_, intercept_visible_, h_samples_, n_features_in_: as
            scikit-learn's.
        log_z_: ``log Z`` of the fitted model; log_z_stderr_: its standard error (0 when
            exact); log_z_method_: ``"exact"`` or ``"ais"``.

    Examples:
        >>> import numpy as np
        >>> X = (np.random.default_rng(0).random((50, 6)) < 0.3).astype(float)
        >>> rbm = BernoulliRBM(n_components=3, n_iter=5, random_state=0).fit(X)
        >>> rbm.transform(X).shape, rbm.log_z_method_
        ((50, 3), 'exact')
        >>> bool(np.all(rbm.score_samples(X) < 0))  # log-probabilities of binary vectors
        True
    """

    _parameter_constraints: dict = {
        **_SkBernoulliRBM._parameter_constraints,
        "log_z_method": [StrOptions({"auto", "exact", "ais"})],
        "exact_max_units": [Interval(numbers.Integral, 1, 24, closed="both")],
        "ais_num_chains": [Interval(numbers.Integral, 2, None, closed="left")],
        "ais_num_temperatures": [Interval(numbers.Integral, 2, None, closed="left")],
    }

    def __init__(
        self,
        n_components: int = 256,
        *,
        learning_rate: float = 0.1,
        batch_size: int = 10,
        n_iter: int = 10,
        verbose: int = 0,
        random_state: Any = None,
        log_z_method: str = "auto",
        exact_max_units: int = EXACT_MAX_UNITS,
        ais_num_chains: int = 256,
        ais_num_temperatures: int = 1000,
    ):
        super().__init__(
            n_components=n_components,
            learning_rate=learning_rate,
            batch_size=batch_size,
            n_iter=n_iter,
            verbose=verbose,
            random_state=random_state,
        )
        self.log_z_method = log_z_method
        self.exact_max_units = exact_max_units
        self.ais_num_chains = ais_num_chains
        self.ais_num_temperatures = ais_num_temperatures

    def fit(self, X: Any, y: Any = None) -> BernoulliRBM:
        """Fit by persistent contrastive divergence (scikit-learn's), then compute ``log Z``."""
        self._check_binary_input(X, "BernoulliRBM.fit", reset=True)
        super().fit(X, y)
        self._log_z_cache: dict[str, Any] = {}  # filled when a likelihood is first asked for
        return self

    def partial_fit(self, X: Any, y: Any = None) -> BernoulliRBM:
        """One PCD pass over the mini-batch ``X`` (``log Z`` is recomputed when next needed)."""
        self._check_binary_input(
            X, "BernoulliRBM.partial_fit", reset=not hasattr(self, "components_")
        )
        super().partial_fit(X, y)
        self._log_z_cache = {}  # the weights changed
        return self

    def _check_binary_input(self, X: Any, who: str, *, reset: bool) -> None:
        # scikit-learn's own validation first (types, NaN/inf, shapes, feature names)
        v = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=reset)
        _require_binary(v.data if hasattr(v, "toarray") else v, who)

    def params(self) -> dict[str, np.ndarray]:
        """The parameters as :mod:`ebm_ppl.models.rbm` names them: ``W (D, H)``, ``b``, ``c``.

        Use them with the rest of the library, e.g. ``ebm.log_likelihood(rbm.model,
        est.params(), {"v": X}, model_args=(D, H))`` or ``ebm.sample``.
        """
        check_is_fitted(self)
        return {
            "W": np.asarray(self.components_.T, np.float32),
            "b": np.asarray(self.intercept_visible_, np.float32),
            "c": np.asarray(self.intercept_hidden_, np.float32),
        }

    def _method(self) -> str:
        if self.log_z_method != "auto":
            return self.log_z_method
        return "exact" if min(self.components_.shape) <= self.exact_max_units else "ais"

    def _log_z(self) -> dict[str, Any]:
        check_is_fitted(self)
        cache = self.__dict__.get("_log_z_cache")
        if cache is None:  # fitted by scikit-learn's methods (e.g. unpickled from its class)
            cache = self._log_z_cache = {}
        if not cache:
            cache.update(self._compute_log_z())
        return cache

    @property
    def log_z_(self) -> float:
        """``log Z`` of the fitted model (computed on first use, then kept until the next fit)."""
        return float(self._log_z()["log_z"])

    @property
    def log_z_stderr_(self) -> float:
        """Standard error of :attr:`log_z_` (0 when exact)."""
        return float(self._log_z()["stderr"])

    @property
    def log_z_method_(self) -> str:
        """How :attr:`log_z_` was obtained: ``"exact"`` or ``"ais"``."""
        return str(self._log_z()["method"])

    def _compute_log_z(self) -> dict[str, Any]:
        method = self._method()
        W = np.asarray(self.components_.T, np.float64)
        if method == "exact":
            if min(W.shape) > 24:
                raise ValueError(
                    f"log_z_method='exact' enumerates 2^{min(W.shape)} states; use 'ais'"
                )
            log_z, stderr = _exact_log_z(W, self.intercept_visible_, self.intercept_hidden_), 0.0
        else:
            seed = check_random_state(self.random_state).randint(2**31 - 1)
            est = log_partition(
                _rbm.model,
                self.params(),
                method="ais",
                rng_key=jax.random.PRNGKey(seed),
                model_args=W.shape,
                num_chains=self.ais_num_chains,
                num_temperatures=self.ais_num_temperatures,
            )
            log_z, stderr = float(est.log_z), float(est.stderr)
        return {"log_z": log_z, "stderr": stderr, "method": method}

    def score_samples(self, X: Any) -> np.ndarray:
        """The log-likelihood ``log p(v) = -F(v) - log Z`` of each row of binary ``X``.

        Not scikit-learn's pseudo-likelihood: the normalized log-probability of every visible
        vector under the model (sums over all ``2^D`` binary vectors to 1).

        Returns:
            ``(n_samples,)`` float64 array.
        """
        check_is_fitted(self)
        v = validate_data(self, X, accept_sparse="csr", reset=False, dtype=np.float64)
        if hasattr(v, "toarray"):
            v = v.toarray()
        _require_binary(v, "BernoulliRBM.score_samples")
        return -self._free_energy(v) - self.log_z_

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood of binary ``X`` (higher is better, as scikit-learn expects)."""
        return float(np.mean(self.score_samples(X)))


# ---------------------------------------------------------------------------------- EnergyDensity
class EnergyDensity(DensityMixin, BaseEstimator):
    """Density estimation with any NumPyro energy model and any objective of :func:`ebm_ppl.fit`.

    ``fit(X)`` binds the rows of ``X`` to the model's data site and runs :func:`ebm_ppl.fit`;
    ``score_samples(X)`` is ``log p(x) = -F(x) - log Z`` (:func:`ebm_ppl.log_likelihood` with
    ``log Z`` from :func:`ebm_ppl.log_partition`, computed once after fitting, method
    ``log_z_method``); ``sample(n)`` draws from the fitted model by MCMC (:func:`ebm_ppl.sample`).

    Args:
        model: a NumPyro EBM program with a state site of shape ``(n_features,)``.
        objective: an objective name (``"pcd"``, ``"nce"``, ``"sm"``, ...) or spec.
        learning_rate: Adam's step size.
        num_steps, batch_size: as :func:`ebm_ppl.fit`.
        data_site: the site the rows bind to (default: the only matching one).
        model_args, model_kwargs: the model's arguments.
        log_z_method: ``"exact"``, ``"quadrature"``, ``"ais"``, ...; ``None``: no likelihood
            (``score_samples`` refused).
        log_z_options: options of that method.
        sample_kernel: the MCMC kernel of :meth:`sample`.
        random_state: an int seed (``None``: 0).

    Attributes:
        params_: the fitted parameters; fit_result_: the :class:`~ebm_ppl.FitResult`;
        log_z_: the :class:`~ebm_ppl.LogZEstimate`; n_features_in_: columns of ``X``.

    Examples:
        >>> import jax.numpy as jnp, numpy as np, numpyro, ebm_ppl as ebm
        >>> def gaussian(dim=2):
        ...     mu = numpyro.param("mu", jnp.zeros(dim))
        ...     x = numpyro.sample("x", ebm.Flat((dim,)))
        ...     ebm.energy("E", 0.5 * jnp.sum((x - mu) ** 2))
        >>> X = np.random.default_rng(0).normal(1.0, 1.0, size=(200, 2)).astype(np.float32)
        >>> est = EnergyDensity(gaussian, objective="sm", num_steps=200, batch_size=50,
        ...                     learning_rate=0.05, log_z_method="quadrature")
        >>> est.get_params()["objective"], est.log_z_method
        ('sm', 'quadrature')
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        *,
        objective: Any = "pcd",
        learning_rate: float = 1e-2,
        num_steps: int = 1000,
        batch_size: int = 64,
        data_site: str | None = None,
        model_args: Sequence[Any] = (),
        model_kwargs: Mapping[str, Any] | None = None,
        log_z_method: str | None = "exact",
        log_z_options: Mapping[str, Any] | None = None,
        sample_kernel: Any = "auto",
        random_state: int | None = None,
    ):
        self.model = model
        self.objective = objective
        self.learning_rate = learning_rate
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.data_site = data_site
        self.model_args = model_args
        self.model_kwargs = model_kwargs
        self.log_z_method = log_z_method
        self.log_z_options = log_z_options
        self.sample_kernel = sample_kernel
        self.random_state = random_state

    def _seed(self) -> int:
        if self.random_state is None:
            return 0
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        raise ValueError(f"random_state must be an int or None, got {self.random_state!r}")

    def fit(self, X: Any, y: Any = None) -> EnergyDensity:
        """Fit the model's parameters to the rows of ``X`` ``(n_samples, n_features)``."""
        if self.model is None or not callable(self.model):
            raise TypeError(f"model must be a NumPyro model (a callable), got {self.model!r}")
        X = validate_data(self, X, dtype=np.float32, reset=True)
        batch = min(int(self.batch_size), X.shape[0])
        result = _fit(
            self.model,
            X,
            objective=self.objective,
            optimizer=optax.adam(self.learning_rate),
            num_steps=self.num_steps,
            batch_size=batch,
            rng_key=jax.random.PRNGKey(self._seed()),
            data_site=self.data_site,
            model_args=tuple(self.model_args),
            model_kwargs=dict(self.model_kwargs or {}),
            progress=False,
        )
        self.fit_result_ = result
        self.params_ = result.params
        self.log_z_: LogZEstimate | None = None
        if self.log_z_method is not None:
            self.log_z_ = log_partition(
                self.model,
                self.params_,
                method=self.log_z_method,
                rng_key=jax.random.PRNGKey(self._seed() + 1),
                model_args=tuple(self.model_args),
                model_kwargs=dict(self.model_kwargs or {}),
                **dict(self.log_z_options or {}),
            )
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """``log p(x)`` of each row of ``X`` under the fitted model, ``(n_samples,)``."""
        check_is_fitted(self, "params_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        if self.log_z_ is None:
            raise ValueError("score_samples needs log Z: set log_z_method (e.g. 'exact', 'ais')")
        ll = log_likelihood(
            self.model,
            self.params_,
            X,
            log_z=self.log_z_,
            model_args=tuple(self.model_args),
            model_kwargs=dict(self.model_kwargs or {}),
            data_site=self.data_site,
        )
        return np.asarray(ll.per_example, np.float64)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood of the rows of ``X``."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: int | None = None) -> np.ndarray:
        """Draw ``n_samples`` states from the fitted model by MCMC, ``(n_samples, n_features)``.

        Four chains of ``ceil(n_samples / 4)`` draws after 500 warmup steps (``sample_kernel``).
        """
        check_is_fitted(self, "params_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
            raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
        seed = self._seed() + 2 if random_state is None else int(random_state)
        num_chains = 4
        idata = _sample(
            self.model,
            params=self.params_,
            kernel=self.sample_kernel,
            num_chains=num_chains,
            num_warmup=500,
            num_samples=math.ceil(n_samples / num_chains),
            rng_key=jax.random.PRNGKey(seed),
            model_args=tuple(self.model_args),
            model_kwargs=dict(self.model_kwargs or {}),
            progress=False,
        )
        post = idata.posterior
        site = self.data_site or next(iter(post.data_vars))
        draws = np.asarray(post[site].values)
        # draw-major: the first n draws mix the chains rather than take one chain's start
        draws = np.swapaxes(draws, 0, 1).reshape(-1, *draws.shape[2:])
        return draws[:n_samples].reshape(n_samples, -1)
