"""What a review group's clusters are reported with, and what they coactivate with (``decode = true`` and
``macm = true`` in a spec's ``[analysis]``).

For each significant cluster of a group's map (``clusters_index.nii.gz``'s numbering), the cluster is
decoded as a region (:func:`neurochange.workflows.decode.decode_region`) and its coactivation network
mapped (:func:`neurochange.workflows.macm.run_macm`, FDR only: a review's clusters are many and a
label-permutation FWE for each would take minutes); the group's z map is decoded by correlation with
the term maps (:func:`neurochange.workflows.decode.decode_map`). Written in ``<group folder>/decoding/``:

- ``cluster_terms.tsv``: each cluster's top terms (positive association, corrected p < .05, labelling at
  least 5 of its studies: a chi-square on fewer carriers rests on a handful of papers);
- ``map_terms.tsv``: every term map's r with the group's z map;
- ``macm_cluster-<N>.nii.gz``: cluster N's network (association z where positive at FDR q < .05);
  ``macm_networks.tsv``: its clusters' peaks with atlas labels;
- ``decoding.json``: the settings, counts and warnings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurochange.corpus.store import Corpus
from neurochange.decode.regions import Region
from neurochange.errors import InputError
from neurochange.inference.clusters import significant_clusters
from neurochange.meta.result import MetaResult
from neurochange.results.write import Output
from neurochange.space import Grid
from neurochange.workflows.decode import FEW_CARRIERS, RegionDecoder, decode_map, region_warnings
from neurochange.workflows.macm import network_mask, run_macm, source_studies
from neurochange.workflows.settings import (
    DecodeSettings,
    InferenceSettings,
    KernelSettings,
    RunSettings,
)

#: Terms kept per cluster and shown for a map.
TOP_TERMS = 10
FOLDER = "decoding"


def cluster_regions(result: MetaResult, cluster_p: float, name: str) -> list[Region]:
    """The significant clusters of ``result`` (numbered by size, as ``clusters_index.nii.gz``) as regions."""
    labels = significant_clusters(result, cluster_p)[0]
    return [Region(f"cluster {n} of {name}", grid=Grid(labels == n, result.grid.affine))
            for n in range(1, int(labels.max()) + 1)]


def decode_group(corpus: Corpus, result: MetaResult, name: str, cluster_p: float, decode: DecodeSettings | None,
                 macm: bool, run: RunSettings, log=None) -> tuple[dict, Output]:
    """Decode (when ``decode``) and map the coactivation (when ``macm``) of each significant cluster of
    ``result``, and decode its z map; returns the ``review.json`` entry and the files of ``decoding/``."""
    log = log or (lambda message: None)
    entry = {"folder": FOLDER, "clusters": [], "map_terms": [], "warnings": []}
    term_rows, network_rows, images = [], [], {}
    decoder = RegionDecoder(corpus, decode) if decode is not None else None
    studies = source_studies(corpus) if macm else None  # read once for every cluster's network
    for n, region in enumerate(cluster_regions(result, cluster_p, name), start=1):
        row = {"cluster_id": n, "n_voxels": int(region.grid.mask.sum())}
        try:
            if decoder is not None:
                decoding = decoder.decode(region)
                top = decoding.top(TOP_TERMS, min_carriers=FEW_CARRIERS)
                row.update(n_studies=int(len(decoding.selected)),
                           terms=[[t, round(float(z), 2)] for t, z in zip(top["term"], top["zReverse"])])
                term_rows.append(top.assign(cluster_id=n, rank=np.arange(1, len(top) + 1),
                                            n_studies_in_cluster=len(decoding.selected)))
                entry["warnings"] += [f"cluster {n}: {w}" for w in region_warnings(region, len(decoding.selected))]
            if macm:
                done = run_macm(corpus, region, KernelSettings(estimator="mkda"), InferenceSettings(n_iters=10), run,
                                fwe=False, studyset=studies)
                chi2 = done.results[""]
                network = network_mask(chi2)
                images[f"{FOLDER}/macm_cluster-{n}.nii.gz"] = chi2.grid.to_img(
                    np.where(network, chi2.get_volume("z_desc-association"), 0.0)[chi2.grid.mask])
                network_rows.append(done.summary["network"].assign(cluster_id=n))
                row.update(n_studies=done.summary["n_in_region"], network_voxels=done.summary["network_voxels"],
                           network_share=round(done.summary["network_share"], 4),
                           macm_map=f"macm_cluster-{n}.nii.gz")
        except InputError as exc:  # a cluster no study of the corpus reports a focus in
            entry["warnings"].append(f"cluster {n}: {exc.message}")
        entry["clusters"].append(row)
    log(f"{name}: {len(entry['clusters'])} clusters decoded" + (" with their coactivation networks" if macm else ""))
    tables = {}
    if decode is not None:
        mapped = decode_map(corpus, result.get_map("z"), f"{name}'s z map", decode)  # term maps on the 2 mm grid
        top = mapped.top(TOP_TERMS)
        entry["map_terms"] = [[t, round(float(r), 3)] for t, r in zip(top["term"], top["r"])]
        entry["warnings"] += list(mapped.warnings)
        tables[f"{FOLDER}/map_terms.tsv"] = mapped.table
        columns = ["cluster_id", "rank", "term", "zReverse", "pReverse", "probReverse", "n_selected_term",
                   "n_studies_in_cluster"]
        tables[f"{FOLDER}/cluster_terms.tsv"] = (pd.concat(term_rows, ignore_index=True)[columns] if term_rows
                                                 else pd.DataFrame(columns=columns))
    if macm:
        tables[f"{FOLDER}/macm_networks.tsv"] = (pd.concat(network_rows, ignore_index=True) if network_rows
                                                 else pd.DataFrame(columns=["cluster_id"]))
    record = {"settings": None if decode is None else decode.to_dict(), "macm": macm, **entry}
    return entry, Output(images=images, tables=tables, records={f"{FOLDER}/decoding.json": record})


__all__ = ["FOLDER", "TOP_TERMS", "cluster_regions", "decode_group"]
