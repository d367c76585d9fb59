"""Term maps and the decoding of a whole map by correlation (NiMARE 0.22.1's ``CorrelationDecoder``).

A term's map is the MKDA chi-square association z (``z_desc-association`` of ``MKDAChi2``, NiMARE's
default target image) of the studies the term labels against the other studies: sqrt(chi-square)
signed by P(active | term) - P(active | no term), at every voxel of the mask. A map is decoded by
its Pearson r with every term's map over the mask. The r are descriptive: with hundreds of
thousands of smooth voxels nearly every r would pass a test, so none is given (NiMARE's note).

The per-voxel counts of every term come from one pass over the studies' binary MKDA maps
(:func:`term_active_counts`), so all terms cost about as much as a few chi-square maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import sparse

from neurochange.meta.chi2 import two_way

#: Terms per block of maps computed or correlated at once (memory: block x mask voxels x 8 bytes).
BLOCK = 64


@dataclass(frozen=True)
class TermMaps:
    """Association z maps of ``terms`` (n_terms,), each labelling ``n_studies`` (n_terms,) of the ``n_total``
    studies; ``maps`` (n_terms, n_mask voxels) in the grid's mask order (float16 when cached)."""

    terms: np.ndarray
    n_studies: np.ndarray
    n_total: int
    maps: np.ndarray


@njit(cache=True, nogil=True)
def _term_counts(ma_indptr, ma_indices, label_indptr, label_studies, terms, n_mask):
    """(len(terms), n_mask) uint32: per term, how many of its studies' MKDA maps cover each voxel."""
    out = np.zeros((len(terms), n_mask), dtype=np.uint32)
    for k in range(len(terms)):
        row = out[k]
        t = terms[k]
        for j in range(label_indptr[t], label_indptr[t + 1]):
            s = label_studies[j]
            for q in range(ma_indptr[s], ma_indptr[s + 1]):
                row[ma_indices[q]] += 1
    return out


def term_active_counts(ma: sparse.csr_matrix, labels: sparse.spmatrix, terms: np.ndarray) -> np.ndarray:
    """For ``terms`` (column indices of ``labels``, bool (n_studies, n_terms)): the number of the term's
    studies whose binary MKDA map (rows of ``ma``, (n_studies, n_mask)) covers each voxel; (len(terms), n_mask)."""
    labels = sparse.csc_matrix(labels, dtype=bool)
    labels.sort_indices()
    return _term_counts(ma.indptr.astype(np.int64), ma.indices.astype(np.int64), labels.indptr.astype(np.int64),
                        labels.indices.astype(np.int64), np.asarray(terms, dtype=np.int64), ma.shape[1])


def association_z(counts: np.ndarray, total: np.ndarray, n_term: np.ndarray, n_studies: int) -> np.ndarray:
    """NiMARE's ``z_desc-association`` of each term (rows): ``counts`` (n, n_mask) of its ``n_term`` (n,)
    studies, ``total`` (n_mask,) of all ``n_studies``."""
    out = np.empty(counts.shape, dtype=np.float64)
    for k in range(len(counts)):
        a = counts[k].astype(np.float64)
        b = total - a
        n_sel, n_rest = int(n_term[k]), n_studies - int(n_term[k])
        out[k] = np.sqrt(two_way(a, b, n_sel, n_rest)) * np.sign(a / n_sel - b / n_rest)
    return out


def term_maps(ma: sparse.csr_matrix, labels: sparse.spmatrix, terms, min_studies: int = 1,
              dtype=np.float16, progress=None) -> TermMaps:
    """The association map of every term labelling at least ``min_studies`` studies and not all of them.

    ``ma``: the studies' binary MKDA maps, (n_studies, n_mask) CSR; ``labels``: bool (n_studies, n_terms);
    ``progress(done, total)``: called after each block of terms.
    """
    labels = sparse.csc_matrix(labels, dtype=bool)
    n_studies = ma.shape[0]
    n_term = np.asarray(labels.sum(axis=0)).ravel().astype(np.int64)
    keep = np.flatnonzero((n_term >= max(min_studies, 1)) & (n_term < n_studies))
    total = np.bincount(ma.indices, minlength=ma.shape[1]).astype(np.float64)
    maps = np.empty((len(keep), ma.shape[1]), dtype=dtype)
    for start in range(0, len(keep), BLOCK):
        block = keep[start:start + BLOCK]
        maps[start:start + len(block)] = association_z(term_active_counts(ma, labels, block), total, n_term[block],
                                                       n_studies)
        if progress is not None:
            progress(start + len(block), len(keep))
    return TermMaps(np.asarray(terms, dtype=object)[keep], n_term[keep], n_studies, maps)


def correlate(maps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson r (n_terms,) of ``values`` (n_mask,) with each row of ``maps`` (n_terms, n_mask), in float64
    (NiMARE's ``stats.pearson``); NaN where either has no variance."""
    x = np.asarray(values, dtype=np.float64)
    x = x - x.mean()
    x_norm = np.sqrt(x @ x)
    out = np.empty(len(maps), dtype=np.float64)
    for start in range(0, len(maps), BLOCK):
        block = np.asarray(maps[start:start + BLOCK], dtype=np.float64)
        block -= block.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:start + len(block)] = (block @ x) / (np.sqrt(np.einsum("ij,ij->i", block, block)) * x_norm)
    return out


__all__ = ["TermMaps", "association_z", "correlate", "term_active_counts", "term_maps"]
