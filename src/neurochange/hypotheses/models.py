"""Predicted neural models: model files, a region-wise convergence test, and a verdict.

A model (``resources/models/<name>.toml`` or a user's file; see docs/models.md) names
the treatment and disorder it concerns, its references (keys of
``resources/references.bib``), its regions (atlas labels, or spheres at published
coordinates with the source table) each with a predicted direction of change after
treatment (``increase``/``decrease``), and the thresholds of its verdict.

The test, for one set of experiments and one region R (a fixed set of voxels):

- statistic: the mean ALE over R's voxels (the kernels of ``estimators.ALE``: a fixed
  FWHM or one from each experiment's sample size);
- null: the same experiments (their focus counts and kernels) with every focus redrawn
  uniformly from the null-mask voxels, as the Monte Carlo FWE null draws them
  (``montecarlo.chunk_draws``; chunk c of the set's stream uses its own SeedSequence
  child), R kept fixed; only R's voxels are computed, so an iteration costs little;
- ``p = (1 + #{null >= observed}) / (1 + n_iters)`` (Phipson & Smyth 2010), valid
  (never below its nominal level) under the null at any number of iterations.

Multiple regions: Holm's step-down correction over every test the model makes (its
regions; with signed data, its regions x the two directions), so the chance that any
region of a model is called convergent when none is stays at or below alpha.

Verdict (thresholds from the model file's ``[verdict]`` table):

- ``not enough data``: no set has ``min_experiments`` experiments;
- signed basis (increase and/or decrease sets with ``min_experiments`` or more):
  a region *supports* the model when its predicted direction converges (Holm p <= alpha)
  and *contradicts* it when only the opposite direction converges;
  ``supported`` when supporting regions make up at least ``supported_share`` of the
  regions and none contradicts; ``contradicted`` when contradicting regions make up at
  least ``contradicted_share`` and outnumber supporting ones; ``partly supported`` when
  at least ``partly_share`` (and at least one region) support; else ``not supported``;
- unsigned basis (only the pooled set is large enough, or no experiment is signed): the
  direction is not assessable, a region supports the model when the pooled set
  converges there, and the same shares decide between supported, partly supported and
  not supported (never contradicted). The result says ``basis: "unsigned"``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.inference import null_masks
from neurochange.inference.executors import ThreadExecutor, run_chunks
from neurochange.inference.montecarlo import chunk_draws
from neurochange.meta import kernels
from neurochange.meta.ale import ALE
from neurochange.meta.inputs import analysis_inputs
from neurochange.results import atlas as _atlas
from neurochange.sources.references import load_bib
from neurochange.studyset import StudySet
from neurochange.vocabulary import allowed

VERDICTS = ("supported", "partly supported", "not supported", "contradicted", "not enough data")
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


# ---------------------------------------------------------------------------- region ALE (numba)
@njit(cache=True, nogil=True)
def _region_means(foci_ijk, exp_start, exp_kernel, kvalues, kstart, kradius, vox_k, row_ptr, shape,
                  region_ptr, region_idx, out_row, ma, keep, touched):
    """Mean ALE of each region for one set of foci; writes ``out_row`` (n_regions,).

    ``foci_ijk`` (n, 3) int64, grouped by experiment (experiment e owns rows
    ``exp_start[e]:exp_start[e+1]``). The union of region voxels is held by grid row:
    the voxels of row (i, j) are ``row_ptr[i*ny+j]:row_ptr[i*ny+j+1]`` with k in ``vox_k``
    (sorted). ``ma`` (m,) zeros, ``keep`` (m,) and ``touched`` (m,) are work space;
    ``ma`` is left all zero. Each experiment's MA is the maximum of its foci's kernels,
    folded into ``keep`` (the product of 1 - MA, in experiment order) over the voxels it touched.
    """
    m = vox_k.shape[0]
    nx, ny = shape[0], shape[1]
    for v in range(m):
        keep[v] = 1.0
    for e in range(exp_start.shape[0] - 1):
        k = exp_kernel[e]
        r = kradius[k]
        side = 2 * r + 1
        base = kstart[k]
        n_touched = 0
        for f in range(exp_start[e], exp_start[e + 1]):
            fi = foci_ijk[f, 0]
            fj = foci_ijk[f, 1]
            fk = foci_ijk[f, 2]
            for a in range(side):
                i = fi + a - r
                if i < 0 or i >= nx:
                    continue
                for b in range(side):
                    j = fj + b - r
                    if j < 0 or j >= ny:
                        continue
                    row = i * ny + j
                    offset = base + (a * side + b) * side
                    for t in range(row_ptr[row], row_ptr[row + 1]):
                        c = vox_k[t] - fk + r
                        if c < 0:
                            continue
                        if c >= side:
                            break
                        value = np.float64(kvalues[offset + c])
                        if value <= 0.0:
                            continue
                        if ma[t] == 0.0:
                            touched[n_touched] = t
                            n_touched += 1
                            ma[t] = value
                        elif value > ma[t]:
                            ma[t] = value
        for q in range(n_touched):
            t = touched[q]
            keep[t] *= 1.0 - ma[t]
            ma[t] = 0.0
    for q in range(region_ptr.shape[0] - 1):
        total = 0.0
        for t in range(region_ptr[q], region_ptr[q + 1]):
            total += 1.0 - keep[region_idx[t]]
        out_row[q] = total / (region_ptr[q + 1] - region_ptr[q])


@njit(cache=True, nogil=True)
def _null_block(draws, null_ijk, exp_start, exp_kernel, kvalues, kstart, kradius, vox_k, row_ptr, shape,
                region_ptr, region_idx, out):
    """Region means for each row of ``draws`` (iterations, n_foci) of null-voxel indices."""
    m = vox_k.shape[0]
    ma = np.zeros(m)
    keep = np.ones(m)
    touched = np.zeros(m, dtype=np.int64)
    foci = np.empty((draws.shape[1], 3), dtype=np.int64)
    for it in range(draws.shape[0]):
        for f in range(draws.shape[1]):
            foci[f, 0] = null_ijk[draws[it, f], 0]
            foci[f, 1] = null_ijk[draws[it, f], 1]
            foci[f, 2] = null_ijk[draws[it, f], 2]
        _region_means(foci, exp_start, exp_kernel, kvalues, kstart, kradius, vox_k, row_ptr, shape,
                      region_ptr, region_idx, out[it], ma, keep, touched)


@dataclass
class RegionSetup:
    """The voxels of a model's regions on a grid, as the numba loops take them."""

    names: list[str]
    n_voxels: np.ndarray  # (n_regions,)
    vox_k: np.ndarray  # (m,) k index of each union voxel, C order
    row_ptr: np.ndarray  # (nx * ny + 1,) union voxels of grid row (i, j)
    shape: np.ndarray  # (3,) grid shape
    region_ptr: np.ndarray
    region_idx: np.ndarray

    @classmethod
    def from_masks(cls, masks: dict[str, np.ndarray]) -> "RegionSetup":
        empty = [name for name, mask in masks.items() if not mask.any()]
        if empty:
            raise InputError(f"region {empty[0]!r} has no voxel in the analysis mask", field="regions")
        shape = next(iter(masks.values())).shape
        union = np.zeros(shape, dtype=bool)
        for mask in masks.values():
            union |= mask
        vox = np.argwhere(union).astype(np.int64)  # C order: sorted by row (i, j), then k
        rows = vox[:, 0] * shape[1] + vox[:, 1]
        row_ptr = np.searchsorted(rows, np.arange(shape[0] * shape[1] + 1)).astype(np.int64)
        lookup = np.full(shape, -1, dtype=np.int64)
        lookup[tuple(vox.T)] = np.arange(len(vox))
        idx = [lookup[mask] for mask in masks.values()]
        ptr = np.concatenate([[0], np.cumsum([len(i) for i in idx])]).astype(np.int64)
        return cls(list(masks), np.array([len(i) for i in idx]), np.ascontiguousarray(vox[:, 2]), row_ptr,
                   np.array(shape, dtype=np.int64), ptr, np.concatenate(idx).astype(np.int64))


def _kernel_table(fwhms: np.ndarray, voxel_size, fixed: bool):
    """Unique kernels of the experiments: (exp_kernel, values, start, radius)."""
    unique, exp_kernel = np.unique(np.asarray(fwhms, dtype=float), return_inverse=True)
    cubes = [kernels.ale_kernel(float(f), voxel_size, fixed=fixed) for f in unique]
    start = np.concatenate([[0], np.cumsum([c.values.size for c in cubes])[:-1]]).astype(np.int64)
    return (exp_kernel.astype(np.int64), np.concatenate([c.values for c in cubes]).astype(np.float32),
            start, np.array([c.radius for c in cubes], dtype=np.int64))


def region_convergence(studyset: StudySet, masks: dict[str, np.ndarray], grid: _space.Grid | None = None, *,
                       fwhm: float | None = None, n_iters: int = 1000, seed: int = 0, stream: int = 0,
                       null_mask="brain", n_cores: int | None = None, progress=None) -> dict:
    """Observed mean ALE in each region, its Monte Carlo null and p (see the module docstring).

    Returns ``{"n_experiments", "n_foci", "observed" (n_regions,), "null" (n_iters, n_regions),
    "p" (n_regions,)}``. ``stream`` 0 draws exactly the null foci of ``MonteCarloFWE`` with the
    same seed; other streams are independent (``SeedSequence(seed, spawn_key=(stream, chunk))``).
    """
    grid = grid or _space.mni_2mm()
    setup = RegionSetup.from_masks(masks)
    inputs = analysis_inputs(studyset, grid)
    exp_kernel, kvalues, kstart, kradius = _kernel_table(ALE(fwhm).experiment_fwhm(inputs), grid.voxel_size,
                                                         fixed=fwhm is not None)
    counts = inputs.foci_per_experiment()
    exp_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    args = (exp_start, exp_kernel, kvalues, kstart, kradius, setup.vox_k, setup.row_ptr, setup.shape,
            setup.region_ptr, setup.region_idx)
    n_regions = len(setup.names)

    observed = np.zeros(n_regions)
    _region_means(np.ascontiguousarray(inputs.foci_ijk, dtype=np.int64), *args, observed,
                  np.zeros(len(setup.vox_k)), np.ones(len(setup.vox_k)), np.zeros(len(setup.vox_k), dtype=np.int64))

    null_ijk = np.argwhere(null_masks.null_mask(grid, null_mask)).astype(np.int64)
    n_foci = int(exp_start[-1])
    null = np.zeros((n_iters, n_regions))

    def task(chunk):
        draws = chunk_draws(seed, chunk.index, chunk.count, n_foci, len(null_ijk), (stream,) if stream else ())
        _null_block(draws, null_ijk, *args, null[chunk.start: chunk.start + chunk.count])

    with ThreadExecutor(n_cores) as executor:
        run_chunks(task, n_iters, executor, progress=progress)
    exceed = (null >= observed[None, :] - 1e-12 * np.abs(observed[None, :])).sum(axis=0)
    return {
        "n_experiments": inputs.n_experiments,
        "n_foci": n_foci,
        "observed": observed,
        "null": null,
        "p": (1.0 + exceed) / (1.0 + n_iters),
        "regions": setup.names,
        "n_voxels": setup.n_voxels,
    }


# ---------------------------------------------------------------------------- correction and verdict
def holm(p) -> np.ndarray:
    """Holm step-down adjusted p values (same shape; NaN stays NaN and is not counted)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    valid = np.flatnonzero(~np.isnan(flat))
    if len(valid) == 0:
        return out
    order = valid[np.argsort(flat[valid], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * flat[order]))
    result = out.ravel()
    result[order] = adjusted
    return result.reshape(p.shape)


def _count(studyset: StudySet | None) -> int:
    """Experiments that enter an ALE (at least one focus within +-128 mm), as estimators.ALE counts them."""
    if studyset is None or len(studyset.foci) == 0:
        return 0
    foci = studyset.foci
    usable = foci[~_space.out_of_bounds(foci[["x", "y", "z"]].to_numpy(dtype=float))]
    return int(studyset.experiments["experiment_id"].isin(usable["experiment_id"]).sum())


@dataclass
class ModelTest:
    """The test of one model on one group: per-region table, verdict, basis and the numbers behind it."""

    model: NeuralModel
    regions: pd.DataFrame
    verdict: str
    basis: str
    summary: dict
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        rows = json.loads(self.regions.to_json(orient="records"))
        return {
            "model": self.model.name,
            "title": self.model.title,
            "verdict": self.verdict,
            "basis": self.basis,
            "summary": self.summary,
            "references": list(self.model.references),
            "regions": rows,
            "params": self.params,
        }


def test_model(model: NeuralModel, studysets: dict[str, StudySet | None], grid: _space.Grid | None = None, *,
               fwhm: float | None = None, n_iters: int = 1000, seed: int = 0, n_cores=None, progress=None,
               null_mask="brain") -> ModelTest:
    """Test ``model`` on a group's experiments: ``studysets`` has ``"all"`` (every experiment of
    the group), ``"increase"`` and ``"decrease"`` (None where absent).

    ``progress(done, total)`` is called as Monte Carlo iterations finish (summed over sets).
    Reproducible by ``seed`` whatever ``n_cores``.
    """
    grid = grid or _space.mni_2mm()
    rules = model.verdict
    unknown = set(studysets) - set(SETS)
    if unknown:
        raise ValueError(f"studysets keys must be among {SETS}, got {sorted(unknown)}")
    masks = region_masks(model, grid)
    counts = {name: _count(studysets.get(name)) for name in SETS}
    tested = {name: counts[name] >= rules.min_experiments for name in SETS}
    signed = tested["increase"] or tested["decrease"]
    basis = "signed" if signed else "unsigned"
    to_run = [s for s in (("increase", "decrease") if signed else ("all",)) if tested[s]]
    if signed and tested["all"]:
        to_run = ["all"] + to_run  # pooled convergence is reported too (not used by the verdict)

    total = n_iters * len(to_run)
    runs = {}
    for k, name in enumerate(to_run):
        def step(done, _n, k=k):
            if progress is not None:
                progress(k * n_iters + done, total)
        runs[name] = region_convergence(studysets[name], masks, grid, fwhm=fwhm, n_iters=n_iters, seed=seed,
                                        stream=SETS.index(name), null_mask=null_mask, n_cores=n_cores,
                                        progress=step)

    names = list(masks)
    nan = np.full(len(names), np.nan)
    table = pd.DataFrame({
        "region": names,
        "definition": [region_definition(model.region(n)) for n in names],
        "predicted_direction": [model.region(n).direction for n in names],
        "n_voxels": [int(m.sum()) for m in masks.values()],
        "observed": runs["all"]["observed"] if "all" in runs else nan,
        "p": runs["all"]["p"] if "all" in runs else nan,
    })
    for d in ("increase", "decrease"):
        table[f"observed_{d}"] = runs[d]["observed"] if d in runs else nan
        table[f"p_{d}"] = runs[d]["p"] if d in runs else nan
    alpha = rules.alpha

    verdict = None
    if not (signed or tested["all"]):
        verdict = "not enough data"
        basis = "signed" if counts["increase"] + counts["decrease"] else "unsigned"
        table["p_holm"] = nan
        table["p_holm_increase"] = nan
        table["p_holm_decrease"] = nan
        table["observed_direction"] = NOT_ASSESSABLE
        table["converges"] = False
        table["supports"] = False
        table["contradicts"] = False
    elif signed:
        adjusted = holm(np.column_stack([table["p_increase"], table["p_decrease"]]))
        table["p_holm"] = holm(table["p"]) if "all" in runs else nan
        table["p_holm_increase"], table["p_holm_decrease"] = adjusted[:, 0], adjusted[:, 1]
        inc = table["p_holm_increase"].to_numpy() <= alpha
        dec = table["p_holm_decrease"].to_numpy() <= alpha
        table["observed_direction"] = np.select([inc & dec, inc, dec], ["both", "increase", "decrease"], "none")
        predicted_inc = table["predicted_direction"].to_numpy() == "increase"
        table["supports"] = np.where(predicted_inc, inc, dec)
        table["contradicts"] = np.where(predicted_inc, dec & ~inc, inc & ~dec)
        table["converges"] = inc | dec
    else:
        table["p_holm"] = holm(table["p"])
        table["p_holm_increase"] = nan
        table["p_holm_decrease"] = nan
        table["observed_direction"] = NOT_ASSESSABLE
        table["converges"] = table["p_holm"].to_numpy() <= alpha
        table["supports"] = table["converges"]
        table["contradicts"] = False

    n_regions = len(names)
    n_support = int(table["supports"].sum())
    n_contra = int(table["contradicts"].sum())
    if verdict != "not enough data":
        share_support, share_contra = n_support / n_regions, n_contra / n_regions
        if n_contra == 0 and share_support >= rules.supported_share:
            verdict = "supported"
        elif signed and n_contra > n_support and share_contra >= rules.contradicted_share:
            verdict = "contradicted"
        elif n_support >= 1 and share_support >= rules.partly_share:
            verdict = "partly supported"
        else:
            verdict = "not supported"
    summary = {
        "regions_tested": n_regions,
        "regions_converging": int(table["converges"].sum()),
        "regions_supporting": n_support,
        "regions_contradicting": n_contra,
        "share_supporting": n_support / n_regions,
        "share_contradicting": n_contra / n_regions,
        "n_experiments": counts["all"],
        "n_increase": counts["increase"],
        "n_decrease": counts["decrease"],
        "sets_tested": to_run,
        "alpha": alpha,
        "min_experiments": rules.min_experiments,
        "supported_share": rules.supported_share,
        "partly_share": rules.partly_share,
        "contradicted_share": rules.contradicted_share,
        "correction": "holm over " + ("regions x directions (increase, decrease)" if signed else "regions"),
        "direction": ("assessed from increase/decrease experiments" if signed
                      else "not assessable: convergence only (unsigned data)"),
    }
    params = {
        "statistic": "mean ALE over the region's voxels",
        "null": "foci redrawn uniformly from the null mask (as Monte Carlo FWE), region fixed",
        "p": "(1 + #null >= observed) / (1 + n_iters)",
        "n_iters": n_iters, "seed": seed, "fwhm": fwhm, "null_mask": null_mask if isinstance(null_mask, str)
        else "custom", "grid_voxels": grid.n_voxels,
    }
    return ModelTest(model=model, regions=table, verdict=verdict, basis=basis, summary=summary, params=params)


test_model.__test__ = False  # not a pytest test


def write_model_test(test: ModelTest, folder: str | Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.tsv`` (the region table) and ``<stem>.json`` (verdict, summary, table) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tsv, js = folder / f"{stem}.tsv", folder / f"{stem}.json"
    test.regions.to_csv(tsv, sep="\t", index=False, float_format="%.6g")
    js.write_text(json.dumps(test.to_dict(), indent=2) + "\n")
    return tsv, js
