"""The corpus's term maps (:mod:`neurochange.decode.maps`), built once per corpus build and cached.

The cache is ``NEUROCHANGE_HOME/term_maps/<key>/`` (``maps.npy``: float16, terms x mask voxels;
``terms.tsv``; ``info.json``), where the key hashes what the maps depend on: NeuroQuery's files in
the corpus (names, SHA-256, options), the annotation settings, the kernel radius, the least number of
studies a term must label, and the mask. A rebuilt corpus from other files gets new maps; the same
files reuse them. float16 keeps 11 significant bits: an r computed from the cached maps is within
about 1e-3 of the r from exact ones.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from neurochange import __version__
from neurochange.corpus.store import Corpus
from neurochange.decode.maps import TermMaps, term_maps
from neurochange.errors import InputError
from neurochange.meta import spheres
from neurochange.meta.inputs import analysis_inputs
from neurochange.sources.download import home
from neurochange.sources.io.databases import NEUROQUERY
from neurochange.space import Grid
from neurochange.workflows.settings import DecodeSettings

#: Bumped when the maps' computation or files change, so older caches are not read.
FORMAT = 1


def study_maps(corpus: Corpus, grid: Grid, radius: float) -> tuple[np.ndarray, sparse.csr_matrix]:
    """NeuroQuery's studies (ids, sorted) and their binary MKDA maps, (n_studies, n_mask) CSR (one experiment
    per study, its tables pooled)."""
    studyset = corpus.query(f"source={NEUROQUERY}", source=NEUROQUERY)
    inputs = analysis_inputs(studyset, grid)
    study_of = studyset.experiments.set_index("experiment_id")["study_id"]
    ids = study_of.loc[list(inputs.experiment_ids)].to_numpy(dtype=object)
    indptr, indices = spheres.mkda_ma_csr(inputs.foci_ijk, inputs.focus_experiment, inputs.n_experiments, grid,
                                          radius)
    ma = sparse.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=(len(ids), grid.n_voxels))
    order = np.argsort(ids, kind="stable")
    return ids[order], ma[order]


def cache_key(corpus: Corpus, settings: DecodeSettings, grid: Grid) -> str:
    """What the term maps depend on, hashed (hex, 16 characters)."""
    files = corpus.source_files(NEUROQUERY)
    if not files:
        raise InputError("decoding needs NeuroQuery's studies and term counts, which this corpus does not hold; "
                         "run `neurochange corpus build --source neuroquery`", field="vocabulary")
    described = {"format": FORMAT, "files": files, "vocabulary": settings.vocabulary, "fields": list(settings.fields),
                 "annotation": settings.annotation, "threshold": settings.label_threshold,
                 "radius_mm": settings.map_radius, "min_studies": settings.map_min_studies,
                 "mask": hashlib.sha256(np.packbits(grid.mask).tobytes() + grid.affine.tobytes()).hexdigest()}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def corpus_term_maps(corpus: Corpus, settings: DecodeSettings, grid: Grid,
                     progress=None) -> tuple[TermMaps, Path, bool]:
    """The corpus's term maps on ``grid`` by ``settings``, from the cache or built (and cached); returns the
    maps, their folder and whether they were built now. ``progress(done, total)`` while building."""
    from neurochange.workflows.decode import term_labels

    folder = home() / "term_maps" / cache_key(corpus, settings, grid)
    if (folder / "info.json").is_file():
        return _load(folder), folder, False
    ids, ma = study_maps(corpus, grid, settings.map_radius)
    values = term_labels(corpus, ids, settings)
    maps = term_maps(ma, values.labels(settings.label_threshold), values.terms, settings.map_min_studies,
                     progress=progress)
    if not len(maps.terms):
        raise InputError(f"no term labels at least {settings.map_min_studies} studies", field="min_studies")
    _save(maps, folder, {"neurochange": __version__, "format": FORMAT, "corpus": str(corpus.path),
                         "source_files": corpus.source_files(NEUROQUERY), "settings": settings.to_dict(),
                         "studies": int(maps.n_total), "terms": int(len(maps.terms)),
                         "map": "MKDA chi-square association z (NiMARE's z_desc-association) of the term's studies "
                                "against the others", "dtype": "float16"})
    return maps, folder, True


def _save(maps: TermMaps, folder: Path, info: dict) -> None:
    """Write the cache folder whole or not at all (a temporary folder renamed into place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        np.save(tmp / "maps.npy", maps.maps)
        pd.DataFrame({"term": maps.terms, "n_studies": maps.n_studies}).to_csv(tmp / "terms.tsv", sep="\t",
                                                                               index=False)
        (tmp / "info.json").write_text(json.dumps(info, indent=2))
        try:
            tmp.rename(folder)
        except OSError:  # another process cached the same maps first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(folder: Path) -> TermMaps:
    info = json.loads((folder / "info.json").read_text())
    table = pd.read_csv(folder / "terms.tsv", sep="\t", dtype={"term": str}, keep_default_na=False)
    return TermMaps(table["term"].to_numpy(dtype=object), table["n_studies"].to_numpy(np.int64), int(info["studies"]),
                    np.load(folder / "maps.npy", mmap_mode="r"))


__all__ = ["cache_key", "corpus_term_maps", "study_maps"]
