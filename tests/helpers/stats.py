"""Statistical assertions for MCMC tests.

Every assertion is gated: the tested statistic must first show rank-normalized split R-hat
< 1.01 and bulk ESS >= 400 (Vehtari et al. 2021). A statistic that fails the gate fails the test:
when chains disagree the ESS collapses and an ESS-scaled bound would accept anything.
Then ``|mean - truth| < z * sd / sqrt(ESS_mean)``, ``z`` from a family-wise error rate
``alpha`` split over ``num_tests`` assertions (Bonferroni, two-sided).
"""

from __future__ import annotations

import arviz as az
import numpy as np
from scipy import stats

RHAT_MAX = 1.01
ESS_MIN = 400.0


def z_value(alpha: float = 1e-3, num_tests: int = 1) -> float:
    """Two-sided normal quantile for a family-wise error rate ``alpha`` over ``num_tests``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(stats.norm.ppf(1.0 - alpha / (2.0 * num_tests)))


def mixing(draws) -> tuple[float, float, float]:
    """(split R-hat, bulk ESS, mean ESS) of a (chain, draw) array."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 2:
        raise ValueError(f"draws must have shape (chain, draw), got {draws.shape}")
    rhat = float(az.rhat(draws, method="rank"))
    ess_bulk = float(az.ess(draws, method="bulk"))
    ess_mean = float(az.ess(draws, method="mean"))
    return rhat, ess_bulk, ess_mean


def assert_within_mcse(
    draws,
    truth,
    *,
    alpha: float = 1e-3,
    num_tests: int = 1,
    name: str = "statistic",
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
) -> None:
    """Assert the chain mean of ``draws`` equals ``truth`` within its Monte Carlo error.

    Args:
        draws: array ``(chain, draw)`` of a scalar statistic, or ``(chain, draw, *shape)``
            with ``truth`` of shape ``shape`` (each component is checked separately and counts
            as one of ``num_tests``; pass the total number of assertions in the module).
        truth: exact value(s).
        alpha: family-wise false-failure probability for the ``num_tests`` assertions.
        num_tests: number of assertions sharing ``alpha`` (Bonferroni).
        name: label for failure messages.
    """
    draws = np.asarray(draws, dtype=np.float64)
    truth = np.broadcast_to(np.asarray(truth, dtype=np.float64), draws.shape[2:])
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
    z = z_value(alpha, num_tests)
    for k in range(flat.shape[-1]):
        label = name if flat.shape[-1] == 1 else f"{name}[{np.unravel_index(k, truth.shape)}]"
        d = flat[..., k]
        rhat, ess_bulk, ess_mean = mixing(d)
        assert np.isfinite(rhat) and rhat < rhat_max, (
            f"{label}: split R-hat {rhat:.4f} >= {rhat_max}"
        )
        assert ess_bulk >= ess_min, f"{label}: bulk ESS {ess_bulk:.0f} < {ess_min:.0f}"
        mean, sd = d.mean(), d.std(ddof=1)
        mcse = sd / np.sqrt(ess_mean)
        t = truth.reshape(-1)[k]
        err = abs(mean - t)
        assert err < z * mcse, (
            f"{label}: mean {mean:.6g} vs truth {t:.6g}: |err| {err:.3g} >= {z:.2f} x MCSE {mcse:.3g} "
            f"(ESS {ess_mean:.0f}, R-hat {rhat:.4f})"
        )
