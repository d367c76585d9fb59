"""The estimators a results folder can name, and how to rebuild one from its record."""

from __future__ import annotations

from neurochange.errors import InputError
from neurochange.meta.ale import ALE
from neurochange.meta.mkda import KDA, MKDADensity

#: The estimators a results folder can name in ``params.json`` (NiMARE's class names).
ESTIMATORS = {cls.name: cls for cls in (ALE, MKDADensity, KDA)}


def estimator_from_record(record: dict, file=None):
    """The estimator that ``params["estimator"]`` of a results folder describes."""
    name = record.get("name")
    if name == ALE.name:
        return ALE(fwhm=record.get("fwhm"))
    if name in ESTIMATORS:
        return ESTIMATORS[name](radius=record["radius_mm"], value=record.get("value", 1.0))
    raise InputError(f"this folder holds {name or 'an unknown estimator'}; diagnose works on "
                     f"{', '.join(ESTIMATORS)} results", file=file, field="estimator")
