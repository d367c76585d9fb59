"""Test helpers: StudySets built from NiMARE Datasets, and NiMARE ALE runs on the same input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from neurochange.studyset import StudySet


def load_nimare_dataset(path):
    """A ``nimare.dataset.Dataset`` from a NiMARE JSON file (MNI152 2 mm target)."""
    from nimare.dataset import Dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Dataset(str(path))


def studyset_from_nimare(dset) -> StudySet:
    """A StudySet with the same experiments (ids, sample sizes) and foci (MNI mm) as ``dset``."""
    meta = dset.metadata.copy()
    n = meta["sample_sizes"].map(lambda v: float(np.mean(v)) if isinstance(v, (list, np.ndarray)) and len(v) else np.nan) \
        if "sample_sizes" in meta else pd.Series(np.nan, index=meta.index)
    experiments = pd.DataFrame(
        {
            "experiment_id": meta["id"].astype(str),
            "study_id": meta["study_id"].astype(str),
            "contrast_id": meta["contrast_id"].astype(str),
            "n": n.round().astype("Int64"),
        }
    )
    studies = pd.DataFrame({"study_id": experiments["study_id"].unique()})
    coords = dset.coordinates
    foci = pd.DataFrame(
        {
            "experiment_id": coords["id"].astype(str).to_numpy(),
            "x": coords["x"].to_numpy(float),
            "y": coords["y"].to_numpy(float),
            "z": coords["z"].to_numpy(float),
            "space": "MNI",
        }
    )
    return StudySet(studies, experiments, foci)


def nimare_ale(dset, fwhm=None, **kwargs):
    """NiMARE's ALE fitted on ``dset`` with neurochange's default mask: (estimator, MetaResult).

    The mask is neurochange's default, NiMARE's ``mni152_2mm`` Dataset default voxel for voxel (RAS),
    so masked arrays line up voxel for voxel.
    """
    from nimare.meta.cbma.ale import ALE

    from neurochange.space import mask_img

    kernel = {} if fwhm is None else {"kernel__fwhm": fwhm}
    est = ALE(mask=mask_img(), **kernel, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est, est.fit(dset)
