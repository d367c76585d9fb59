"""Decoding a region against the corpus (``neurochange decode``): which terms its studies are labelled with.

The studies under analysis are NeuroQuery's (the source of the term counts), each with the foci
NeuroQuery reports; the region selects those with a focus in it (:mod:`neurochange.decode.regions`);
:func:`neurochange.decode.discrete.decode_studies` compares them with the rest, term by term.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from neurochange import __version__
from neurochange.corpus.store import Corpus
from neurochange.decode.discrete import decode_studies
from neurochange.decode.regions import Region
from neurochange.decode.terms import TermMatrix, annotate, check_choices
from neurochange.errors import InputError
from neurochange.results import provenance
from neurochange.results.write import Output
from neurochange.sources.io.databases import NEUROQUERY
from neurochange.space import Grid
from neurochange.workflows.settings import DecodeSettings

#: Fewer studies in a region than this, or a top term carried by fewer of them, and the association
#: statistics rest on a handful of studies: the run says so.
FEW_STUDIES, FEW_CARRIERS = 30, 5


@dataclass(frozen=True)
class Decoding:
    """A region's decoding: ``table`` (one row per term, strongest association first), the studies in the
    region (``selected``) and under analysis (``n_studies``), how it was run, and ``warnings``."""

    region: Region
    table: pd.DataFrame
    selected: np.ndarray
    n_studies: int
    settings: DecodeSettings
    seconds: float
    corpus: str = ""
    warnings: tuple[str, ...] = ()

    def top(self, n: int = 10, alpha: float = 0.05, min_carriers: int = 1) -> pd.DataFrame:
        """The ``n`` terms most associated with the region: positive association with (corrected) p < ``alpha``,
        labelling at least ``min_carriers`` of its studies, strongest first."""
        t = self.table
        return t[(t["zReverse"] > 0) & (t["pReverse"] < alpha) & (t["n_selected_term"] >= min_carriers)].head(n)


def term_labels(corpus: Corpus, study_ids, settings: DecodeSettings) -> TermMatrix:
    """The studies' annotation values (rows in ``study_ids``' sorted order) by ``settings``."""
    fields = check_choices(settings.vocabulary, settings.fields)
    counts = corpus.term_counts(fields, core_only=settings.vocabulary == "core")
    return annotate(TermMatrix.from_long(counts, study_ids), settings.annotation)


class RegionDecoder:
    """NeuroQuery's studies, their foci and term labels, read from the corpus once; :meth:`decode` then takes
    any number of regions (the review's clusters, a site) at a few tens of ms each."""

    def __init__(self, corpus: Corpus, settings: DecodeSettings = DecodeSettings()):
        foci = corpus.source_foci(NEUROQUERY)
        self.settings, self.corpus = settings, str(corpus.path)
        self.values = term_labels(corpus, foci["study_id"].unique(), settings)
        self.labels = self.values.labels(settings.label_threshold).astype(np.float64)  # float: sums are products
        self.xyz = foci[["x", "y", "z"]].to_numpy(np.float64)
        self.focus_study = pd.Index(self.values.study_ids).get_indexer(foci["study_id"])  # (n_foci,) row of each

    def decode(self, region: Region) -> Decoding:
        """Decode ``region``: its studies (a focus in it) against the other studies."""
        start = time.perf_counter()
        selected = np.zeros(len(self.values.study_ids), dtype=bool)
        selected[self.focus_study[region.contains(self.xyz)]] = True
        s = self.settings
        table = decode_studies(self.labels, self.values.terms, selected, prior=s.prior, correction=s.correction,
                               min_studies=s.min_studies)
        # terms come sorted, so a stable sort on z alone breaks ties by term; NaN last
        table = table.iloc[np.argsort(-table["zReverse"].to_numpy(), kind="stable")].reset_index(drop=True)
        ids = self.values.study_ids[selected]
        decoding = Decoding(region, table, ids, len(selected), s, time.perf_counter() - start, self.corpus)
        return replace(decoding, warnings=region_warnings(region, len(ids)) + carrier_warnings(decoding))


def decode_region(corpus: Corpus, region: Region, settings: DecodeSettings = DecodeSettings()) -> Decoding:
    """Decode ``region`` against the corpus's NeuroQuery studies (one region; for several, a :class:`RegionDecoder`)."""
    start = time.perf_counter()
    decoding = RegionDecoder(corpus, settings).decode(region)
    return replace(decoding, seconds=time.perf_counter() - start)


def region_warnings(region: Region, n_selected: int) -> tuple[str, ...]:
    """What a reader should know of a region before reading its statistics."""
    if n_selected < FEW_STUDIES:
        return (f"only {n_selected} studies report a focus in the region: its statistics rest on few studies",)
    return ()


def carrier_warnings(decoding: Decoding) -> tuple[str, ...]:
    top = decoding.top(10)
    few = top["term"][top["n_selected_term"] < FEW_CARRIERS].tolist()
    if not few:
        return ()
    return (f"{len(few)} of the top terms ({', '.join(few[:5])}) label fewer than {FEW_CARRIERS} studies in the "
            "region",)


def decoding_output(decoding: Decoding, grid: Grid) -> Output:
    """``decoding.tsv``, ``region.nii.gz`` (on ``grid``), ``studies.tsv`` (the studies in the region) and
    ``provenance.json``."""
    record = {
        "command": "decode",
        "neurochange": __version__,
        "corpus": decoding.corpus,
        "region": decoding.region.label,
        "studies_in_region": int(len(decoding.selected)),
        "studies_analysed": decoding.n_studies,
        "source": f"{NEUROQUERY}: its studies, their foci and the term counts of their "
                  f"{', '.join(decoding.settings.fields)}",
        "decoder": "Neurosynth's (Yarkoni et al. 2011), as NiMARE 0.22.1's NeurosynthDecoder",
        "settings": decoding.settings.to_dict(),
        "terms_tested": int(len(decoding.table)),
        "warnings": list(decoding.warnings),
        "versions": provenance.versions(),
    }
    return Output(tables={"decoding.tsv": decoding.table, "studies.tsv": pd.DataFrame({"study_id": decoding.selected})},
                  images={"region.nii.gz": decoding.region.image(grid)}, records={"provenance.json": record},
                  timings={"decode": decoding.seconds})


@dataclass(frozen=True)
class MapDecoding:
    """A whole map's decoding: ``table`` (``term``, ``r``, ``n_studies`` the term labels; highest r first)
    against the term maps of ``n_studies`` studies cached in ``maps_folder`` (``built``: made by this run)."""

    label: str
    table: pd.DataFrame
    n_studies: int
    settings: DecodeSettings
    seconds: float
    maps_folder: str
    built: bool
    corpus: str = ""
    warnings: tuple[str, ...] = ()

    def top(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` terms whose maps correlate most (positively) with the map."""
        return self.table[self.table["r"] > 0].head(n)


def decode_map(corpus: Corpus, img, label: str, settings: DecodeSettings = DecodeSettings(), grid: Grid | None = None,
               progress=None) -> MapDecoding:
    """Decode the map ``img`` (a NIfTI image) by its correlation with the corpus's term maps (cached; built on
    first use, ``progress(done, total)``), over the mask of ``grid`` (default: the MNI152 2 mm brain mask)."""
    from neurochange.decode.maps import correlate
    from neurochange.space import mni_2mm
    from neurochange.workflows.term_maps import corpus_term_maps

    start = time.perf_counter()
    grid = grid or mni_2mm()
    values, warnings = map_values(img, grid, label)
    maps, folder, built = corpus_term_maps(corpus, settings, grid, progress)
    table = pd.DataFrame({"term": maps.terms, "r": correlate(maps.maps, values), "n_studies": maps.n_studies})
    table = table.sort_values(["r", "term"], ascending=[False, True], kind="stable", na_position="last")
    return MapDecoding(label, table.reset_index(drop=True), maps.n_total, settings, time.perf_counter() - start,
                       str(folder), built, str(corpus.path), warnings)


def map_values(img, grid: Grid, label: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """``img``'s values at ``grid``'s mask voxels (n_mask,), resampled (continuous) when on another grid; NaN
    read as 0. Raises InputError for a map other than 3-D or with no variance in the mask."""
    import nibabel as nib

    warnings = []
    if len(img.shape) != 3 and not (len(img.shape) == 4 and img.shape[3] == 1):
        raise InputError(f"{label}: a map to decode is one 3-D image, not of shape {img.shape}", field="map")
    img = nib.funcs.squeeze_image(img)
    if not grid.holds(img):
        img = grid.resample(img, "continuous")
        warnings.append(f"{label} was resampled (continuous interpolation) onto the {grid.shape} grid of the mask")
    values = np.asarray(img.dataobj, dtype=np.float64)[grid.mask]
    if np.isnan(values).any():
        warnings.append(f"{label}: {int(np.isnan(values).sum()):,} NaN voxels in the mask were read as 0")
        values = np.nan_to_num(values, nan=0.0)
    if not np.ptp(values) > 0:
        raise InputError(f"{label} has no variance in the brain mask: nothing to correlate", field="map")
    if len(np.unique(values)) <= 2:
        warnings.append(f"{label} holds two values only: a mask, not a statistical map; its r says how much each "
                        "term map is raised inside the mask (decode it as a region for the studies in it)")
    return values, tuple(warnings)


def map_decoding_output(decoding: MapDecoding) -> Output:
    """``decoding.tsv`` (term, r, n_studies) and ``provenance.json``."""
    record = {
        "command": "decode --map",
        "neurochange": __version__,
        "corpus": decoding.corpus,
        "map": decoding.label,
        "studies_analysed": decoding.n_studies,
        "source": f"{NEUROQUERY}: its studies, their foci and the term counts of their "
                  f"{', '.join(decoding.settings.fields)}",
        "decoder": "Pearson r with each term's MKDA chi-square association z map, as NiMARE 0.22.1's "
                   "CorrelationDecoder with MKDAChi2; r is descriptive (no p: nearly every r over a whole "
                   "mask of smooth maps would pass a test)",
        "term_maps": {"folder": decoding.maps_folder, "built_by_this_run": decoding.built,
                      "min_studies": decoding.settings.map_min_studies, "radius_mm": decoding.settings.map_radius,
                      "dtype": "float16 (r within about 1e-3 of exact maps)"},
        "settings": {k: v for k, v in decoding.settings.to_dict().items()
                     if k in ("vocabulary", "fields", "annotation", "threshold", "map_min_studies", "map_radius")},
        "terms_correlated": int(len(decoding.table)),
        "warnings": list(decoding.warnings),
        "versions": provenance.versions(),
    }
    return Output(tables={"decoding.tsv": decoding.table}, records={"provenance.json": record},
                  timings={"decode": decoding.seconds})


__all__ = ["Decoding", "MapDecoding", "RegionDecoder", "decode_map", "decode_region", "decoding_output",
           "map_decoding_output", "map_values", "term_labels"]
