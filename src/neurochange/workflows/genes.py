"""Which genes' expression follows a results map (``neurochange genes RESULT_DIR``): imaging transcriptomics with
nulls that fit coordinate-based maps.

For a results folder (ALE, MKDA or KDA, with its foci and Monte Carlo settings):

1. the statistic map (ALE, density or KDA values; the null maps are of the same statistic) is
   averaged over the Desikan-Killiany regions (:mod:`neurochange.genes.parcellate`);
2. its Spearman r with every gene's regional expression (:mod:`neurochange.genes.association`);
3. p against two nulls, each FDR-corrected across genes (Benjamini-Hochberg):
   - ``p_cbma``: the CBMA's own null maps (:mod:`neurochange.genes.nulls`), all regions;
   - ``p_spin``: rotations of the cortex (:mod:`neurochange.genes.spin`), the cortical regions only
     (``r_cortex``);
4. gene sets (:mod:`neurochange.genes.sets`): the mean r of the set's genes against the same two
   nulls (``gene_set_nulls.tsv`` holds both distributions), and beside them the naive p against
   random gene sets, which ignores spatial autocorrelation (Fulcher et al. 2021).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurochange import __version__
from neurochange.errors import InputError
from neurochange.genes.association import null_p, spearman
from neurochange.genes.expression import LICENCES, load_expression
from neurochange.genes.nulls import null_parcels
from neurochange.genes.parcellate import exactly_aligned, parcel_means, region_index
from neurochange.genes.sets import (
    MIN_GENES,
    builtin_sets,
    load_sets,
    random_set_scores,
    set_columns,
)
from neurochange.genes.spin import centroids, spin_permutations
from neurochange.inference.fdr import fdr_bh_nlogp
from neurochange.inference.null_masks import null_mask
from neurochange.meta.result import MetaResult
from neurochange.report.numbers import integer
from neurochange.results import provenance
from neurochange.results.write import Output
from neurochange.workflows.settings import GeneSettings

#: Rows of genes.tsv printed as "top genes".
TOP = 10
#: What the analysis rests on (keys of references.bib).
REFERENCES = ("hawrylycz2012", "markello2021", "desikan2006", "alexanderbloch2018", "vasa2018", "fulcher2021")


@dataclass(frozen=True)
class GenesRun:
    """The gene table (``genes``: one row per gene, highest r first), the gene-set table, the output to write and
    a summary."""

    genes: pd.DataFrame
    sets: pd.DataFrame
    output: Output
    summary: dict


def fdr_floor(n_null: int, n_genes: int, q: float = 0.05) -> str:
    """Why no gene may pass FDR with few nulls: the smallest p, and how many genes must reach it."""
    smallest = 1 / (n_null + 1)
    need = int(np.ceil(smallest * n_genes / q))
    return (f"the smallest p with {integer(n_null)} nulls is 1/{integer(n_null + 1)} = {smallest:.2g}; Benjamini-"
            f"Hochberg across {integer(n_genes)} genes passes genes at that p only when {integer(need)} or more "
            "reach it")


def _fdr(p: np.ndarray) -> np.ndarray:
    return np.exp(fdr_bh_nlogp(np.log(p)))


def run_genes(result: MetaResult, null_which: str, settings: GeneSettings = GeneSettings(), label: str = "",
              progress=None) -> GenesRun:
    """Imaging transcriptomics of ``result``'s statistic map; ``null_which``: its Monte Carlo null mask ("brain",
    "gm"), where the CBMA null draws foci; ``progress(done, total)`` over the null maps."""
    timings = {}
    start = time.perf_counter()
    expression = load_expression(settings.hemisphere)
    sets = builtin_sets() if settings.sets is None else load_sets(settings.sets)
    grid = result.grid
    regions = expression.regions
    index = region_index(expression.atlas, regions["label"].to_numpy(), grid)
    warnings = [] if exactly_aligned(expression.atlas, grid) else [
        f"the analysis grid {grid.shape} is not the DK atlas's 2 mm MNI152 grid: the atlas was resampled onto it "
        "(nearest neighbour)"]
    observed = parcel_means(result.maps["stat"], index, len(regions))
    if not np.ptp(observed) > 1e-12 * max(1.0, float(np.abs(observed).max())):  # equal but for rounding
        raise InputError(f"{label or 'the map'} has the same value in every region: nothing to correlate",
                         field="map")
    timings["load"] = time.perf_counter() - start

    start = time.perf_counter()
    nulls = null_parcels(result, null_mask(grid, null_which), index, len(regions), settings.n_null, settings.seed,
                         progress)
    timings["null_maps"] = time.perf_counter() - start

    start = time.perf_counter()
    values = expression.values
    r = spearman(observed, values)
    r_null = spearman(nulls, values)
    cortex = expression.cortical
    permutations = spin_permutations(centroids(list(regions["name"][cortex])), settings.n_spin, settings.seed)
    spun = observed[cortex][permutations]
    r_cortex = spearman(observed[cortex], values[cortex])
    r_spin = spearman(spun, values[cortex])
    p_cbma, p_spin = null_p(r, r_null), null_p(r_cortex, r_spin)
    genes = pd.DataFrame({"gene": expression.genes, "r": r, "p_cbma": p_cbma, "q_cbma": _fdr(p_cbma),
                          "r_cortex": r_cortex, "p_spin": p_spin, "q_spin": _fdr(p_spin)})
    genes = genes.sort_values(["r", "gene"], ascending=[False, True], kind="stable").reset_index(drop=True)

    rng = np.random.default_rng(settings.seed)
    rows, skipped, null_rows = [], [], []
    for gene_set in sets:
        cols = set_columns(gene_set, expression.genes)
        if len(cols) < MIN_GENES:
            skipped.append(gene_set.name)
            continue
        score, score_cortex = r[cols].mean(), r_cortex[cols].mean()
        null_cbma, null_spin = r_null[:, cols].mean(axis=1), r_spin[:, cols].mean(axis=1)
        null_rows += [pd.DataFrame({"set": gene_set.name, "null": kind, "score": values})
                      for kind, values in (("cbma", null_cbma), ("spin", null_spin))]
        rows.append({"set": gene_set.name, "n_genes": len(cols), "n_listed": len(gene_set.genes), "score": score,
                     "p_cbma": float(null_p(np.array([score]), null_cbma[:, None])[0]),
                     "score_cortex": score_cortex,
                     "p_spin": float(null_p(np.array([score_cortex]), null_spin[:, None])[0]),
                     "p_random_genes": float(null_p(np.array([score]), random_set_scores(
                         r, len(cols), settings.n_random, rng)[:, None])[0]),
                     "description": gene_set.description})
    set_table = pd.DataFrame(rows, columns=["set", "n_genes", "n_listed", "score", "p_cbma", "score_cortex", "p_spin",
                                            "p_random_genes", "description"])
    for null in ("cbma", "spin"):  # Benjamini-Hochberg across the sets scored
        position = set_table.columns.get_loc(f"p_{null}") + 1
        set_table.insert(position, f"q_{null}", _fdr(set_table[f"p_{null}"].to_numpy(float)) if len(set_table)
                         else np.array([], dtype=float))
    timings["association"] = time.perf_counter() - start

    record = {
        "command": "genes", "neurochange": __version__, "map": label,
        "statistic": "the results folder's stat map (the null maps are of the same statistic)",
        "expression": {"atlas": "Desikan-Killiany (DK), abagen-processed AHBA (imaging-transcriptomics 1.1.15)",
                       "hemisphere": settings.hemisphere, "regions": int(len(regions)),
                       "cortical_regions": int(cortex.sum()), "genes": int(len(expression.genes)),
                       "gene_names_mended_from_dates": [f"{a} -> {b}" for a, b in expression.mended],
                       "note": "left hemisphere by default: right-hemisphere samples come from 2 of the 6 donors"
                               if settings.hemisphere == "left" else "both hemispheres and the brainstem"},
        "nulls": {"cbma": f"{settings.n_null} null maps: the experiments' foci redrawn in the {null_which} mask, "
                          "the same estimator refitted, regions averaged",
                  "spin": f"{settings.n_spin} rotations of the fsaverage5 sphere, cortical regions reassigned "
                          "(Hungarian algorithm)",
                  "random_genes": f"{settings.n_random} random gene sets of the same size (shown, not to be used: "
                                  "it ignores spatial autocorrelation)"},
        "settings": settings.to_dict(), "sets_skipped": skipped, "warnings": warnings, "licences": list(LICENCES),
        "references": list(REFERENCES),
        "versions": provenance.versions(),
    }
    nulls_table = (pd.concat(null_rows, ignore_index=True) if null_rows
                   else pd.DataFrame(columns=["set", "null", "score"]))
    output = Output(tables={"genes.tsv": genes, "gene_sets.tsv": set_table, "gene_set_nulls.tsv": nulls_table},
                    records={"provenance.json": record}, timings=timings)
    n_fdr = int(((genes["q_cbma"] < 0.05) & (genes["q_spin"] < 0.05)).sum())
    summary = {"top": genes.head(TOP), "sets": set_table, "regions": int(len(regions)), "n_genes": len(genes),
               "warnings": warnings, "n_null": settings.n_null, "n_spin": settings.n_spin, "n_fdr_both": n_fdr,
               "fdr_note": "" if n_fdr else fdr_floor(min(settings.n_null, settings.n_spin), len(genes))}
    return GenesRun(genes, set_table, output, summary)


__all__ = ["REFERENCES", "GenesRun", "fdr_floor", "run_genes"]
