"""Predicted neural models: the model files (built in, or a user's), their regions as voxel masks.

A model (``resources/models/<name>.toml`` or a user's file; see docs/models.md) names
the treatment and disorder it concerns, its references (keys of
``resources/references.bib``), its regions (atlas labels, or spheres at published
coordinates with the source table) each with a predicted direction of change after
treatment (``increase``/``decrease``), and the thresholds of its verdict.

The region test: :mod:`neurochange.hypotheses.regions`; the verdict: :mod:`neurochange.hypotheses.verdict`.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.results import atlas as _atlas
from neurochange.sources.references import load_bib
from neurochange.vocabulary import allowed

#: Verdicts with signed data (increase/decrease experiments), and with unsigned data only.
SIGNED_VERDICTS = ("supported", "partly supported", "not supported", "contradicted")
UNSIGNED_VERDICTS = ("convergence where predicted, direction untested",
                     "partial convergence where predicted, direction untested", "no convergence where predicted")
VERDICTS = (*SIGNED_VERDICTS, *UNSIGNED_VERDICTS, "not enough data")
SETS = ("all", "increase", "decrease")
NOT_ASSESSABLE = "not assessable"


# ---------------------------------------------------------------------------- the model file
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sphere(_Strict):
    """A sphere at a published coordinate: centre (MNI mm), radius (mm), source and the label it names."""

    centre: tuple[float, float, float]
    radius: float = Field(gt=0, le=30)
    reference: str
    table: str = Field(min_length=1, description="table or figure of the reference giving the coordinate")
    atlas: str
    label: str


class Region(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    direction: Literal["increase", "decrease"]
    atlas: str | None = None
    labels: list[str] | None = None
    sphere: Sphere | None = None
    references: list[str] = []
    note: str = ""

    @model_validator(mode="after")
    def _one_definition(self):
        by_label = self.atlas is not None or self.labels is not None
        if by_label == (self.sphere is not None):
            raise ValueError("define the region either by atlas + labels or by a sphere, not both or neither")
        if by_label and (self.atlas is None or not self.labels):
            raise ValueError("an atlas region needs both atlas and a non-empty labels list")
        return self


class Treatment(_Strict):
    modality: list[str] = Field(min_length=1)
    subtypes: list[str] = []


class Verdict(_Strict):
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_experiments: int = Field(default=10, ge=1)
    supported_share: float = Field(default=0.5, gt=0, le=1)
    partly_share: float = Field(default=0.2, gt=0, le=1)
    contradicted_share: float = Field(default=0.5, gt=0, le=1)
    correction: Literal["holm"] = "holm"

    @model_validator(mode="after")
    def _ordered(self):
        if self.partly_share > self.supported_share:
            raise ValueError("partly_share must not exceed supported_share")
        return self


class NeuralModel(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    description: str
    treatment: Treatment
    disorders: list[str] = Field(min_length=1)
    references: list[str] = Field(min_length=1)
    regions: list[Region] = Field(min_length=1)
    verdict: Verdict = Verdict()

    def region(self, name: str) -> Region:
        return next(r for r in self.regions if r.name == name)


def _fail(message: str, path, loc=()) -> InputError:
    return InputError(message, file=str(path), field=".".join(str(p) for p in loc) or None)


def _check_model(model: NeuralModel, path) -> None:
    """Cross-checks pydantic cannot make: vocabulary, bib keys, atlas labels, sphere centres."""
    bib = load_bib()
    for i, modality in enumerate(model.treatment.modality):
        if modality not in allowed("modality"):
            raise _fail(f"unknown modality {modality!r}; use one of {', '.join(allowed('modality'))}",
                        path, ("treatment", "modality", i))
    for i, subtype in enumerate(model.treatment.subtypes):
        if subtype not in allowed("subtype"):
            raise _fail(f"unknown treatment subtype {subtype!r}", path, ("treatment", "subtypes", i))
    for i, disorder in enumerate(model.disorders):
        if disorder not in allowed("disorder"):
            raise _fail(f"unknown disorder {disorder!r}; use one of {', '.join(allowed('disorder'))}",
                        path, ("disorders", i))
    for i, key in enumerate(model.references):
        if key not in bib:
            raise _fail(f"reference {key!r} is not in resources/references.bib", path, ("references", i))
    names = [r.name for r in model.regions]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _fail(f"region name {dup!r} is used twice", path, ("regions",))
    for i, region in enumerate(model.regions):
        for j, key in enumerate(region.references):
            if key not in bib:
                raise _fail(f"reference {key!r} is not in resources/references.bib", path,
                            ("regions", i, "references", j))
        if region.sphere is None:
            if region.atlas not in _atlas.ATLASES:
                raise _fail(f"unknown atlas {region.atlas!r}; use one of {', '.join(_atlas.ATLASES)}",
                            path, ("regions", i, "atlas"))
            known = set(_atlas.labels(region.atlas))
            for j, label in enumerate(region.labels):
                if label not in known:
                    raise _fail(f"{region.atlas} has no label {label!r} (neurochange.results.atlas.labels"
                                f"({region.atlas!r}) lists them)", path, ("regions", i, "labels", j))
        else:
            sphere = region.sphere
            loc = ("regions", i, "sphere")
            if sphere.reference not in bib:
                raise _fail(f"reference {sphere.reference!r} is not in resources/references.bib", path,
                            loc + ("reference",))
            if sphere.atlas not in _atlas.ATLASES:
                raise _fail(f"unknown atlas {sphere.atlas!r}", path, loc + ("atlas",))
            if sphere.label not in set(_atlas.labels(sphere.atlas)):
                raise _fail(f"{sphere.atlas} has no label {sphere.label!r}", path, loc + ("label",))
            found = sphere_centre_label(sphere)
            if found != sphere.label:
                raise _fail(f"the centre {list(sphere.centre)} lies in {found!r} in {sphere.atlas}, not in "
                            f"{sphere.label!r}: check the coordinate (MNI mm) and the label", path, loc + ("centre",))


def sphere_centre_label(sphere: Sphere) -> str:
    """The atlas label at a sphere's centre (in the atlas the sphere names)."""
    return _atlas.label_points([sphere.centre])[f"label_{sphere.atlas}"].iloc[0]


def load_model(path: str | Path) -> NeuralModel:
    """Read and check a model file (TOML); one InputError naming the file and field on any mistake."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"cannot read the model file: {err.strerror}", file=str(path)) from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"not valid TOML: {err}", file=str(path)) from None
    try:
        model = NeuralModel.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif first["type"] == "missing":
            message = f"missing required key {loc[-1]!r}"
        raise _fail(message, path, loc) from None
    _check_model(model, path)
    return model


def builtin_models() -> dict[str, NeuralModel]:
    """The models shipped in ``resources/models/``, by name."""
    folder = resources.files("neurochange").joinpath("resources", "models")
    models = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                model = load_model(path)
            models[model.name] = model
    return models


def region_masks(model: NeuralModel, grid: _space.Grid | None = None) -> dict[str, np.ndarray]:
    """Each region's voxels on ``grid`` (3-D bool, within the grid's mask), by region name."""
    grid = grid or _space.mni_2mm()
    masks = {}
    for region in model.regions:
        if region.sphere is None:
            masks[region.name] = _atlas.region_mask(region.atlas, region.labels, grid)
        else:
            ijk = np.argwhere(grid.mask)
            distance = np.linalg.norm(grid.vox_to_mm(ijk) - np.asarray(region.sphere.centre), axis=1)
            mask = np.zeros(grid.shape, dtype=bool)
            mask[tuple(ijk[distance <= region.sphere.radius].T)] = True
            masks[region.name] = mask
    return masks


def region_definition(region: Region) -> str:
    """A short human-readable definition: ``harvard_oxford: Left_Amygdala + Right_Amygdala``."""
    if region.sphere is None:
        return f"{region.atlas}: " + " + ".join(region.labels)
    s = region.sphere
    return (f"sphere r={s.radius:g} mm at ({s.centre[0]:g}, {s.centre[1]:g}, {s.centre[2]:g}) "
            f"[{s.reference}, {s.table}]")
