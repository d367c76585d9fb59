"""Meta-analytic coactivation of a region (MACM; Robinson et al. 2010, Laird et al. 2013): ``neurochange macm``.

The studies of NeuroQuery that report a focus in the region (:mod:`neurochange.decode.regions`)
against all its other studies, by MKDA chi-square (:func:`neurochange.workflows.chi2.chi2_analysis`:
NiMARE 0.22.1's ``MKDAChi2``, FDR, and FWE by label permutation). The association map says where
foci are reported more often by the region's studies than by the others: regions that coactivate
with it across tasks, which is not resting-state connectivity (nor its anticorrelations).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurochange.corpus.store import Corpus
from neurochange.decode.regions import Region
from neurochange.errors import InputError
from neurochange.inference.clusters import cluster_table, label_clusters
from neurochange.meta.chi2 import FDR_SUFFIX
from neurochange.meta.result import MetaResult
from neurochange.results.atlas import add_labels
from neurochange.sources.io.databases import NEUROQUERY
from neurochange.space import load_grid
from neurochange.studyset import StudySet
from neurochange.workflows.analysis import AnalysisRun
from neurochange.workflows.chi2 import chi2_analysis
from neurochange.workflows.decode import region_warnings
from neurochange.workflows.settings import InferenceSettings, KernelSettings, RunSettings


def source_studies(corpus: Corpus) -> StudySet:
    """NeuroQuery's experiments, one per study (its tables pooled): what every MACM splits."""
    return corpus.query(f"source={NEUROQUERY}", source=NEUROQUERY)


def region_split(corpus: Corpus, region: Region, studyset: StudySet | None = None):
    """NeuroQuery's experiments (``studyset``: :func:`source_studies`, read once for many regions) split into
    (those whose study reports a focus in ``region``, the others), as two StudySets."""
    studyset = source_studies(corpus) if studyset is None else studyset
    foci = studyset.foci.merge(studyset.experiments[["experiment_id", "study_id"]], on="experiment_id")
    inside = set(region.studies(foci))
    member = studyset.experiments["study_id"].isin(inside).to_numpy()
    if not member.any():
        raise InputError(f"no study reports a focus in the region ({region.label})", field="region")
    if member.all():
        raise InputError("every study reports a focus in the region: no others to compare with", field="region")
    ids = studyset.experiments["experiment_id"].to_numpy()
    return studyset.filter_experiments(ids[member]), studyset.filter_experiments(ids[~member])


def network_mask(result: MetaResult, q: float = 0.05) -> np.ndarray:
    """The network: voxels of positive association (z > 0) at FDR ``q``, 3-D bool."""
    return (result.grid.mask & (result.get_volume("z_desc-association") > 0)
            & (result.get_volume(f"p_desc-association_level-voxel{FDR_SUFFIX}") < q))


def network_table(result: MetaResult, q: float = 0.05) -> tuple[pd.DataFrame, int]:
    """Where the network lies: the clusters of :func:`network_mask`, a row per peak (``peak_z_association``:
    the uncorrected association z; ``size_vox``: its cluster's size, repeated on each of its peaks) with atlas
    labels (``network.tsv``); and how many voxels they hold."""
    z = result.get_volume("z_desc-association")
    supra = network_mask(result, q)
    labels, sizes = label_clusters(supra)
    table = cluster_table(z, z, labels, sizes, result.grid.affine).drop(columns=["p_fwe", "n_experiments",
                                                                                 "experiments"])
    return add_labels(table.rename(columns={"peak_stat": "peak_z_association"}).drop(columns="peak_zscore")), \
        int(supra.sum())


def run_macm(corpus: Corpus, region: Region, kernel: KernelSettings, inference: InferenceSettings, run: RunSettings,
             fwe: bool = True, progress=None, studyset: StudySet | None = None) -> AnalysisRun:
    """The coactivation network of ``region``: MKDA chi-square of its studies against the rest (``studyset``:
    :func:`source_studies`, when read already)."""
    selection, rest = region_split(corpus, region, studyset)
    per_study = [round(len(s.foci) / len(s.experiments), 2) for s in (selection, rest)]
    record = {"command": "macm", "input": {"region": region.label, "corpus": str(corpus.path), "source": NEUROQUERY,
                                           "studies_in_region": int(len(selection.experiments)),
                                           "studies_outside": int(len(rest.experiments)),
                                           "foci_per_study": {"in_region": per_study[0], "outside": per_study[1]}},
              "note": "studies that report more foci are more likely to report one in the region, and then "
                      "associate positively with it wherever they report foci: with many studies, positive "
                      "association can cover much of the brain; its strongest peaks locate the network, and the "
                      "strongest of all is the region itself, by construction (not evidence of coactivation)",
              "pooled": {"selection": "a study's tables pooled (one experiment per study)",
                         "rest": "a study's tables pooled (one experiment per study)"}}
    done = chi2_analysis(selection, rest, load_grid(run.mask), kernel, inference, run, fwe, progress, record)
    network, n_voxels = network_table(done.results[""])
    done.output.tables["network.tsv"] = network
    warnings = list(region_warnings(region, len(selection.experiments)))
    done.record["warnings"] = warnings
    done.summary.update(region=region.label, n_in_region=int(len(selection.experiments)), network_voxels=n_voxels,
                        network_share=n_voxels / int(done.results[""].grid.mask.sum()),
                        network_clusters=int(network["cluster_id"].nunique()) if len(network) else 0,
                        foci_per_study=per_study, network=network, warnings=warnings)
    return done


__all__ = ["network_mask", "network_table", "region_split", "run_macm", "source_studies"]
