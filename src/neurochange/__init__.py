"""neurochange: what changes in the brain after psychotherapy, TMS or medication.

Coordinate-based meta-analysis of treatment neuroimaging, from a coordinate corpus to a
report. The public API, by stage (``docs/architecture.md`` maps the package):

- data: :func:`read_studyset`, :func:`write_studyset`, :class:`StudySet`, :class:`Corpus`, :func:`select`;
- estimators: :class:`ALE`, :class:`MKDADensity`, :class:`KDA`, :class:`MKDAChi2`, all returning a
  :class:`MetaResult`;
- inference: :class:`MonteCarloFWE` (the corrector), :class:`LabelPermutation` (the permutation driver),
  :class:`ThreadExecutor`;
- comparisons: :class:`Subtraction`, :class:`BalancedSubtraction`, :func:`conjunction`, :func:`overlap`;
- diagnostics: :func:`contributions`, :func:`focus_counts`, :func:`jackknife`, :func:`fail_safe_n`,
  :func:`diagnose`;
- decoding: :func:`sphere`, :func:`mask_region`, :func:`atlas_region`, :func:`cluster_region` (regions),
  :func:`decode_region` (Neurosynth's decoder on NeuroQuery's terms), :func:`decode_map` (a whole map, by
  correlation with cached term maps), :func:`run_macm` (coactivation), :func:`run_site` (a stimulation site);
- genes: :func:`load_expression` (AHBA expression by DK region), :func:`run_genes` (a map's genes and gene sets
  against CBMA and spin nulls), :class:`GeneSettings`;
- workflows: :func:`run_analysis`, :func:`run_contrast`, :func:`run_review`, their typed settings
  (:class:`KernelSettings`, :class:`InferenceSettings`, :class:`RunSettings`,
  :class:`DiagnosticsSettings`, :class:`BalancedSettings`, :class:`DecodeSettings`), and :func:`write_output`,
  the writer of results folders.

Names are imported on first use, so ``import neurochange`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_API = {
    "read_studyset": "neurochange.sources.io",
    "write_studyset": "neurochange.sources.io",
    "StudySet": "neurochange.studyset",
    "Corpus": "neurochange.corpus.store",
    "select": "neurochange.corpus.select",
    "ALE": "neurochange.meta.ale",
    "JaleALE": "neurochange.meta.jale",
    "jale_grid": "neurochange.sources.jale_prior",
    "MKDADensity": "neurochange.meta.mkda",
    "KDA": "neurochange.meta.mkda",
    "MKDAChi2": "neurochange.meta.chi2",
    "MetaResult": "neurochange.meta.result",
    "MonteCarloFWE": "neurochange.inference.montecarlo",
    "LabelPermutation": "neurochange.inference.permutation",
    "ThreadExecutor": "neurochange.inference.executors",
    "Subtraction": "neurochange.compare.subtraction",
    "BalancedSubtraction": "neurochange.compare.balanced",
    "conjunction": "neurochange.compare.overlap",
    "overlap": "neurochange.compare.overlap",
    "contributions": "neurochange.diagnostics.jackknife",
    "focus_counts": "neurochange.diagnostics.jackknife",
    "jackknife": "neurochange.diagnostics.jackknife",
    "fail_safe_n": "neurochange.diagnostics.failsafe",
    "diagnose": "neurochange.workflows.diagnose",
    "run_analysis": "neurochange.workflows.analysis",
    "run_contrast": "neurochange.workflows.contrast",
    "run_review": "neurochange.workflows.review",
    "KernelSettings": "neurochange.workflows.settings",
    "InferenceSettings": "neurochange.workflows.settings",
    "RunSettings": "neurochange.workflows.settings",
    "DiagnosticsSettings": "neurochange.workflows.settings",
    "BalancedSettings": "neurochange.workflows.settings",
    "sphere": "neurochange.decode.regions",
    "mask_region": "neurochange.decode.regions",
    "cluster_region": "neurochange.decode.regions",
    "atlas_region": "neurochange.decode.regions",
    "decode_region": "neurochange.workflows.decode",
    "decode_map": "neurochange.workflows.decode",
    "run_macm": "neurochange.workflows.macm",
    "run_site": "neurochange.workflows.site",
    "load_expression": "neurochange.genes.expression",
    "run_genes": "neurochange.workflows.genes",
    "GeneSettings": "neurochange.workflows.settings",
    "DecodeSettings": "neurochange.workflows.settings",
    "write_output": "neurochange.results.write",
    "InputError": "neurochange.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neurochange' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
