"""One battery of checks run on every estimator and corrector (nilearn's ``estimator_checks`` idea).

For each of ALE, MKDADensity, KDA, MKDAChi2, Subtraction and BalancedSubtraction:

- fitting twice gives equal results and leaves the input StudySets untouched;
- ``type(e)(**e.get_params())`` gives the same result;
- a pickled and restored estimator gives the same result;
- empty input and input with every focus beyond +-128 mm are an ``InputError``; foci beyond
  +-128 mm beside good ones are left out and counted;
- the map names are NiMARE 0.22.1's (listed below, as NiMARE 0.22.1 names them on the pain set);
- with the same seed, the nulls are identical on 1 and 2 cores (Monte Carlo FWE and label
  permutation alike), and a result's estimator gives the same result when refitted.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

from neurochange.compare.balanced import BalancedSubtraction
from neurochange.compare.subtraction import Subtraction
from neurochange.errors import InputError
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.inference.permutation import LabelPermutation
from neurochange.meta import chi2
from neurochange.meta.ale import ALE
from neurochange.meta.mkda import KDA, MKDADensity
from neurochange.meta.result import FWE_MAPS
from neurochange.simulate import simulate_studyset
from neurochange.studyset import StudySet

#: NiMARE 0.22.1's map names (``Estimator.fit(dset).maps``) on the pain set.
NIMARE_MAPS = {
    "ALE": {"stat", "p", "z", "logp"},
    "MKDADensity": {"stat", "p", "z", "logp"},
    "KDA": {"stat", "p", "z", "logp"},
    "MKDAChi2": {f"{kind}_desc-{label}" for kind in ("chi2", "p", "z", "logp")
                 for label in ("uniformity", "group1", "group2", "association")}
    | {f"prob_desc-{name}" for name in ("A", "AgF", "AgF_prior", "AgU", "FgA", "FgA_prior", "group1", "group2")},
    "Subtraction": {f"{kind}_desc-{label}" for kind in ("stat", "p", "z", "logp")
                    for label in ("group1", "group2", "group1MinusGroup2")},
}

ONE_GROUP = {
    "ALE": lambda: ALE(),
    "ALE(fwhm)": lambda: ALE(fwhm=10.0),
    "MKDADensity": lambda: MKDADensity(),
    "KDA": lambda: KDA(radius=8.0),
}
TWO_GROUPS = {
    "MKDAChi2": lambda: chi2.MKDAChi2(),
    "Subtraction": lambda: Subtraction(n_iters=120, seed=4, n_cores=1),
    "Subtraction(MKDADensity)": lambda: Subtraction(MKDADensity(), n_iters=120, seed=4, n_cores=1),
    "BalancedSubtraction": lambda: BalancedSubtraction(target_n=4, n_subsamples=3, difference_iterations=3,
                                                       n_iters=6, seed=4, n_cores=1, mask_coverage="brain"),
}


def _groups():
    both = simulate_studyset([{"n": 6, "centre": (30, 20, 10), "hits": 5}, {"n": 5, "centre": (-30, 20, 10), "hits": 4}],
                             n_foci=4, seed=1)
    ids = both.experiments["experiment_id"]
    return (both.filter_experiments(ids[ids.str.startswith("sim0_")].tolist()),
            both.filter_experiments(ids[ids.str.startswith("sim1_")].tolist()))


def _fit(estimator, sets):
    return estimator.fit(*sets)


def _sets(name):
    a, b = _groups()
    return (a,) if name in ONE_GROUP else (a, b)


def _assert_same(r1, r2):
    assert set(r1.maps) == set(r2.maps)
    for key in r1.maps:
        np.testing.assert_array_equal(r1.maps[key], r2.maps[key], err_msg=key)
    assert set(r1.nulls) == set(r2.nulls)
    for key in r1.nulls:
        np.testing.assert_array_equal(r1.nulls[key], r2.nulls[key], err_msg=key)
    assert r1.experiment_ids == r2.experiment_ids


ALL = {**ONE_GROUP, **TWO_GROUPS}


@pytest.fixture(scope="module", params=sorted(ALL))
def case(request):
    name = request.param
    estimator = ALL[name]()
    sets = _sets(name)
    return name, estimator, sets, _fit(estimator, sets)


def test_fit_twice_equal_and_input_untouched(case):
    name, estimator, sets, first = case
    before = [copy.deepcopy(s) for s in sets]
    again = _fit(estimator, sets)
    _assert_same(first, again)
    for old, new in zip(before, sets):
        for table in ("studies", "experiments", "foci"):
            pd.testing.assert_frame_equal(getattr(old, table), getattr(new, table))


def test_rebuilt_from_params_gives_same_result(case):
    name, estimator, sets, first = case
    rebuilt = type(estimator)(**estimator.get_params())
    assert rebuilt.get_params().keys() == estimator.get_params().keys()
    _assert_same(first, _fit(rebuilt, sets))


def test_pickled_estimator_gives_same_result(case):
    name, estimator, sets, first = case
    restored = pickle.loads(pickle.dumps(estimator))
    _assert_same(first, _fit(restored, sets))
    result = pickle.loads(pickle.dumps(first))
    _assert_same(first, result)


def test_map_names_are_nimares(case):
    name, _, _, result = case
    key = name.split("(")[0]
    if key == "BalancedSubtraction":  # NiMARE's BalancedALESubtraction names
        expected = {f"{kind}_desc-balancedGroup1MinusGroup2" for kind in ("stat", "p", "z", "logp")} | {
            "prob_desc-group1", "prob_desc-group2", "stat_desc-conjunction"}
        assert set(result.maps) == expected
        return
    assert NIMARE_MAPS[key] <= set(result.maps)
    # what is added comes from a corrector, with NiMARE's corrector names
    assert all("_corr-FWE_method-montecarlo" in extra for extra in set(result.maps) - NIMARE_MAPS[key])


@pytest.mark.parametrize("name", sorted(ALL))
def test_empty_and_out_of_bounds_input(name):
    estimator = ALL[name]()
    sets = list(_sets(name))
    good = sets[0]
    empty = StudySet(good.studies, good.experiments, good.foci.iloc[:0])
    with pytest.raises(InputError, match="no foci"):
        _fit(estimator, [empty, *sets[1:]])
    far = good.foci.assign(x=200.0)
    with pytest.raises(InputError, match="beyond"):
        _fit(estimator, [StudySet(good.studies, good.experiments, far), *sets[1:]])
    # two foci beyond +-128 mm beside the good ones: left out, counted
    extra = good.foci.iloc[:2].assign(x=[150.0, -140.0])
    mixed = StudySet(good.studies, good.experiments, pd.concat([good.foci, extra], ignore_index=True))
    result = _fit(estimator, [mixed, *sets[1:]])
    counts = result.params["counts"]
    first = counts if "foci_out_of_bounds" in counts else next(iter(counts.values()))
    assert first["foci_out_of_bounds"] == 2


@pytest.mark.parametrize("name", sorted(ONE_GROUP))
def test_montecarlo_nulls_do_not_depend_on_cores(name):
    (studyset,) = _sets(name)
    result = ONE_GROUP[name]().fit(studyset)
    one = MonteCarloFWE(n_iters=130, seed=9, n_cores=1).correct(result)
    two = MonteCarloFWE(n_iters=130, seed=9, n_cores=2).correct(result)
    _assert_same(one, two)
    assert set(FWE_MAPS) <= set(one.maps)
    # the corrected result's estimator refits the same statistic
    np.testing.assert_array_equal(one.estimator.fit(studyset, one.grid).maps["stat"], one.maps["stat"])


@pytest.mark.parametrize("name", ["MKDAChi2", "Subtraction", "BalancedSubtraction"])
def test_permutation_nulls_do_not_depend_on_cores(name):
    sets = _sets(name)
    if name == "MKDAChi2":
        fitted = chi2.MKDAChi2().fit(*sets)
        one, _ = chi2.fwe_null(fitted, LabelPermutation(n_iters=130, seed=2, n_cores=1))
        two, _ = chi2.fwe_null(fitted, LabelPermutation(n_iters=130, seed=2, n_cores=2))
        np.testing.assert_array_equal(one, two)
        return
    params = TWO_GROUPS[name]().get_params()
    one = type(TWO_GROUPS[name]())(**{**params, "n_cores": 1}).fit(*sets)
    two = type(TWO_GROUPS[name]())(**{**params, "n_cores": 2}).fit(*sets)
    _assert_same(one, two)
