"""Nested R-hat (Margossian et al. 2024) and R* (Lambert and Vehtari 2022) on many short chains."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from ebm_ppl import diagnostics as dg


def _paper_nested_rhat(x: np.ndarray, k: int) -> float:
    """The paper's formulas, written out for ``k`` superchains of equal size, raw draws."""
    c, n = x.shape
    m = c // k
    sup = x.reshape(k, m, n)
    chain_mean = sup.mean(axis=2)  # (k, m)
    super_mean = chain_mean.mean(axis=1)  # (k,)
    b = np.sum((super_mean - super_mean.mean()) ** 2) / (k - 1)
    b_within = (
        np.sum((chain_mean - super_mean[:, None]) ** 2, axis=1) / (m - 1) if m > 1 else np.zeros(k)
    )
    w_within = (
        np.mean(np.sum((sup - chain_mean[..., None]) ** 2, axis=2) / (n - 1), axis=1)
        if n > 1
        else np.zeros(k)
    )
    return float(np.sqrt(1.0 + b / np.mean(b_within + w_within)))


@pytest.mark.parametrize("shape, k", [((12, 1), 3), ((12, 3), 4), ((8, 5), 8)])
def test_matches_the_papers_formulas(shape, k):
    x = np.random.default_rng(3).normal(size=shape)
    groups = np.repeat(np.arange(k), shape[0] // k)
    got = float(dg.nested_rhat(x, groups, rank_normalize=False))
    assert got == pytest.approx(_paper_nested_rhat(x, k), rel=1e-12)


def test_one_chain_per_superchain_is_ordinary_rhat():
    # Margossian et al., footnote 1: with M = 1, nR^2 = R^2 + 1/N (R without its (N-1)/N)
    x = np.random.default_rng(0).normal(size=(6, 50))
    x[5] += 0.4
    ours = float(dg.nested_rhat(x, np.arange(6), rank_normalize=False))
    ordinary = float(az.rhat(x, method="identity"))
    assert ours**2 == pytest.approx(ordinary**2 + 1.0 / 50, rel=1e-12)
    assert ours > ordinary  # nested R-hat is bounded below by 1, ordinary R-hat is not
    # rank-normalized: the same identity on the rank-normalized draws
    z = dg._z_scale(x[..., None])[..., 0]
    ranked = float(dg.nested_rhat(x, np.arange(6)))
    assert ranked**2 == pytest.approx(float(az.rhat(z, method="identity")) ** 2 + 1 / 50)


@pytest.fixture(scope="module")
def one_draw():
    """4 superchains of 1000 chains, one draw per chain, from the same N(0, 1)."""
    return np.random.default_rng(1).normal(size=(4000, 1)), np.repeat(np.arange(4), 1000)


def test_one_draw_per_chain_mixed_passes(one_draw):
    x, groups = one_draw
    threshold = dg.nested_rhat_threshold(4, 1000)
    for rank in (True, False):
        assert float(dg.nested_rhat(x, groups, rank_normalize=rank)) < threshold


@pytest.mark.parametrize("shift, spread", [(2.0, 0.1), (0.5, 1.0)])
def test_one_draw_per_chain_detects_a_planted_superchain(one_draw, shift, spread):
    # superchain 0 has not forgotten its start: stuck near it, or only displaced toward it
    x, groups = one_draw
    x = x.copy()
    x[:1000] = shift + spread * x[:1000]
    threshold = dg.nested_rhat_threshold(4, 1000)
    for rank in (True, False):
        assert float(dg.nested_rhat(x, groups, rank_normalize=rank)) > threshold
    # the ordinary R-hat cannot be computed on one draw per chain at all
    with pytest.raises(ValueError, match="4 draws"):
        dg.rhat(x)


def test_threshold_is_the_papers_for_many_chains_and_covers_chance_for_few():
    assert dg.nested_rhat_threshold(4, 10**9) == pytest.approx(dg.NESTED_RHAT_MAX, abs=1e-7)
    # few chains per superchain: mixed chains stay below it (but for alpha of the designs)
    rng = np.random.default_rng(4)
    k, m = 4, 8
    threshold = dg.nested_rhat_threshold(k, m, alpha=0.01)
    values = [
        float(dg.nested_rhat(rng.normal(size=(k * m, 1)), np.repeat(np.arange(k), m)))
        for _ in range(1000)
    ]
    exceed = np.mean(np.array(values) > threshold)
    assert exceed < 0.01 + 3 * np.sqrt(0.01 * 0.99 / 1000)
    assert np.mean(np.array(values) > dg.NESTED_RHAT_MAX) > 0.5  # where 1.01 alone would flag


def test_rstar_near_one_when_mixed_and_above_for_a_shifted_chain():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 150, 2))
    num_test = 4 * 150 - round(0.7 * 4 * 150)
    threshold = dg.rstar_threshold(8, num_test)  # 8 split chains
    mixed = dg.rstar(x)
    assert mixed < threshold
    shifted = x.copy()
    shifted[2, :, 1] += 1.5  # one chain elsewhere in one coordinate only
    assert dg.rstar(shifted) > threshold
    # without splitting: 4 classes
    assert dg.rstar(shifted, split=False) > dg.rstar_threshold(4, num_test)


def test_rstar_threshold_is_chance_plus_sampling_spread():
    # R* = C * accuracy, accuracy ~ Binomial(n, 1/C) / n under mixing
    assert dg.rstar_threshold(4, 300, alpha=0.5) == pytest.approx(1.0)
    assert dg.rstar_threshold(5, 400, alpha=0.02275) == pytest.approx(1.2, rel=1e-3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: dg.nested_rhat(np.full((4, 1), np.nan), [0, 0, 1, 1]), ValueError, "NaN"),
        (lambda: dg.nested_rhat(np.zeros((4, 0)), [0, 0, 1, 1]), ValueError, "draw >= 1"),
        (lambda: dg.nested_rhat(np.zeros((4, 1)), [0, 1]), ValueError, "2 labels for 4"),
        (lambda: dg.nested_rhat([["a"]], [0]), TypeError, "numeric"),
        (lambda: dg.nested_rhat_threshold(4, 0), ValueError, "num_chains_per_group"),
        (lambda: dg.nested_rhat_threshold(1, 5), ValueError, "num_groups"),
        (lambda: dg.rstar(np.zeros((2, 3))), ValueError, "at least 4 draws"),
        (lambda: dg.rstar(np.zeros((2, 8)), training_fraction=1.0), ValueError, "training_fra"),
        (lambda: dg.rstar_threshold(1, 10), ValueError, "num_chains >= 2"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
