"""MKDA chi-square from two input files to results (``neurochange chi2``).

Reads the selection and the rest, pools dependent contrasts (Turkeltaub 2012) unless
``keep_contrasts``, fits :class:`~neurochange.meta.chi2.MKDAChi2`, applies FDR and (with
iterations) FWE by label permutation, and returns an :class:`~neurochange.workflows.analysis.AnalysisRun`
whose output holds the maps (NiMARE 0.22.1's names), ``studies.tsv`` (with each experiment's
group), ``provenance.json`` and ``timings.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from neurochange.inference.permutation import LabelPermutation
from neurochange.meta import chi2 as _chi2
from neurochange.results import provenance
from neurochange.results.write import Output
from neurochange.space import load_grid
from neurochange.workflows.analysis import AnalysisRun, read_input
from neurochange.workflows.settings import InferenceSettings, KernelSettings, RunSettings


def run_chi2(selection_path, rest_path, kernel: KernelSettings, inference: InferenceSettings, run: RunSettings,
             fwe: bool = True, progress=None) -> AnalysisRun:
    """MKDA chi-square of SELECTION against REST with FDR, and FWE by label permutation when ``fwe``."""
    start = time.perf_counter()
    selection, pooled_sel = read_input(selection_path, run.keep_contrasts)
    rest, pooled_rest = read_input(rest_path, run.keep_contrasts)
    grid = load_grid(run.mask)
    seconds = time.perf_counter() - start
    done = chi2_analysis(selection, rest, grid, kernel, inference, run, fwe, progress,
                         record={"command": "chi2",
                                 "input": {"selection": Path(selection_path).name, "rest": Path(rest_path).name},
                                 "pooled": {"selection": pooled_sel, "rest": pooled_rest}})
    done.timings["read"] = seconds
    return done


def chi2_analysis(selection, rest, grid, kernel: KernelSettings, inference: InferenceSettings, run: RunSettings,
                  fwe: bool = True, progress=None, record: dict | None = None) -> AnalysisRun:
    """MKDA chi-square of the StudySets ``selection`` against ``rest`` on ``grid``; ``record``: what the
    provenance says of the inputs (``command``, ``input``, ``pooled``)."""
    timings = {}
    record = dict(record or {})
    start = time.perf_counter()
    result = _chi2.correct_fdr(_chi2.MKDAChi2(radius=kernel.radius).fit(selection, rest, grid))
    timings["fit_fdr"] = time.perf_counter() - start
    n_iters = inference.n_iters if fwe else 0
    if fwe:
        start = time.perf_counter()
        permutation = LabelPermutation(n_iters, run.seed, run.n_cores, early_stop=inference.early_stop)
        result = _chi2.correct_fwe(result, permutation, inference.cluster_forming_p, progress=progress)
        timings["montecarlo"] = time.perf_counter() - start
    params = dict(result.params)
    params.pop("groups", None)
    record = {
        **record,
        "settings": {"n_iters": n_iters, "seed": run.seed, "radius_mm": kernel.radius,
                     "cluster_forming_p": inference.cluster_forming_p,
                     "mask": run.mask_record("MNI152 2 mm brain mask")["mask"],
                     "keep_contrasts": run.keep_contrasts},
        "params": params,
        "versions": provenance.versions(),
    }
    groups = result.params["groups"]
    studies = pd.concat([selection.filter_experiments(groups["selection"]).resolved_experiments().assign(group="selection"),
                         rest.filter_experiments(groups["rest"]).resolved_experiments().assign(group="rest")],
                        ignore_index=True)
    output = Output(results={"": (result, None)}, tables={"studies.tsv": studies},
                    records={"provenance.json": record}, timings=timings)
    summary = {"seed": run.seed, "counts": result.params["counts"], "n_iters": n_iters,
               "n_significant_fdr": {label: int((result.maps[f"p_desc-{label}_level-voxel{_chi2.FDR_SUFFIX}"] < 0.05).sum())
                                     for label in ("uniformity", "association")}}
    return AnalysisRun(output, record, {"": result}, record.get("pooled", {}), timings, summary)
