"""Chain-mixing diagnostics on ArviZ (the only module of ebm_ppl that imports arviz).

ArviZ 0.23 (the last release for Python 3.11) returns ``InferenceData``; ArviZ 1.x returns a
``DataTree``. Everything version-specific stays in this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["RHAT_MAX", "ESS_MIN", "ess", "rhat", "summary", "to_inference_data"]

RHAT_MAX = 1.01
"""Rank-normalized split R-hat threshold (Vehtari et al. 2021)."""
ESS_MIN = 400.0
"""Minimum bulk and tail ESS in total over chains (Vehtari et al. 2021)."""


def _az() -> Any:
    with warnings.catch_warnings():
        # ArviZ 0.23 announces its 1.x refactor with a FutureWarning on import.
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def to_inference_data(
    posterior: Mapping[str, Any],
    sample_stats: Mapping[str, Any] | None = None,
    *,
    attrs: Mapping[str, Any] | None = None,
    chain_devices: Sequence[str] | None = None,
) -> Any:
    """Build an ``arviz.InferenceData`` from arrays of shape ``(chain, draw, ...)``.

    Args:
        posterior: dict site -> array ``(chain, draw, *site_shape)``.
        sample_stats: dict stat -> array ``(chain, draw)``, in ArviZ's names
            (``potential_energy``, ``acceptance_rate``, ``diverging``, ``step_size``, ``energy``).
        attrs: attributes stored on the posterior group (timings, kernel name, ...).
        chain_devices: device of each chain, stored as the ``device`` coordinate along ``chain``.

    Examples:
        >>> import numpy as np
        >>> idata = to_inference_data({"x": np.zeros((2, 5, 3))}, {"diverging": np.zeros((2, 5), bool)})
        >>> idata.posterior["x"].shape
        (2, 5, 3)
    """
    az = _az()
    post = {k: np.asarray(v) for k, v in posterior.items()}
    stats = {k: np.asarray(v) for k, v in (sample_stats or {}).items()}
    with warnings.catch_warnings():
        # the layout is known to be (chain, draw, ...); ArviZ's "more chains than draws" guess is moot
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        idata = az.from_dict(posterior=post, sample_stats=stats or None)
    if attrs:
        idata.posterior.attrs.update(dict(attrs))
    if chain_devices is not None:
        devices = np.asarray([str(d) for d in chain_devices])
        for group in ("posterior", "sample_stats"):
            if hasattr(idata, group):
                ds = getattr(idata, group)
                setattr(idata, group, ds.assign_coords(device=("chain", devices)))
    return idata


def _as_chain_draw(draws: Any) -> np.ndarray:
    arr = np.asarray(draws, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"draws must have shape (chain, draw, ...), got {arr.shape}")
    return arr


def rhat(draws: Any, method: str = "rank") -> np.ndarray:
    """R-hat of an array ``(chain, draw, *shape)``, per component (``method`` as in ArviZ).

    Examples:
        >>> import numpy as np
        >>> float(rhat(np.random.default_rng(0).normal(size=(4, 500)))) < 1.01
        True
    """
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
        raise ValueError("idata has no posterior group")
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
