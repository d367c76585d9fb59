"""Predicted FWE thresholds of an ALE: JALE 0.2.10's regressors (Frahm et al. 2025).

Three XGBoost regressors shipped in JALE 0.2.10 (:mod:`neurochange.sources.jale_models`) give,
from 26 features of the experiments (:func:`features`), what JALE's Monte Carlo would give at
alpha 0.05 and cluster-forming p < 0.001 (the settings JALE fixes when it predicts): the
voxel-level FWE cut-off of the ALE, the cluster-level FWE cut-off in voxels (rounded, as JALE)
and the TFCE FWE cut-off. They are predictions, to be labelled so wherever shown; they never
replace a Monte Carlo unless the user asks. Inputs outside the models' training data are recorded
as sentences in ``out_of_distribution`` (JALE logs them, and stops where a sample exceeds 300;
here the caller warns).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from neurochange.errors import InputError

#: JALE's out-of-distribution limits: experiments, subjects of one experiment, foci of one experiment.
MAX_EXPERIMENTS = 150
MAX_SUBJECTS = 300
MAX_FOCI = 150


@dataclass(frozen=True)
class PredictedThresholds:
    """FWE cut-offs predicted by JALE 0.2.10's models (always reported as *predicted*).

    Attributes
    ----------
    vfwe_ale : float
        Voxel-level FWE cut-off (ALE units).
    cfwe_voxels : int
        Cluster-level FWE cut-off: cluster size (voxels of 2 mm), clusters formed at p < 0.001.
    tfce : float
        TFCE FWE cut-off (TFCE of the z map).
    out_of_distribution : tuple of str
        One sentence per condition JALE warns about; empty when the input is in range.
    """

    vfwe_ale: float
    cfwe_voxels: int
    tfce: float
    out_of_distribution: tuple[str, ...]


def _counts(n_subjects, n_foci) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(n_subjects, dtype=np.float64).ravel()
    foci = np.asarray(n_foci, dtype=np.float64).ravel()
    if n.size == 0 or n.shape != foci.shape:
        raise InputError(f"need one sample size and one number of foci per experiment, got {n.size} and {foci.size}")
    if not (np.isfinite(n).all() and (n > 0).all()):
        raise InputError("every experiment needs a positive sample size", field="n")
    if not (np.isfinite(foci).all() and (foci >= 1).all()):
        raise InputError("every experiment needs at least one focus", field="foci")
    return n, foci


def _describe(x: np.ndarray) -> list[float]:
    with warnings.catch_warnings():  # equal values: skewness and kurtosis are NaN (missing to XGBoost)
        warnings.simplefilter("ignore", RuntimeWarning)
        shape = [stats.skew(x), stats.kurtosis(x)]
    return [x.sum(), x.mean(), np.median(x), x.std(), x.max(), x.min(), *shape]


def features(n_subjects, n_foci) -> np.ndarray:
    """The 26 features of JALE's cut-off models, in the models' order.

    Parameters
    ----------
    n_subjects, n_foci : array_like
        Sample size and number of foci of each experiment.

    Returns
    -------
    numpy.ndarray
        (26,) float64:

        - 0: number of experiments;
        - 1-8: subjects per experiment: total, mean, median, standard deviation (ddof 0),
          maximum, minimum, skewness, excess kurtosis (biased moment estimators; NaN when all
          equal);
        - 9-16: foci per experiment, the same eight;
        - 17-20: foci per subject of each experiment: mean, standard deviation, maximum, minimum;
        - 21: foci per experiment (total foci / experiments);
        - 22-25: total foci of the experiments with n > 20, 15 < n <= 20, 10 < n <= 15, n <= 10.
    """
    n, foci = _counts(n_subjects, n_foci)
    ratio = foci / n
    by_size = [foci[n > 20].sum(), foci[(n > 15) & (n <= 20)].sum(), foci[(n > 10) & (n <= 15)].sum(),
               foci[n <= 10].sum()]
    return np.array([n.size, *_describe(n), *_describe(foci), ratio.mean(), ratio.std(), ratio.max(), ratio.min(),
                     foci.sum() / n.size, *by_size], dtype=np.float64)


def out_of_distribution(n_subjects, n_foci) -> tuple[str, ...]:
    """Sentences for the inputs outside JALE's models' training data (JALE's warnings)."""
    n, foci = _counts(n_subjects, n_foci)
    caveat = "outside the data JALE's models were trained on; the predicted thresholds may be wrong"
    out = []
    if n.size > MAX_EXPERIMENTS:
        out.append(f"{n.size} experiments, more than {MAX_EXPERIMENTS}: {caveat}")
    if n.max() > MAX_SUBJECTS:
        out.append(f"an experiment with {n.max():g} subjects, more than {MAX_SUBJECTS}: {caveat} "
                   "(JALE 0.2.10 refuses to predict)")
    if foci.max() > MAX_FOCI:
        out.append(f"an experiment with {foci.max():g} foci, more than {MAX_FOCI}: {caveat}")
    return tuple(out)


def predict_thresholds(n_subjects, n_foci) -> PredictedThresholds:
    """JALE 0.2.10's predicted vFWE, cFWE and TFCE cut-offs for these experiments.

    Parameters
    ----------
    n_subjects, n_foci : array_like
        Sample size and number of foci of each experiment.

    Returns
    -------
    PredictedThresholds
        Raises ``InputError`` with the install line when xgboost is missing.
    """
    from neurochange.sources import jale_models

    models = jale_models.boosters()
    x = features(n_subjects, n_foci)[None, :]
    vfwe, cfwe, tfce = (float(models[name].inplace_predict(x)[0]) for name in ("vfwe", "cfwe", "tfce"))
    return PredictedThresholds(vfwe, int(np.round(cfwe)), tfce, out_of_distribution(n_subjects, n_foci))


__all__ = ["MAX_EXPERIMENTS", "MAX_FOCI", "MAX_SUBJECTS", "PredictedThresholds", "features", "out_of_distribution",
           "predict_thresholds"]
