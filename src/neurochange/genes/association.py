"""Spearman correlation of regional map values with every gene's regional expression, for many maps at once.

Ranks (ties averaged, as ``scipy.stats.spearmanr``) are standardized once per gene; a map's r with
every gene is then one matrix product: (n_maps, n_regions) x (n_regions, n_genes). A null's p is the
share of null r at least as far from 0 as the observed one, counting the observed: (1 + k) / (1 + n).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def standardized_ranks(values: np.ndarray, axis: int) -> np.ndarray:
    """Ranks of ``values`` along ``axis``, centred and scaled to unit norm (NaN where all are tied)."""
    ranks = rankdata(values, axis=axis)
    ranks -= ranks.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ranks / np.sqrt((ranks ** 2).sum(axis=axis, keepdims=True))


def spearman(maps: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Spearman r of each map (rows of ``maps``, (n_maps, n_regions) or (n_regions,)) with each gene (columns of
    ``expression``, (n_regions, n_genes)): (n_maps, n_genes) or (n_genes,)."""
    single = np.ndim(maps) == 1
    r = standardized_ranks(np.atleast_2d(maps), axis=1) @ standardized_ranks(expression, axis=0)
    return r[0] if single else r


def null_p(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Two-sided p of each ``observed`` (n,) against the rows of ``null`` (n_null, n): (1 + k) / (1 + n_null)."""
    k = (np.abs(null) >= np.abs(observed)[None, :] - 1e-12).sum(axis=0)
    return (1.0 + k) / (1.0 + null.shape[0])


__all__ = ["null_p", "spearman", "standardized_ranks"]
