"""Neurosynth's decoding of a set of studies (Yarkoni et al. 2011), as NiMARE 0.22.1's ``NeurosynthDecoder``.

For every term, the studies selected (e.g. those reporting a focus in a region) are compared with
the rest of the studies under analysis on whether the term labels them:

- **uniformity** (``*Forward``; Neurosynth's old "forward inference"): one-way chi-square of the
  term's count among the selected studies against the mean count of all terms; its ranking mostly
  follows how common a term is, so prefer the association columns to say what a region does;
- **association** (``*Reverse``; "reverse inference"): 2 x 2 chi-square of term by selection;
- ``probReverse`` = P(term | selected) with a ``prior`` on the term (0.5 by default; ``None``: the
  term's base rate), and ``probForward`` = prior x P(selected | term) + (1 - prior) x P(selected | no
  term), NiMARE's prior-weighted P(selected);
- p corrected across terms (``correction``: Benjamini-Hochberg ``"bh"``, Benjamini-Yekutieli
  ``"by"``, ``"bonferroni"`` or ``"none"``), two-tailed z signed by the direction of the difference.

Terms labelling fewer than ``min_studies`` studies under analysis (a count, or a share when a
float in (0, 1)) are left out before testing, as NiMARE does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from neurochange.errors import InputError
from neurochange.inference.fdr import fdr_bh_nlogp
from neurochange.inference.stats import nlogp_to_z
from neurochange.meta.chi2 import chi2_nlogp, one_way, two_way

CORRECTIONS = ("bh", "by", "bonferroni", "none")
#: The columns of a decoding table, after ``term``: NiMARE's six, then the counts behind them.
COLUMNS = ("pForward", "zForward", "probForward", "pReverse", "zReverse", "probReverse", "n_selected_term",
           "n_term")


def _correct(nlogp: np.ndarray, correction: str) -> np.ndarray:
    if correction in ("bh", "by"):  # BY: BH's adjusted p times sum(1 / i), i = 1..n
        extra = np.log(np.sum(1.0 / np.arange(1, nlogp.size + 1))) if correction == "by" else 0.0
        return np.minimum(fdr_bh_nlogp(nlogp) + extra, 0.0)
    if correction == "bonferroni":
        return np.minimum(nlogp + np.log(nlogp.size), 0.0)
    return nlogp


def decode_studies(labels: sparse.spmatrix, terms, selected: np.ndarray, unselected: np.ndarray | None = None, *,
                   prior: float | None = 0.5, correction: str = "bh", min_studies: float = 1) -> pd.DataFrame:
    """The decoding table of the studies ``selected`` (bool (n_studies,)) against ``unselected`` (default:
    the others), from ``labels`` (bool (n_studies, n_terms)) of ``terms``; one row per term kept
    (``term`` and :data:`COLUMNS`), in ``terms``' order."""
    if correction not in CORRECTIONS:
        raise InputError(f"correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}",
                         field="correction")
    selected = np.asarray(selected, dtype=bool)
    unselected = ~selected if unselected is None else np.asarray(unselected, dtype=bool)
    n_sel, n_unsel = int(selected.sum()), int(unselected.sum())
    if n_sel == 0:
        raise InputError("no study reports a focus in the region: nothing to decode", field="region")
    if n_unsel == 0:
        raise InputError("every study is selected: no others to compare with", field="region")
    labels_t = sparse.csr_matrix(labels, dtype=np.float64).T  # (n_terms, n_studies): counts are products
    sel_term = labels_t @ selected.astype(np.float64)
    unsel_term = labels_t @ unselected.astype(np.float64)
    n_term = sel_term + unsel_term
    floor = min_studies * (n_sel + n_unsel) if isinstance(min_studies, float) and 0 < min_studies < 1 else min_studies
    keep = n_term >= floor
    if not keep.any():
        raise InputError(f"no term labels at least {min_studies} of the studies", field="min_studies")
    terms = np.asarray(terms, dtype=object)[keep]
    sel_term, unsel_term, n_term = sel_term[keep], unsel_term[keep], n_term[keep]
    sel_noterm, unsel_noterm = n_sel - sel_term, n_unsel - unsel_term
    n_noterm = sel_noterm + unsel_noterm
    with np.errstate(divide="ignore", invalid="ignore"):
        p_sel_g_term = sel_term / n_term
        p_sel_g_noterm = sel_noterm / n_noterm
    prior = n_term / (n_term + n_noterm) if prior is None else prior

    nlogp_fi = _correct(chi2_nlogp(one_way(sel_term, n_sel)), correction)
    nlogp_ri = _correct(chi2_nlogp(two_way(sel_term, unsel_term, n_sel, n_unsel)), correction)
    tiny = np.nextafter(0.0, 1.0)  # p clipped to the smallest positive double, as NiMARE does
    with np.errstate(invalid="ignore"):
        prob_forward = prior * p_sel_g_term + (1 - prior) * p_sel_g_noterm
        prob_reverse = p_sel_g_term * prior / prob_forward
    table = pd.DataFrame({
        "term": terms,
        "pForward": np.clip(np.exp(nlogp_fi), tiny, 1.0),
        "zForward": nlogp_to_z(nlogp_fi) * np.sign(sel_term - sel_term.mean()),
        "probForward": prob_forward,
        "pReverse": np.clip(np.exp(nlogp_ri), tiny, 1.0),
        "zReverse": nlogp_to_z(nlogp_ri) * np.sign(p_sel_g_term - p_sel_g_noterm),
        "probReverse": prob_reverse,
        "n_selected_term": sel_term.astype(np.int64),
        "n_term": n_term.astype(np.int64),
    })
    return table


__all__ = ["COLUMNS", "CORRECTIONS", "decode_studies"]
