"""Helpers shared by the reader/writer tests: comparing StudySets, a StudySet with every field."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurochange.studyset import EXPERIMENT_COLUMNS, STUDY_COLUMNS, StudySet

FOCUS_KEYS = ["experiment_id", "x", "y", "z", "space", "table_id", "source", "out_of_bounds", "duplicate"]


def assert_same_studyset(a: StudySet, b: StudySet, *, focus_source: bool = True, atol: float = 0.0) -> None:
    """Same studies (study fields), experiments (tags resolved) and foci (floats to ``atol``, in order).

    Files carry tags per experiment, so study-level tags are compared as resolved on
    the experiments. Provenance is not compared.
    """
    studies = [s.studies[list(STUDY_COLUMNS)].sort_values("study_id").reset_index(drop=True) for s in (a, b)]
    pd.testing.assert_frame_equal(*studies)
    exps = [
        s.resolved_experiments()[list(EXPERIMENT_COLUMNS)].sort_values("experiment_id").reset_index(drop=True)
        for s in (a, b)
    ]
    pd.testing.assert_frame_equal(*exps)
    keys = FOCUS_KEYS if focus_source else [k for k in FOCUS_KEYS if k != "source"]
    foci = [
        s.foci[keys].sort_values("experiment_id", kind="stable").reset_index(drop=True) for s in (a, b)
    ]
    if atol:
        np.testing.assert_allclose(*(f[["x", "y", "z"]].to_numpy() for f in foci), rtol=0, atol=atol)
        foci = [f.drop(columns=["x", "y", "z"]) for f in foci]
    pd.testing.assert_frame_equal(*foci, check_exact=True)


def rich_studyset() -> StudySet:
    """Two studies, four experiments: every field, a study-level tag, Talairach foci, an empty experiment."""
    studies = pd.DataFrame(
        {
            "study_id": ["Smith et al., 2010", "12345678"],
            "title": ["CBT changes amygdala: a trial", "rTMS of the DLPFC"],
            "authors": ["Smith A; Jones B", None],
            "year": [2010, 2019],
            "journal": ["NeuroImage", None],
            "doi": ["10.1016/j.neuroimage.2010.01.001", None],
            "source": ["curated", None],
            "modality": [None, "brain_stimulation"],
        }
    )
    experiments = pd.DataFrame(
        {
            "experiment_id": [
                "Smith et al., 2010-post > pre",
                "Smith et al., 2010-pre > post",
                "12345678-1",
                "12345678-sham",
            ],
            "study_id": ["Smith et al., 2010", "Smith et al., 2010", "12345678", "12345678"],
            "contrast_id": ["post > pre", "pre > post", "1", "sham"],
            "name": ["post > pre (faces)", None, "active > sham", None],
            "n": [16, 16, 24, 12],
            "direction": ["increase", "decrease", "unsigned", None],
            "modality": ["psychotherapy", "psychotherapy", None, None],
            "subtype": ["cbt", "cbt", "rtms", None],
            "disorder": ["mdd", "mdd", "ocd", "ocd"],
            "design": ["pre_post", "pre_post", "randomized_comparison", None],
            "imaging": ["task_fmri", "task_fmri", "resting_fmri", None],
            "sessions": [12.0, 12.0, 20.0, np.nan],
            "weeks": [np.nan, np.nan, 4.0, np.nan],
            "frequency_hz": [np.nan, np.nan, 10.0, np.nan],
            "intensity_pct_mt": [np.nan, np.nan, 110.0, np.nan],
            "pulses": [np.nan, np.nan, 3000.0, np.nan],
            "target": [None, None, "left DLPFC (-38, 44, 26)", None],
        }
    )
    foci = pd.DataFrame(
        {
            "experiment_id": ["Smith et al., 2010-post > pre"] * 3 + ["Smith et al., 2010-pre > post"] * 2
            + ["12345678-1"] * 2,
            "x": [-16.0, 26.5, -19.23456789012345, 0.0, -2.0, 40.0, 41.0],
            "y": [-58.0, -64.0, 3.3, 60.0, -1e-05, 4.0, 5.0],
            "z": [-22.0, -50.0, 11.0, 0.0, 8.0, 2.0, 3.0],
            "space": ["MNI", "MNI", "MNI", "TAL", "TAL", "MNI", "MNI"],
        }
    )
    studyset = StudySet(studies, experiments, foci)
    studyset.flag_foci()
    return studyset
