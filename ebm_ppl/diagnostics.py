"""Chain-mixing diagnostics on ArviZ (the only module of ebm_ppl that imports arviz).

* :func:`to_inference_data`: ``arviz.InferenceData`` from arrays ``(chain, draw, ...)`` (what
  :func:`ebm_ppl.sample` records), from a NumPyro ``MCMC`` object, or from a fit's persistent
  training chains;
* :func:`summary`: rank-normalized split R-hat, folded R-hat, bulk/tail ESS, MCSE and flags;
* :func:`mixing_report`: R-hat and ESS overall and between groups of chains (by default the
  device each chain ran on), naming a group whose chains disagree with the rest, the
  potential-energy trace, BFMI where the Hamiltonian ``energy`` is recorded, and ESS per second
  and per gradient where timings are recorded;
* plots: :func:`plot_trace`, :func:`plot_rank`, :func:`plot_energy`, :func:`plot_samples`.

ArviZ 0.23 (the last release for Python 3.11) returns ``InferenceData``; ArviZ 1.x returns a
``DataTree``. Everything version-specific stays in this module.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ESS_MIN",
    "RHAT_MAX",
    "MixingReport",
    "ess",
    "load",
    "mixing_report",
    "NESTED_RHAT_MAX",
    "nested_rhat",
    "nested_rhat_threshold",
    "TemperingReport",
    "plot_tempering",
    "tempering_report",
    "rstar",
    "rstar_threshold",
    "plot_energy",
    "plot_rank",
    "plot_samples",
    "plot_trace",
    "rhat",
    "summary",
    "to_inference_data",
]

RHAT_MAX = 1.01
"""Rank-normalized split R-hat threshold (Vehtari et al. 2021)."""
ESS_MIN = 400.0
"""Minimum bulk and tail ESS in total over chains (Vehtari et al. 2021)."""
NESTED_RHAT_MAX = 1.01
"""Nested R-hat threshold ``1 + δ`` with ``δ = 0.01`` (Margossian et al. 2024)."""

# Gradient evaluations per transition of kernels that do not record them (for ESS per gradient).
_GRADS_PER_STEP = {"mala": 1, "ula": 1, "sgld": 1}


def _az() -> Any:
    with warnings.catch_warnings():
        # ArviZ 0.23 announces its 1.x refactor with a FutureWarning on import.
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def _from_dict(posterior: Mapping[str, Any], sample_stats: Mapping[str, Any] | None) -> Any:
    az = _az()
    post = {k: np.asarray(v) for k, v in posterior.items()}
    stats = {k: np.asarray(v) for k, v in (sample_stats or {}).items()}
    for name, arr in post.items():
        if arr.ndim < 2:
            raise ValueError(
                f"posterior[{name!r}] must have shape (chain, draw, ...), got {arr.shape}"
            )
    with warnings.catch_warnings():
        # the layout is known to be (chain, draw, ...); ArviZ's "more chains than draws" guess is moot
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        return az.from_dict(posterior=post, sample_stats=stats or None)


def _from_mcmc(mcmc: Any) -> Any:
    """ArviZ's ``from_numpyro`` without the groups that ``factor`` sites create.

    NumPyro records ``numpyro.factor`` (hence every ``ebm.energy``) as an observed ``Unit`` site
    whose value has a trailing axis of length 0; ArviZ turns it into ``observed_data`` and
    ``log_likelihood`` entries that mean nothing for an EBM. Real observations are kept.
    """
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning, UserWarning))
        idata = az.from_numpyro(mcmc, log_likelihood=False)
    groups = idata.groups()
    factor_names: list[str] = []
    if "observed_data" in groups:
        obs = idata.observed_data
        factor_names = [k for k, v in obs.data_vars.items() if v.size == 0]
        obs = obs.drop_vars(factor_names)
        if obs.data_vars:
            idata.observed_data = obs
        else:
            del idata.observed_data
    if "log_likelihood" in groups:
        ll = idata.log_likelihood.drop_vars([k for k in factor_names if k in idata.log_likelihood])
        if ll.data_vars:
            idata.log_likelihood = ll
        else:
            del idata.log_likelihood
    if "sample_stats" in idata.groups() and "lp" in idata.sample_stats:
        # our convention: potential_energy = E = -log density (ArviZ stores lp = -potential).
        ss = idata.sample_stats
        idata.sample_stats = ss.assign(potential_energy=-ss["lp"])
    return idata


def _from_training_chains(obj_state: Any) -> Any:
    """Posterior-like view of a persistent-chain objective state: the chains' energy trace."""
    trace = np.asarray(obj_state.energy_trace)  # (window, num_chains) ring buffer
    count = int(np.asarray(obj_state.num_updates))
    window = trace.shape[0]
    if window == 0 or count == 0:
        raise ValueError(
            "the training chains recorded no energy trace (diagnostics_window=0 or no update)"
        )
    if count < window:
        ordered = trace[:count]
    else:
        start = count % window
        ordered = np.concatenate([trace[start:], trace[:start]], axis=0)
    energies = ordered.T  # (chain, draw): draw = training update
    idata = _from_dict({"potential_energy": energies}, {"potential_energy": energies})
    idata.posterior.attrs.update({"source": "training chains", "last_update": count})
    return idata


def to_inference_data(
    posterior: Any,
    sample_stats: Mapping[str, Any] | None = None,
    *,
    attrs: Mapping[str, Any] | None = None,
    chain_devices: Sequence[str] | None = None,
) -> Any:
    """Build an ``arviz.InferenceData`` from draws, a NumPyro ``MCMC``, or a fit's chains.

    Args:
        posterior: one of

            * dict site -> array ``(chain, draw, *site_shape)`` (what our drivers collect);
            * a ``numpyro.infer.MCMC`` after ``run``: ArviZ's ``from_numpyro`` without the
              ``observed_data``/``log_likelihood`` entries made by ``factor`` sites, and with
              ``sample_stats.potential_energy`` (= ``-lp``);
            * a :class:`~ebm_ppl.FitResult` (or its ``obj_state``) of a persistent-chain
              objective: the variable ``potential_energy`` with shape ``(chain, update)``, the
              energies of the training chains over the last ``diagnostics_window`` updates;
            * an ``InferenceData`` (returned as is, with ``attrs``/``chain_devices`` added).
        sample_stats: dict stat -> array ``(chain, draw)`` in ArviZ's names
            (``potential_energy``, ``acceptance_rate``, ``diverging``, ``step_size``,
            ``energy``), for the dict form.
        attrs: attributes stored on the posterior group (timings, kernel name, ...).
        chain_devices: device of each chain, stored as the ``device`` coordinate along ``chain``.

    Returns:
        ``arviz.InferenceData``.

    Raises:
        TypeError: for an unsupported ``posterior``.
        ValueError: for arrays without ``(chain, draw)`` axes or a ``chain_devices`` of the
            wrong length.

    Examples:
        >>> import numpy as np
        >>> idata = to_inference_data({"x": np.zeros((2, 5, 3))}, {"diverging": np.zeros((2, 5), bool)})
        >>> idata.posterior["x"].shape
        (2, 5, 3)
    """
    az = _az()
    if isinstance(posterior, az.InferenceData):
        idata = posterior
    elif isinstance(posterior, Mapping):
        idata = _from_dict(posterior, sample_stats)
    elif hasattr(posterior, "get_extra_fields") and hasattr(posterior, "sampler"):
        idata = _from_mcmc(posterior)
    elif hasattr(posterior, "energy_trace") and hasattr(posterior, "count"):
        idata = _from_training_chains(posterior)
    elif hasattr(getattr(posterior, "obj_state", None), "energy_trace"):
        idata = _from_training_chains(posterior.obj_state)
    else:
        raise TypeError(
            "posterior must be a dict of (chain, draw, ...) arrays, a numpyro MCMC, a FitResult "
            f"with persistent chains, or an InferenceData; got {type(posterior).__name__}"
        )
    if attrs:
        idata.posterior.attrs.update(dict(attrs))
    if chain_devices is not None:
        devices = np.asarray([str(d) for d in chain_devices])
        num_chains = idata.posterior.sizes["chain"]
        if devices.shape != (num_chains,):
            raise ValueError(f"chain_devices has {devices.size} entries for {num_chains} chains")
        for group in ("posterior", "sample_stats"):
            if group in idata.groups():
                ds = getattr(idata, group)
                setattr(idata, group, ds.assign_coords(device=("chain", devices)))
    return idata


def load(path: Any) -> Any:
    """Read an ``InferenceData`` written by ``idata.to_netcdf(path)``, checking its posterior.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file has no ``posterior`` group.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "idata.nc")
        >>> _ = to_inference_data({"x": np.zeros((2, 4))}).to_netcdf(path)
        >>> load(path).posterior["x"].shape
        (2, 4)
    """
    import os

    if not os.path.exists(path):
        raise FileNotFoundError(f"path {str(path)!r} does not exist")
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        idata = az.from_netcdf(path)
    if "posterior" not in idata.groups():
        raise ValueError(f"path {str(path)!r} has no posterior group (groups: {idata.groups()})")
    return idata


def _as_chain_draw(draws: Any) -> np.ndarray:
    try:
        arr = np.asarray(draws, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"draws must be a numeric array (chain, draw, ...), got {type(draws).__name__}"
        ) from None
    if arr.ndim < 2:
        raise ValueError(f"draws must have shape (chain, draw, ...), got {arr.shape}")
    if arr.shape[1] < 4:
        raise ValueError(
            f"draws needs at least 4 draws per chain (split R-hat halves them), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("draws contains NaN or inf")
    return arr


_RHAT_METHODS = ("rank", "split", "folded", "z_scale", "identity")
_ESS_METHODS = ("bulk", "tail", "mean", "sd", "median", "mad", "identity")


def rhat(draws: Any, method: str = "rank") -> np.ndarray:
    """R-hat of an array ``(chain, draw, *shape)``, per component (``method`` as in ArviZ).

    Examples:
        >>> import numpy as np
        >>> float(rhat(np.random.default_rng(0).normal(size=(4, 500)))) < 1.01
        True
    """
    if method not in _RHAT_METHODS:
        raise ValueError(f"method must be one of {_RHAT_METHODS}, got {method!r}")
    az = _az()
    arr = _as_chain_draw(draws)
    flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
    out = np.array([az.rhat(flat[..., k], method=method) for k in range(flat.shape[-1])])
    return out.reshape(arr.shape[2:])


def ess(draws: Any, method: str = "bulk") -> np.ndarray:
    """Effective sample size of an array ``(chain, draw, *shape)``, per component.

    Examples:
        >>> import numpy as np
        >>> float(ess(np.random.default_rng(0).normal(size=(4, 500)))) > 1000
        True
    """
    if method not in _ESS_METHODS:
        raise ValueError(f"method must be one of {_ESS_METHODS}, got {method!r}")
    az = _az()
    arr = _as_chain_draw(draws)
    flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
    out = np.array([az.ess(flat[..., k], method=method) for k in range(flat.shape[-1])])
    return out.reshape(arr.shape[2:])


def summary(idata: Any, var_names: Sequence[str] | None = None, *, hdi_prob: float = 0.94) -> Any:
    """Per-variable summary with mixing flags.

    Columns: ArviZ's ``mean, sd, hdi_*, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat``
    (rank-normalized split R-hat), plus ``r_hat_folded`` (folded split R-hat, sensitive to
    scale differences between chains) and ``ok``: R-hat and folded R-hat < 1.01 and bulk and
    tail ESS >= 400 in total.

    Args:
        idata: ``arviz.InferenceData`` with a ``posterior`` group.
        var_names: variables to summarize (default: all).
        hdi_prob: HDI probability mass.

    Returns:
        ``pandas.DataFrame`` indexed by variable (and component).

    Raises:
        ValueError: if ``idata`` has no posterior group.

    Examples:
        >>> import numpy as np
        >>> idata = to_inference_data({"x": np.random.default_rng(0).normal(size=(4, 500))})
        >>> bool(summary(idata).loc["x", "ok"])
        True
    """
    az = _az()
    if not hasattr(idata, "posterior"):
        raise ValueError(f"idata has no posterior group (got {type(idata).__name__})")
    names = list(var_names) if var_names is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        table = az.summary(idata, var_names=names, kind="all", hdi_prob=hdi_prob)
        rhat_folded = az.rhat(idata.posterior[names] if names else idata.posterior, method="folded")
    folded_col = []
    for label in table.index:
        var, _, idx = label.partition("[")
        value = rhat_folded[var].values
        if idx:
            coords = tuple(int(i) for i in idx.rstrip("]").split(","))
            value = value[coords]
        folded_col.append(float(value))
    table["r_hat_folded"] = folded_col
    table["ok"] = (
        (table["r_hat"] < RHAT_MAX)
        & (table["r_hat_folded"] < RHAT_MAX)
        & (table["ess_bulk"] >= ESS_MIN)
        & (table["ess_tail"] >= ESS_MIN)
    )
    return table


# ------------------------------------------------------------------------- groups of chains
def _z_scale(arr: np.ndarray) -> np.ndarray:
    """Rank-normalize ``(chain, draw, K)`` over chains and draws, per component (Vehtari 2021)."""
    from scipy import stats

    c, d, k = arr.shape
    flat = arr.reshape(c * d, k)
    ranks = stats.rankdata(flat, method="average", axis=0)
    z = stats.norm.ppf((ranks - 0.375) / (c * d + 0.25))
    return z.reshape(c, d, k)


def nested_rhat(
    draws: Any, groups: Sequence[Any] | np.ndarray, *, rank_normalize: bool = True
) -> np.ndarray:
    """Nested R-hat between groups of chains (Margossian et al. 2024), per component.

    With groups (superchains) ``k`` of ``M_k`` chains, ``B`` is the variance of the group means
    and ``W`` the mean over groups of (between-chain variance within the group + mean
    within-chain variance); ``nR = sqrt(1 + B / W)``. Chains are rank-normalized first, so the
    statistic is invariant to monotone transforms. Near 1 when the groups sample the same
    distribution.

    Valid for any number of draws per chain, down to one (many short chains on an accelerator):
    the within-chain variance of a one-draw chain is 0 and the between-chain spread inside each
    group carries ``W``. With one chain per group and ``rank_normalize=False`` it is the
    ordinary (non-split) R-hat without its ``(N - 1) / N`` factor: ``nR² = R² + 1/N``
    (Margossian et al., footnote 1). For ``M`` independent chains per group and ``N``
    independent draws each, ``nR² ≈ 1 + 1/(M N)`` when everything mixes, so ``M`` must be
    large for a ``1.01`` threshold (:data:`NESTED_RHAT_MAX`); :func:`nested_rhat_threshold`
    adds the chance level of a given design.

    Args:
        draws: array ``(chain, draw, *shape)`` with ``draw >= 1``.
        groups: group label of every chain (length ``chain``), at least two distinct labels;
            in the nested design, the chains of a group (superchain) share their start.
        rank_normalize: rank-normalize the draws over all chains first (Vehtari et al. 2021);
            ``False`` gives the statistic of the paper on the raw draws.

    Returns:
        Array ``shape``.

    Raises:
        ValueError: for fewer than two groups or labels of the wrong length.

    References:
        Margossian, Hoffman, Sountsov, Riou-Durand, Vehtari, Gelman (2024), "Nested R-hat:
        assessing the convergence of Markov chain Monte Carlo when running many short chains",
        Bayesian Analysis.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(8, 200))
        >>> float(nested_rhat(x, [0, 0, 0, 0, 1, 1, 1, 1])) < 1.01
        True
        >>> one_draw = np.random.default_rng(1).normal(size=(400, 1))  # 4 groups of 100 chains
        >>> one_draw[:100] += 3.0  # one superchain stuck elsewhere
        >>> float(nested_rhat(one_draw, np.repeat(np.arange(4), 100))) > 1.5
        True
    """
    arr = _as_short_chains(draws)
    labels = np.asarray([str(g) for g in groups])
    if labels.shape != (arr.shape[0],):
        raise ValueError(f"groups has {labels.size} labels for {arr.shape[0]} chains")
    uniq = list(dict.fromkeys(labels.tolist()))
    if len(uniq) < 2:
        raise ValueError(f"groups needs at least two distinct labels, got {uniq}")
    flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
    if rank_normalize:
        flat = _z_scale(flat)
    chain_mean = flat.mean(axis=1)  # (chain, K)
    # one draw per chain: no within-chain spread (the paper's W-tilde = 0 for N = 1)
    chain_var = flat.var(axis=1, ddof=1) if flat.shape[1] > 1 else np.zeros_like(chain_mean)
    g_means, w = [], []
    for g in uniq:
        sel = labels == g
        g_means.append(chain_mean[sel].mean(axis=0))
        between = chain_mean[sel].var(axis=0, ddof=1) if sel.sum() > 1 else 0.0
        w.append(between + chain_var[sel].mean(axis=0))
    b = np.var(np.stack(g_means), axis=0, ddof=1)
    out = np.sqrt(1.0 + b / np.mean(np.stack(w), axis=0))
    return out.reshape(arr.shape[2:])


def _as_short_chains(draws: Any) -> np.ndarray:
    """``(chain, draw, ...)`` float64 array, finite, any number of draws (>= 1)."""
    try:
        arr = np.asarray(draws, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"draws must be a numeric array (chain, draw, ...), got {type(draws).__name__}"
        ) from None
    if arr.ndim < 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"draws must have shape (chain, draw, ...) with draw >= 1, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("draws contains NaN or inf")
    return arr


def nested_rhat_threshold(
    num_groups: int,
    num_chains_per_group: int,
    *,
    delta: float = NESTED_RHAT_MAX - 1.0,
    alpha: float = 0.01,
) -> float:
    """The nested R-hat above which groups of chains are taken not to agree.

    ``sqrt((1 + δ)² + q / M)`` with ``q`` the ``1 - α`` quantile of ``F(K - 1, K (M - 1))``:
    the threshold ``1 + δ`` of Margossian et al. (2024) on top of what well-mixed chains give
    by chance. With ``K`` groups of ``M`` independent chains of one draw, ``M (nR² - 1) = M B /
    W`` is the F statistic of a one-way analysis of variance (``χ²_{K-1} / (K - 1)`` for
    ``M = 1``); longer chains only shrink ``B / W`` (by their effective draws), so the bound
    holds for any chain length. A design with few groups or few chains per group is thus not
    flagged for its own noise; for large ``M`` the threshold is ``1 + δ``.

    Args:
        num_groups: ``K``, the superchains (>= 2).
        num_chains_per_group: ``M`` (>= 1).
        delta: the tolerance ``δ`` (> 0).
        alpha: chance of a false alarm for mixed chains beyond ``δ``, in ``(0, 1)``.

    Examples:
        >>> round(nested_rhat_threshold(4, 1000), 4)
        1.0119
        >>> round(nested_rhat_threshold(4, 10**8), 4)
        1.01
    """
    from scipy import stats as sps

    for name, value, low in (
        ("num_groups", num_groups, 2),
        ("num_chains_per_group", num_chains_per_group, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    # one-way analysis of variance: for one normal draw per chain, M B / W ~ F(K-1, K(M-1))
    k, m = int(num_groups), int(num_chains_per_group)
    if m > 1:
        q = float(sps.f.ppf(1.0 - alpha, k - 1, k * (m - 1)))
    else:
        q = float(sps.chi2.ppf(1.0 - alpha, k - 1)) / (k - 1)
    return float(math.sqrt((1.0 + delta) ** 2 + q / num_chains_per_group))


def rstar_threshold(num_chains: int, num_test: int, *, alpha: float = 0.01) -> float:
    """The R* above which a classifier tells chains apart better than chance.

    Under mixing, each of ``num_test`` held-out draws is classified right with probability
    ``1/C`` (``C = num_chains``), so ``R* = C · accuracy`` has mean 1 and standard deviation
    ``sqrt((C - 1) / num_test)``; the threshold is ``1 + z_{1-α} · sd`` (one-sided). Lambert
    and Vehtari (2022) read ``R*`` against 1 in the same way, with its sampling spread.

    Examples:
        >>> round(rstar_threshold(4, 600), 3)
        1.164
    """
    from scipy import stats as sps

    if num_chains < 2 or num_test < 1:
        raise ValueError(f"need num_chains >= 2 and num_test >= 1, got {num_chains}, {num_test}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(1.0 + sps.norm.ppf(1.0 - alpha) * math.sqrt((num_chains - 1) / num_test))


def rstar(
    draws: Any,
    *,
    classifier: Any = None,
    split: bool = True,
    training_fraction: float = 0.7,
    seed: int = 0,
) -> float:
    """R*: how well a classifier tells which chain a draw came from (Lambert and Vehtari 2022).

    The draws of all variables form the features, the chain (after splitting each chain in two
    halves when ``split``) is the label; a classifier is trained on a random
    ``training_fraction`` of the draws and ``R* = C × accuracy`` on the rest, ``C`` the number
    of (split) chains. Close to 1 (chance) when the chains sample the same distribution; above
    :func:`rstar_threshold` they differ in some direction, possibly one no marginal R-hat sees.
    Needs scikit-learn (the ``sklearn`` extra).

    Args:
        draws: array ``(chain, draw, *shape)``; all components are features.
        classifier: an unfitted scikit-learn classifier (default: a random forest of 100
            trees on one thread, ``RandomForestClassifier``, as the ``posterior`` R package;
            the paper also uses gradient-boosted trees).
        split: split each chain in halves (sees chains that drift within themselves).
        training_fraction: share of the draws to train on, in ``(0, 1)``.
        seed: seed of the train/test split and of the default classifier.

    Returns:
        R* as a float.

    Raises:
        ImportError: without scikit-learn, naming the extra.
        ValueError: fewer than two chains or too few draws for a test set.

    References:
        Lambert, Vehtari (2022), "R*: a robust MCMC convergence diagnostic with uncertainty
        using decision tree classifiers", Bayesian Analysis 17(2).

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(4, 300, 2))
        >>> bool(rstar(x) < rstar_threshold(8, 360))
        True
        >>> x[0] += 2.0
        >>> bool(rstar(x) > rstar_threshold(8, 360))
        True
    """
    try:
        from sklearn.base import clone
        from sklearn.ensemble import RandomForestClassifier
    except ImportError as err:  # pragma: no cover - exercised without the extra
        raise ImportError("rstar needs scikit-learn: pip install 'ebm_ppl[sklearn]'") from err
    arr = _as_short_chains(draws)
    if not 0.0 < training_fraction < 1.0:
        raise ValueError(f"training_fraction must be in (0, 1), got {training_fraction!r}")
    c, n = arr.shape[:2]
    if c < 2 and not split:
        raise ValueError(f"rstar needs at least two chains, got {c}")
    x = arr.reshape(c, n, -1)
    if split:
        half = n // 2
        if half < 2:
            raise ValueError(f"rstar with split=True needs at least 4 draws per chain, got {n}")
        x = np.concatenate([x[:, :half], x[:, n - half :]], axis=0)
    num_chains, num_draws, dim = x.shape
    features = x.reshape(-1, dim)
    labels = np.repeat(np.arange(num_chains), num_draws)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    num_train = int(round(training_fraction * len(labels)))
    if num_train < num_chains or len(labels) - num_train < 1:
        raise ValueError(f"too few draws ({len(labels)}) for a training and a test set")
    train, test = order[:num_train], order[num_train:]
    model = (
        RandomForestClassifier(n_estimators=100, random_state=seed)
        if classifier is None
        else clone(classifier)
    )
    model.fit(features[train], labels[train])
    accuracy = float(np.mean(model.predict(features[test]) == labels[test]))
    return num_chains * accuracy


def _group_scores(arr: np.ndarray, labels: np.ndarray, uniq: list[str]) -> np.ndarray:
    """Two-sample z score of each group's mean chain mean against the other chains'.

    Chains are independent, so under "every group samples the same distribution" the chain means
    (of the rank-normalized draws) are exchangeable; the standard error comes from the spread of
    chain means *within* groups (a deviating group must not inflate its own yardstick).
    Returns ``(num_groups, K)``.
    """
    c = arr.shape[0]
    flat = _z_scale(arr.reshape(c, arr.shape[1], -1))
    m = flat.mean(axis=1)  # (chain, K)
    sizes = np.array([(labels == g).sum() for g in uniq])
    dof = c - len(uniq)
    if dof >= 2:
        ss = sum(((m[labels == g] - m[labels == g].mean(axis=0)) ** 2).sum(axis=0) for g in uniq)
        var_chain = ss / dof
    else:
        # one chain per group: the variance of a chain mean from each chain's own ESS
        az = _az()
        ess_c = np.array(
            [
                [az.ess(flat[i : i + 1, :, k], method="mean") for k in range(flat.shape[2])]
                for i in range(c)
            ]
        )
        var_chain = np.mean(flat.var(axis=1, ddof=1) / np.maximum(ess_c, 1.0), axis=0)
    var_chain = np.maximum(var_chain, 1e-300)
    out = []
    for g, n_g in zip(uniq, sizes, strict=True):
        sel = labels == g
        if n_g == c:
            out.append(np.zeros(m.shape[1]))
            continue
        diff = m[sel].mean(axis=0) - m[~sel].mean(axis=0)
        out.append(diff / np.sqrt(var_chain * (1.0 / n_g + 1.0 / (c - n_g))))
    return np.stack(out)


@dataclasses.dataclass
class MixingReport:
    """What :func:`mixing_report` finds (print it for a text report).

    Attributes:
        summary: :func:`summary` table over all chains (with ``ess_per_s`` and ``ess_per_grad``
            columns when timings are recorded).
        groups: ``pandas.DataFrame`` indexed by group (device): ``num_chains``, ``rhat_within``
            (worst rank-normalized split R-hat among the group's own chains), ``ess_bulk_min``,
            ``max_abs_z`` and ``worst`` (the largest standardized difference between the
            group's chains and the other chains, and the variable it occurs in),
            ``potential_energy_mean``, and ``flagged``.
        bad_groups: labels of the flagged groups.
        nested_rhat: dict variable -> worst nested R-hat between groups (``None`` with a single
            group).
        z_threshold: the Bonferroni threshold on ``max_abs_z``.
        energy_trace: ``(chain, draw)`` potential energy ``E(x)`` if recorded, else ``None``.
        bfmi: BFMI per chain if the Hamiltonian ``energy`` is recorded, else ``None``.
        timings: recorded timings (seconds) and gradient counts.
        group_by: the coordinate the chains were grouped by.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(4, 400))
        >>> idata = to_inference_data({"x": x}, chain_devices=["cpu:0", "cpu:0", "cpu:1", "cpu:1"])
        >>> mixing_report(idata).bad_groups
        []
    """

    summary: Any
    groups: Any
    bad_groups: list[str]
    nested_rhat: dict[str, float] | None
    z_threshold: float
    energy_trace: np.ndarray | None
    bfmi: np.ndarray | None
    timings: dict[str, float]
    group_by: str
    tempering: TemperingReport | None = None

    @property
    def ok(self) -> bool:
        """True when every variable passes :func:`summary`'s flags and no group is flagged."""
        return bool(self.summary["ok"].all()) and not self.bad_groups

    def __str__(self) -> str:
        import pandas as pd

        lines = []
        with pd.option_context(
            "display.width", 120, "display.max_columns", 20, "display.max_rows", 40
        ):
            cols = [
                c
                for c in (
                    "mean",
                    "sd",
                    "ess_bulk",
                    "ess_tail",
                    "r_hat",
                    "r_hat_folded",
                    "ess_per_s",
                    "ess_per_grad",
                    "ok",
                )
                if c in self.summary
            ]
            lines += ["== all chains ==", self.summary[cols].to_string(), ""]
            lines += [f"== chains grouped by {self.group_by} ==", self.groups.to_string()]
        if self.nested_rhat is not None:
            worst = max(self.nested_rhat.items(), key=lambda kv: kv[1])
            lines.append(f"nested R-hat between groups: worst {worst[1]:.4f} ({worst[0]})")
        lines.append(
            f"a group is flagged when max |z| > {self.z_threshold:.2f} (location or scale)"
        )
        if self.bad_groups:
            lines.append(f"BAD {self.group_by}(s): {', '.join(self.bad_groups)}")
        if self.energy_trace is not None:
            e = self.energy_trace
            q = max(1, e.shape[1] // 4)
            lines.append(
                f"potential energy: first quarter mean {e[:, :q].mean():.4g}, "
                f"last quarter mean {e[:, -q:].mean():.4g}"
            )
        if self.bfmi is not None:
            lines.append(f"BFMI per chain: min {self.bfmi.min():.3f} (below 0.3 is poor)")
        if self.timings:
            lines.append("timings: " + ", ".join(f"{k} {v:.4g}" for k, v in self.timings.items()))
        if self.tempering is not None:
            lines += ["", str(self.tempering), ""]
        lines.append("OK" if self.ok else "NOT OK: see flags above")
        return "\n".join(lines)


def _chain_labels(idata: Any, group_by: str) -> np.ndarray:
    post = idata.posterior
    num_chains = post.sizes["chain"]
    if group_by in post.coords and post.coords[group_by].dims == ("chain",):
        return np.asarray([str(v) for v in post.coords[group_by].values])
    if group_by == "chain":
        return np.asarray([str(i) for i in range(num_chains)])
    if group_by == "device":  # not recorded (e.g. NumPyro's MCMC): one group, nothing to compare
        return np.asarray(["all"] * num_chains)
    raise ValueError(
        f"group_by={group_by!r} is not a per-chain coordinate of the posterior "
        f"(coordinates: {list(post.coords)})"
    )


def _stacked(ds: Any, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(chain, draw, K)`` of the named variables, with a label per component."""
    arrays, labels = [], []
    for name in names:
        v = np.asarray(ds[name].values, dtype=np.float64)
        v = v.reshape(v.shape[0], v.shape[1], -1)
        arrays.append(v)
        extra = ds[name].shape[2:]
        if extra:
            labels += [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*extra)]
        else:
            labels.append(name)
    return np.concatenate(arrays, axis=2), labels


def mixing_report(
    idata: Any,
    *,
    group_by: str = "device",
    var_names: Sequence[str] | None = None,
    alpha: float = 0.01,
) -> MixingReport:
    """Mixing diagnostics over all chains and between groups of chains (by default, devices).

    Overall: :func:`summary`. Between groups: the nested R-hat (:func:`nested_rhat`) per
    variable, and for every group a two-sample z score of its chains' means (rank-normalized
    draws; the potential energy included when recorded) against the other chains'. A group is
    flagged when its largest ``|z|`` exceeds the Bonferroni threshold
    ``t^-1(1 - alpha / (2 * groups * components); chains - groups)`` (Student t with the dof of
    the pooled within-group spread of chain means). The most deviant group is removed and the
    test repeated on the rest, so one bad group does not drag the others; with two groups left
    both are named. The test runs on the draws and on the folded draws ``|x - median|``, so it
    sees differences in location and in scale. It names a device whose chains disagree with
    the rest (a bad start, a faulty device, a non-deterministic kernel), where the overall
    R-hat only says that something is wrong; ``rhat_within`` (each group's own R-hat) is
    reported, not tested. Chains must be independent (per-chain keys and adaptation), as in
    :func:`ebm_ppl.sample`.

    Also: the potential-energy trace ``E(x)`` (``sample_stats.potential_energy``), BFMI only
    where the Hamiltonian ``energy`` of NUTS/HMC is recorded, and ESS per second
    (``posterior.attrs["sampling_time"]``) and per gradient evaluation (``n_steps`` of NUTS/HMC,
    or one gradient per step for Langevin kernels) when recorded.

    Args:
        idata: ``InferenceData`` with a ``posterior`` group.
        group_by: per-chain coordinate to group by (``"device"``, as recorded by
            :func:`ebm_ppl.sample`; a single group ``"all"`` when not recorded), or ``"chain"``
            (every chain its own group).
        var_names: variables to check (default: all posterior variables).
        alpha: family-wise false-alarm rate of the group test.

    Returns:
        A :class:`MixingReport`.

    Raises:
        ValueError: no posterior group, an unknown ``group_by`` or variable, or ``alpha``
            outside ``(0, 1)``.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(1).normal(size=(8, 300))
        >>> x[6:] += 1.0  # the chains of one device sample something else
        >>> idata = to_inference_data({"x": x}, chain_devices=["cpu:0"] * 2 + ["cpu:1"] * 2
        ...                           + ["cpu:2"] * 2 + ["cpu:3"] * 2)
        >>> mixing_report(idata).bad_groups
        ['cpu:3']
    """
    import pandas as pd
    from scipy import stats as sps

    if not hasattr(idata, "posterior"):
        raise ValueError(f"idata has no posterior group (got {type(idata).__name__})")
    if not (isinstance(alpha, float | int) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    post = idata.posterior
    names = list(var_names) if var_names is not None else list(post.data_vars)
    unknown = [n for n in names if n not in post.data_vars]
    if unknown:
        raise ValueError(
            f"var_names has unknown variable(s) {unknown}; posterior has {list(post.data_vars)}"
        )
    labels = _chain_labels(idata, group_by)
    uniq = list(dict.fromkeys(labels.tolist()))
    table = summary(idata, var_names=names)
    has_stats = "sample_stats" in idata.groups()
    ss: Any = idata.sample_stats if has_stats else None
    energy_trace = (
        np.asarray(ss["potential_energy"].values, np.float64)
        if has_stats and "potential_energy" in ss
        else None
    )

    arr, comp_labels = _stacked(post, names)
    if energy_trace is not None and "potential_energy" not in names:
        arr = np.concatenate([arr, energy_trace[..., None]], axis=2)
        comp_labels = [*comp_labels, "potential_energy"]
    # Folded draws |x - median| turn a difference in scale between groups into one in location
    # (as folded R-hat does), so the same test sees both.
    folded = np.abs(arr - np.median(arr.reshape(-1, arr.shape[2]), axis=0))
    arr = np.concatenate([arr, folded], axis=2)
    comp_labels = [*comp_labels, *(f"|{c}|" for c in comp_labels)]

    az = _az()
    rows = []
    k_total = arr.shape[2]

    def threshold(num_groups: int, num_chains: int) -> float:
        # Student t with the pooled within-group dof (normal when chain means come from ESS)
        q = 1.0 - alpha / (2.0 * max(num_groups, 1) * k_total)
        dof = num_chains - num_groups
        return float(sps.t.ppf(q, dof) if dof >= 2 else sps.norm.ppf(q))

    z_thr = threshold(len(uniq), arr.shape[0])
    scores = _group_scores(arr, labels, uniq) if len(uniq) > 1 else np.zeros((1, k_total))
    k_plain = k_total // 2
    for gi, g in enumerate(uniq):
        sel = labels == g
        sub = arr[sel]
        # R-hat needs two chains; a one-chain group gets NaN (ArviZ would log a shape error)
        rh = [
            float(az.rhat(sub[..., k], method="rank")) if len(sub) > 1 else math.nan
            for k in range(k_plain)
        ]
        es = [float(az.ess(sub[..., k], method="bulk")) for k in range(k_plain)]
        worst = int(np.argmax(np.abs(scores[gi])))
        rows.append(
            {
                "group": g,
                "num_chains": int(sel.sum()),
                "rhat_within": float(np.max(rh)),
                "ess_bulk_min": float(np.nanmin(es)),
                "max_abs_z": float(np.abs(scores[gi, worst])),
                "worst": comp_labels[worst],
                "potential_energy_mean": float(energy_trace[sel].mean())
                if energy_trace is not None
                else math.nan,
            }
        )
    groups = pd.DataFrame(rows).set_index("group")
    flagged = pd.Series(False, index=groups.index)
    # Remove the most deviant group while one deviates, so that a bad group does not make the
    # good ones look bad against a "rest" that contains it. Two groups left: both are named.
    active = list(uniq)
    while len(active) > 1:
        sel = np.isin(labels, active)
        sc = np.abs(_group_scores(arr[sel], labels[sel], active)).max(axis=1)
        if sc.max() <= threshold(len(active), int(sel.sum())):
            break
        if len(active) == 2:
            flagged[active] = True
            break
        worst_g = active[int(np.argmax(sc))]
        flagged[worst_g] = True
        active.remove(worst_g)
    groups["flagged"] = flagged
    bad = [g for g in uniq if bool(groups.loc[g, "flagged"])] if len(uniq) > 1 else []

    nested = None
    if len(uniq) > 1:
        nested = {n: float(np.max(nested_rhat(post[n].values, labels))) for n in names}

    bfmi = None
    if has_stats and "energy" in ss:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
            bfmi = np.asarray(az.bfmi(idata))

    timings: dict[str, float] = {}
    attrs = post.attrs
    for key in ("sampling_time", "warmup_time", "compile_time"):
        if key in attrs:
            timings[key] = float(attrs[key])
    t = timings.get("sampling_time")
    if t and t > 0:
        table["ess_per_s"] = table["ess_bulk"] / t
    grads = _num_gradients(idata)
    if grads:
        timings["gradients"] = float(grads)
        table["ess_per_grad"] = table["ess_bulk"] / grads
    pt = tempering_report(idata) if has_stats and "swap_acceptance" in ss else None
    return MixingReport(
        table, groups, bad, nested, z_thr, energy_trace, bfmi, timings, group_by, pt
    )


def _num_gradients(idata: Any) -> float | None:
    """Gradient evaluations spent on the kept draws, when they can be known."""
    post = idata.posterior
    thinning = int(post.attrs.get("thinning", 1))
    if "sample_stats" in idata.groups() and "n_steps" in idata.sample_stats:
        # NUTS/HMC: leapfrog steps of the recorded transitions (thinned ones estimated alike)
        return float(np.asarray(idata.sample_stats["n_steps"].values).sum()) * thinning
    per_step = _GRADS_PER_STEP.get(str(post.attrs.get("kernel", "")).lower())
    if per_step is None:
        return None
    if "sample_stats" in idata.groups() and "beta" in idata.sample_stats:
        # parallel tempering: every replica takes its local step and is re-initialized
        # after the swaps (one more gradient), so 2 per replica and iteration
        per_step *= 2 * int(idata.sample_stats["beta"].shape[-1])
    return float(post.sizes["chain"] * post.sizes["draw"] * thinning * per_step)


# ------------------------------------------------------------------------------------- plots
def _finish(fig: Any, path: Any) -> Any:
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig


def _check_idata(idata: Any) -> None:
    if not hasattr(idata, "posterior"):
        raise ValueError(f"idata has no posterior group (got {type(idata).__name__})")


def plot_trace(idata: Any, var_names: Sequence[str] | None = None, *, path: Any = None) -> Any:
    """Trace and marginal density per variable (``arviz.plot_trace``); returns the figure.

    Args:
        idata: ``InferenceData`` with a posterior.
        var_names: variables (default: all; vector variables are drawn per component).
        path: if given, the figure is saved there.

    Examples:
        >>> import numpy as np, matplotlib
        >>> matplotlib.use("Agg")
        >>> fig = plot_trace(to_inference_data({"x": np.zeros((2, 10)) + np.arange(10)}))
        >>> len(fig.axes)
        2
    """
    _check_idata(idata)
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning, UserWarning))
        axes = az.plot_trace(idata, var_names=list(var_names) if var_names else None, compact=True)
    fig = np.asarray(axes).ravel()[0].figure
    fig.tight_layout()
    return _finish(fig, path)


def plot_rank(idata: Any, var_names: Sequence[str] | None = None, *, path: Any = None) -> Any:
    """Rank histograms per chain (``arviz.plot_rank``): flat when chains mix; returns the figure.

    Examples:
        >>> import numpy as np, matplotlib
        >>> matplotlib.use("Agg")
        >>> x = np.random.default_rng(0).normal(size=(3, 100))
        >>> fig = plot_rank(to_inference_data({"x": x}))
        >>> len(fig.axes)
        1
    """
    _check_idata(idata)
    az = _az()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning, UserWarning))
        axes = az.plot_rank(idata, var_names=list(var_names) if var_names else None)
    fig = np.asarray(axes).ravel()[0].figure
    fig.tight_layout()
    return _finish(fig, path)


def plot_energy(idata: Any, *, group_by: str = "device", path: Any = None) -> Any:
    """Potential-energy trace per chain coloured by group, plus ArviZ's energy plot (NUTS/HMC).

    The left panel shows ``E(x)`` (``sample_stats.potential_energy``) of every chain (at most 32
    per group drawn) coloured by its ``group_by`` label: a device whose chains sit at another
    energy level stands out. When the Hamiltonian ``energy`` is recorded, a second panel is
    ``arviz.plot_energy`` (marginal energy vs energy transitions, with BFMI).

    Raises:
        ValueError: if no ``potential_energy`` is recorded.

    Examples:
        >>> import numpy as np, matplotlib
        >>> matplotlib.use("Agg")
        >>> e = np.random.default_rng(0).normal(size=(2, 50))
        >>> idata = to_inference_data({"x": e}, {"potential_energy": e})
        >>> len(plot_energy(idata).axes)
        1
    """
    import matplotlib.pyplot as plt

    _check_idata(idata)
    if "sample_stats" not in idata.groups() or "potential_energy" not in idata.sample_stats:
        raise ValueError("idata has no sample_stats.potential_energy to plot")
    has_h = "energy" in idata.sample_stats
    fig, axes = plt.subplots(1, 2 if has_h else 1, figsize=(11 if has_h else 6, 4), squeeze=False)
    ax = axes[0, 0]
    e = np.asarray(idata.sample_stats["potential_energy"].values)
    try:
        labels = _chain_labels(idata, group_by)
    except ValueError:
        labels = np.asarray(["all"] * e.shape[0])
    for i, g in enumerate(dict.fromkeys(labels.tolist())):
        idx = np.flatnonzero(labels == g)[:32]
        for j, c in enumerate(idx):
            ax.plot(e[c], color=f"C{i % 10}", lw=0.6, alpha=0.5, label=g if j == 0 else None)
    ax.set(xlabel="draw", ylabel="potential energy E(x)", title=f"energy trace by {group_by}")
    if len(set(labels.tolist())) <= 16:
        ax.legend(fontsize=7)
    if has_h:
        az = _az()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning, UserWarning))
            az.plot_energy(idata, ax=axes[0, 1])
    fig.tight_layout()
    return _finish(fig, path)


def plot_samples(
    samples: Any,
    var_name: str | None = None,
    *,
    kind: str = "auto",
    image_shape: Sequence[int] | None = None,
    num_images: int = 64,
    bins: int = 100,
    path: Any = None,
) -> Any:
    """2-D density of samples in the plane, or a grid of samples as images.

    Args:
        samples: an ``InferenceData`` (then ``var_name`` picks a posterior variable, default the
            first), or an array ``(..., *event_shape)``; leading axes are flattened.
        var_name: posterior variable for ``InferenceData``.
        kind: ``"density"`` (2-D histogram; event size 2), ``"images"`` (grid) or ``"auto"``
            (density for event size 2, else images).
        image_shape: ``(height, width)`` of one image when the event is flat (default: a square).
        num_images: images in the grid (the last ones drawn).
        bins: histogram bins per axis for ``"density"``.
        path: if given, the figure is saved there.

    Raises:
        ValueError: for an unknown ``kind``/``var_name`` or a shape that does not fit.

    Examples:
        >>> import numpy as np, matplotlib
        >>> matplotlib.use("Agg")
        >>> fig = plot_samples(np.random.default_rng(0).normal(size=(1000, 2)))
        >>> fig = plot_samples(np.zeros((16, 4, 4)), kind="images")
        >>> len(fig.axes)
        16
    """
    import matplotlib.pyplot as plt

    if kind not in ("auto", "density", "images"):
        raise ValueError(f"kind must be 'auto', 'density' or 'images', got {kind!r}")
    event_ndim = None
    if hasattr(samples, "posterior"):
        post = samples.posterior
        name = var_name if var_name is not None else next(iter(post.data_vars))
        if name not in post.data_vars:
            raise ValueError(
                f"var_name={name!r} is not a posterior variable ({list(post.data_vars)})"
            )
        arr = np.asarray(post[name].values)
        event_ndim = arr.ndim - 2
    else:
        arr = np.asarray(samples)
        if arr.ndim == 1:
            raise ValueError(f"samples must have an event axis, got shape {arr.shape}")
    if kind == "auto":
        last = arr.shape[-1] if arr.ndim else 0
        kind = "density" if (event_ndim in (None, 1) and last == 2) else "images"
    if kind == "density":
        if arr.shape[-1] != 2:
            raise ValueError(
                f"kind='density' needs 2-D points (last axis 2), got shape {arr.shape}"
            )
        pts = arr.reshape(-1, 2)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.hist2d(pts[:, 0], pts[:, 1], bins=bins, cmap="viridis")
        ax.set(xlabel="x[0]", ylabel="x[1]", title=f"density of {len(pts)} samples")
        fig.tight_layout()
        return _finish(fig, path)
    if event_ndim is None:
        event_ndim = 2 if (image_shape is None and arr.ndim >= 3) else 1
    event = arr.shape[arr.ndim - event_ndim :] if event_ndim else ()
    imgs = arr.reshape(-1, *event) if event else arr.reshape(-1, 1)
    if image_shape is not None:
        h, w = (int(v) for v in image_shape)
        if h * w != int(np.prod(imgs.shape[1:])):
            raise ValueError(
                f"image_shape {tuple(image_shape)} does not fit events of shape {imgs.shape[1:]}"
            )
        imgs = imgs.reshape(-1, h, w)
    elif imgs.ndim == 2:
        side = math.isqrt(imgs.shape[1])
        if side * side != imgs.shape[1]:
            raise ValueError(f"events of size {imgs.shape[1]} are not square: give image_shape")
        imgs = imgs.reshape(-1, side, side)
    elif imgs.ndim != 3:
        raise ValueError(f"cannot draw events of shape {imgs.shape[1:]} as images")
    imgs = imgs[-num_images:]
    n = len(imgs)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.0), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i < n:
            ax.imshow(imgs[i], cmap="gray", interpolation="nearest")
            ax.set_axis_off()
        else:
            fig.delaxes(ax)
    fig.tight_layout()
    return _finish(fig, path)


# ------------------------------------------------------------------------ parallel tempering
@dataclasses.dataclass
class TemperingReport:
    """Communication diagnostics of parallel-tempering chains (print it for a text report).

    Attributes:
        betas: ``(T,)`` schedule, averaged over chains (each chain adapts its own).
        swap_acceptance: ``(T-1,)`` mean swap acceptance of each adjacent pair.
        local_barrier: ``(T-1,)`` ``λ`` on each interval, ``r_i / (β_{i+1} - β_i)`` with ``r_i``
            the mean rejection (Syed et al. 2022).
        global_barrier: ``Λ = Σ r_i`` (mean over chains).
        global_barrier_per_chain: ``(chain,)``.
        round_trips: ``(chain,)`` round trips (all replicas) during the kept draws.
        num_iterations: iterations per chain behind the kept draws (draws × thinning).
        round_trip_rate: round trips per iteration, mean over chains.
        optimal_rate: ``1 / (2 + 2Λ)``, the rate of the non-reversible scheme with an adapted
            schedule and many temperatures.

    Examples:
        >>> import numpy as np
        >>> stats = {"beta": np.tile([0.0, 0.5, 1.0], (2, 4, 1)),
        ...          "swap_acceptance": np.full((2, 4, 2), 0.75),
        ...          "round_trips": np.tile([0, 0, 1, 1], (2, 1))}
        >>> r = tempering_report(to_inference_data({"x": np.zeros((2, 4))}, stats))
        >>> round(r.global_barrier, 3), r.local_barrier.tolist(), round(r.optimal_rate, 3)
        (0.5, [0.5, 0.5], 0.333)
    """

    betas: np.ndarray
    swap_acceptance: np.ndarray
    local_barrier: np.ndarray
    global_barrier: float
    global_barrier_per_chain: np.ndarray
    round_trips: np.ndarray
    num_iterations: int
    round_trip_rate: float
    optimal_rate: float

    def __str__(self) -> str:
        lines = [
            f"== parallel tempering: {self.betas.shape[0]} temperatures ==",
            "beta:            " + " ".join(f"{b:.3f}" for b in self.betas),
            "swap acceptance: " + " ".join(f"{a:.2f}" for a in self.swap_acceptance),
            "local barrier:   " + " ".join(f"{v:.2f}" for v in self.local_barrier),
            f"global barrier Lambda = {self.global_barrier:.3f} (chains "
            f"{self.global_barrier_per_chain.min():.3f}..{self.global_barrier_per_chain.max():.3f})",
            f"round trips per chain: {self.round_trips.tolist()} in {self.num_iterations} "
            "iterations",
            f"round-trip rate {self.round_trip_rate:.4f} per iteration; 1/(2 + 2 Lambda) = "
            f"{self.optimal_rate:.4f}",
        ]
        return "\n".join(lines)


def tempering_report(idata: Any) -> TemperingReport:
    """Swap acceptance, barriers and round trips of parallel-tempering draws.

    Reads ``sample_stats`` ``beta`` ``(chain, draw, T)``, ``swap_acceptance``
    ``(chain, draw, T-1)`` and ``round_trips`` ``(chain, draw)`` (what
    :class:`ebm_ppl.infer.ParallelTempering` records; round trips count from the end of warmup).

    Raises:
        ValueError: when the draws hold no parallel-tempering statistics.

    Examples:
        >>> import numpy as np
        >>> stats = {"beta": np.tile([0.0, 0.25, 1.0], (2, 5, 1)),
        ...          "swap_acceptance": np.full((2, 5, 2), 0.9),
        ...          "round_trips": np.tile([0, 0, 1, 1, 2], (2, 1))}
        >>> r = tempering_report(to_inference_data({"x": np.zeros((2, 5))}, stats))
        >>> r.round_trips.tolist(), round(r.round_trip_rate, 2), r.local_barrier.round(2).tolist()
        ([2, 2], 0.4, [0.4, 0.13])
    """
    if "sample_stats" not in idata.groups() or "swap_acceptance" not in idata.sample_stats:
        raise ValueError(
            "idata has no parallel-tempering statistics (sample_stats.swap_acceptance); sample "
            "with ebm_ppl.sample(..., tempering=...)"
        )
    ss = idata.sample_stats
    acc = np.asarray(ss["swap_acceptance"].values, np.float64)
    betas = np.asarray(ss["beta"].values, np.float64)[:, -1, :]
    rejection = 1.0 - acc.mean(axis=1)  # (chain, T-1)
    per_chain = rejection.sum(axis=-1)
    local = rejection / np.diff(betas, axis=-1)
    trips = np.asarray(ss["round_trips"].values)[:, -1].astype(np.int64)
    thinning = int(idata.posterior.attrs.get("thinning", 1))
    iterations = int(acc.shape[1]) * thinning
    lam = float(per_chain.mean())
    return TemperingReport(
        betas=betas.mean(axis=0),
        swap_acceptance=acc.mean(axis=(0, 1)),
        local_barrier=local.mean(axis=0),
        global_barrier=lam,
        global_barrier_per_chain=per_chain,
        round_trips=trips,
        num_iterations=iterations,
        round_trip_rate=float(trips.mean() / iterations),
        optimal_rate=1.0 / (2.0 + 2.0 * lam),
    )


def plot_tempering(idata: Any, *, chain: int = 0, path: Any = None) -> Any:
    """The local barrier ``λ(β)`` and each replica's temperature index against time.

    Left: ``λ`` on every interval of the (chain-averaged) schedule, a step plot whose area is
    ``Λ``. Right: for chain ``chain``, the temperature index of every replica over the draws
    (non-reversible swaps give long sweeps from 0 to ``T - 1`` and back).

    Examples:
        >>> import numpy as np, matplotlib
        >>> matplotlib.use("Agg")
        >>> stats = {"beta": np.tile([0.0, 0.5, 1.0], (1, 4, 1)),
        ...          "swap_acceptance": np.full((1, 4, 2), 0.75),
        ...          "round_trips": np.zeros((1, 4), int),
        ...          "replica": np.tile([[0, 1, 2], [1, 0, 2], [1, 2, 0], [2, 1, 0]], (1, 1, 1))}
        >>> fig = plot_tempering(to_inference_data({"x": np.zeros((1, 4))}, stats))
        >>> len(fig.axes)
        2
    """
    import matplotlib.pyplot as plt

    report = tempering_report(idata)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.2))
    b = report.betas
    ax0.stairs(report.local_barrier, b)
    ax0.set_xlabel("beta")
    ax0.set_ylabel("local barrier lambda(beta)")
    ax0.set_title(f"Lambda = {report.global_barrier:.2f}")
    if "replica" in idata.sample_stats:
        replica = np.asarray(idata.sample_stats["replica"].values)[chain]  # (draw, T)
        slots = np.argsort(replica, axis=-1)  # slot of each replica at each draw
        for r in range(slots.shape[1]):
            ax1.plot(slots[:, r], lw=0.8)
        ax1.set_xlabel("draw")
        ax1.set_ylabel("temperature index")
        ax1.set_title(f"replicas of chain {chain}")
    fig.tight_layout()
    return _finish(fig, path)
