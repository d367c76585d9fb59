"""Predicted thresholds against JALE 0.2.10's own ``predict_cutoff``.

``tests/data/jale/predicted_reference.json`` was written by JALE 0.2.10 with xgboost 2.1.2
(``tests/data/jale/make_predicted_reference.py``): JALE's bundled example (tags all, low, high)
and seeded synthetic tables. JALE's models are read from its wheel (fetched from PyPI and cached,
as the grey-matter prior is) and evaluated by the installed xgboost (the ``predict`` extra, part
of ``test``). Features must agree to 1e-12, predictions to float32 precision.
"""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from neurochange.errors import InputError
from neurochange.inference.predicted import PredictedThresholds, features, predict_thresholds
from neurochange.sources import jale_models

REFERENCE = json.loads((Path(__file__).parent / "data" / "jale" / "predicted_reference.json").read_text())
CASES = {case["name"]: case for case in REFERENCE["cases"]}


@pytest.mark.parametrize("name", CASES)
def test_features_equal_jale(name):
    case = CASES[name]
    expected = np.array([np.nan if v is None else v for v in case["features"]])
    got = features(case["subjects"], case["foci"])
    assert got.shape == (26,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", CASES)
def test_predictions_equal_jale(name):
    case = CASES[name]
    got = predict_thresholds(case["subjects"], case["foci"])
    assert type(got.cfwe_voxels) is int and got.cfwe_voxels == case["cfwe"]
    assert got.vfwe_ale == pytest.approx(case["vfwe"], rel=1e-6)
    assert got.tfce == pytest.approx(case["tfce"], rel=1e-6)
    assert bool(got.out_of_distribution) == (name in ("over 150 experiments", "over 150 foci"))


def test_out_of_distribution_is_recorded_not_fatal():
    rng = np.random.default_rng(3)
    n, foci = rng.integers(10, 40, 20), rng.integers(5, 20, 20)
    assert predict_thresholds(n, foci).out_of_distribution == ()
    many = predict_thresholds(np.full(151, 20), np.full(151, 10)).out_of_distribution
    assert len(many) == 1 and many[0].startswith("151 experiments, more than 150")
    big = predict_thresholds(np.r_[n[:-1], 301], foci)  # JALE 0.2.10 exits here; we record
    assert len(big.out_of_distribution) == 1 and "301 subjects, more than 300" in big.out_of_distribution[0]
    assert "refuses" in big.out_of_distribution[0] and np.isfinite(big.vfwe_ale)
    dense = predict_thresholds(n, np.r_[foci[:-1], 151]).out_of_distribution
    assert len(dense) == 1 and "151 foci, more than 150" in dense[0]
    assert all("\n" not in s for s in many + big.out_of_distribution + dense)


def test_result_is_frozen_and_inputs_checked():
    got = predict_thresholds([20, 12], [10, 8])
    assert isinstance(got, PredictedThresholds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.tfce = 0.0
    for n, foci in (([20, 12], [10]), ([], []), ([20, 0], [10, 8]), ([20, np.nan], [10, 8]), ([20, 12], [10, 0])):
        with pytest.raises(InputError):
            features(n, foci)


def test_missing_xgboost_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost now raises ImportError
    with pytest.raises(InputError) as err:
        predict_thresholds([20, 12], [10, 8])
    message = str(err.value)
    assert "\n" not in message and 'pip install "neurochange[predict]"' in message


def test_models_are_checked_and_read_whole():
    raw = jale_models.model_bytes("vfwe")
    model = jale_models.legacy_to_json(raw)["learner"]
    assert model["learner_model_param"]["num_feature"] == "26"
    assert len(model["gradient_booster"]["model"]["trees"]) == 100
    with pytest.raises(ValueError, match="bytes left"):
        jale_models.legacy_to_json(raw + b"\0")
