"""Shared fixtures: where NiMARE's bundled data and the offline database mirror are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def nimare_test_data() -> Path:
    """``nimare/tests/data``: Sleuth test files, test_pain_dataset.json, ..."""
    import nimare

    return Path(nimare.__file__).parent / "tests" / "data"


@pytest.fixture(scope="session")
def pain_path(nimare_test_data) -> Path:
    """NiMARE's pain test set (21 experiments, 243 foci): the reference input of the ALE tests."""
    return nimare_test_data / "test_pain_dataset.json"


@pytest.fixture(scope="session")
def nimare_resources() -> Path:
    """``nimare/resources``: nidm_pain_dset.json, templates, ..."""
    import nimare

    return Path(nimare.__file__).parent / "resources"


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    """The offline mirror of Neurosynth v7 / NeuroQuery v1 (``NEUROCHANGE_DATA_MIRROR``).

    Defaults to ``../shared/data`` beside the project. Missing data is a failure, not a skip.
    """
    path = Path(os.environ.get("NEUROCHANGE_DATA_MIRROR", PROJECT.parent / "shared" / "data"))
    if not (path / "neurosynth-v7").is_dir():
        pytest.fail(f"database mirror not found at {path}; set NEUROCHANGE_DATA_MIRROR")
    return path
