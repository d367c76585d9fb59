"""The specificity test and the model comparison (neurochange.hypotheses.specificity)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from neurochange.hypotheses import models as hyp
from neurochange.hypotheses.specificity import compare_models, convergence, null_moments, specificity_test
from neurochange.simulate import simulate_studyset
from neurochange.space import mni_2mm

GRID = mni_2mm()
FWHM = 10.0


def _masks(name):
    return hyp.region_masks(hyp.builtin_models()[name], GRID)


def test_false_positive_rate_at_or_below_alpha_on_null_simulations():
    """200 data sets of uniformly scattered foci: p <= .05 no more often than 5 % beyond binomial noise
    (one-sided binomial test at the 1 % level), and p about uniform (the test is not merely conservative)."""
    masks = _masks("fear_extinction_exposure")
    plan = [{"n": 15}]
    moments = null_moments(simulate_studyset(plan, seed=0), GRID, fwhm=FWHM, n_draws=300, seed=0)
    p = np.array([specificity_test(convergence(simulate_studyset(plan, seed=1000 + s), GRID, fwhm=FWHM,
                                               moments=moments), masks, n_placements=200, seed=s)["p"]
                  for s in range(200)])
    hits = int((p <= 0.05).sum())
    assert stats.binomtest(hits, len(p), 0.05, alternative="greater").pvalue > 0.01, hits
    assert 0.4 < p.mean() < 0.6


def test_planted_effect_in_the_model_regions_passes_and_one_elsewhere_does_not():
    masks = _masks("fear_extinction_exposure")
    amygdala = (22.0, -4.0, -18.0)
    planted = simulate_studyset([{"n": 20, "centre": amygdala, "hits": 14}], seed=3)
    result = specificity_test(convergence(planted, GRID, fwhm=FWHM, seed=1), masks, n_placements=500, seed=1)
    assert result["p"] <= 0.01 and result["statistic"] > result["null_mean"]
    # the same convergence in the occipital pole, far from every region of the model
    elsewhere = simulate_studyset([{"n": 20, "centre": (10.0, -96.0, 4.0), "hits": 14}], seed=3)
    assert specificity_test(convergence(elsewhere, GRID, fwhm=FWHM, seed=1), masks, n_placements=500,
                            seed=1)["p"] > 0.05  # not specific at the test's alpha


def test_model_comparison_favours_the_model_whose_regions_converge():
    fear, rtms = _masks("fear_extinction_exposure"), _masks("rtms_dlpfc_sgacc")
    planted = simulate_studyset([{"n": 20, "centre": (22.0, -4.0, -18.0), "hits": 14}], seed=4)
    conv = convergence(planted, GRID, fwhm=FWHM, seed=2)
    result = compare_models(conv, fear, rtms, n_boot=500, seed=2)
    assert result["ci_low"] > 0 and result["p"] < 0.01
    assert np.isclose(result["difference"], result["statistic_a"] - result["statistic_b"])
    flipped = compare_models(conv, rtms, fear, n_boot=500, seed=2)
    assert np.isclose(flipped["difference"], -result["difference"]) and flipped["ci_high"] < 0
    same = compare_models(conv, fear, fear, n_boot=200, seed=2)
    assert same["difference"] == 0 and same["ci_low"] == same["ci_high"] == 0


def test_reproducible_by_seed():
    masks = _masks("rtms_dlpfc_sgacc")
    data = simulate_studyset([{"n": 12}], seed=7)
    a = specificity_test(convergence(data, GRID, fwhm=FWHM, n_draws=50, seed=5), masks, n_placements=100, seed=5)
    b = specificity_test(convergence(data, GRID, fwhm=FWHM, n_draws=50, seed=5), masks, n_placements=100, seed=5)
    assert a == b
