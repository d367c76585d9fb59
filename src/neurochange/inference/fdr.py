"""False discovery rate: Benjamini-Hochberg over the mask's voxels (NiMARE's ``FDRCorrector(method="indep")``).

:func:`correct_fdr` adds ``{p,z,logp}_corr-FDR_method-indep`` (NiMARE's names) to a result from
its uncorrected ``p`` map; a voxel is significant at FDR q when its adjusted p is below q.
"""

from __future__ import annotations

import numpy as np

from neurochange.inference.stats import nlogp_to_logp, nlogp_to_z
from neurochange.meta.result import MetaResult

FDR_SUFFIX = "_corr-FDR_method-indep"


def fdr_bh_nlogp(nlogp: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted log p from log p (step-up in log space, capped at 0)."""
    nlogp = np.asarray(nlogp, dtype=np.float64)
    order = np.argsort(nlogp)
    n = nlogp.size
    adjusted = nlogp[order] - np.log(np.arange(1, n + 1) / n)
    adjusted = np.minimum.accumulate(adjusted[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 0.0)
    return out


def correct_fdr(result: MetaResult) -> MetaResult:
    """``result`` with the FDR-adjusted p, z and -log10 p maps of its ``p`` map; z as NiMARE gives it (the
    two-tailed z of the adjusted p, with the sign of the uncorrected z)."""
    p = np.asarray(result.maps["p"], dtype=np.float64)
    adjusted = fdr_bh_nlogp(np.log(np.clip(p, np.finfo(np.float64).tiny, 1.0)))
    maps = {f"p{FDR_SUFFIX}": np.exp(adjusted), f"z{FDR_SUFFIX}": nlogp_to_z(adjusted) * np.sign(result.maps["z"]),
            f"logp{FDR_SUFFIX}": nlogp_to_logp(adjusted)}
    return result.with_maps(maps, params={"fdr": {"method": "indep (Benjamini-Hochberg)"}})
