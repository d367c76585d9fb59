"""From statistics to p, z and -log10 p: ALE's approximate null and FWE p from null maxima.

The approximate null (Eickhoff et al. 2012, doi:10.1016/j.neuroimage.2011.09.017), as
NiMARE 0.22.1 computes it:

- bins: centres on a 1e-5 grid from 0 to the largest attainable ALE
  (``1 - prod(1 - ceil_1e-5(max MA of each experiment))``) plus one step;
- per experiment, the share of mask voxels whose MA value falls nearest each bin centre
  (voxels the kernel does not reach count in bin 0);
- experiments combined one at a time in the given order: the ALE of a pair of bin centres
  ``1 - (1 - a)(1 - b)`` is placed in its nearest bin with probability ``p_a * p_b``
  (ties at half a bin go up). The placement rounding makes the order matter at bin level,
  so callers pass experiments in NiMARE's order (sorted by id).

p of a statistic: the upper tail of the null histogram at the statistic's bin (nearest,
halves away from zero), floored at the smallest non-zero tail. z is one-tailed:
``z = Phi^-1(1 - p)``, and 0 where p > 0.5. ``logp = -log10 p``.

FWE p from Monte Carlo maxima (NiMARE's ``null_to_p``, upper tail): the share of null
maxima >= the observed value, clipped to ``[1 / n, 1 - 1 / n]`` for ``n`` null values.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import special

#: Inverse of the approximate null's bin width (bins are 1e-5 wide).
INV_BIN_WIDTH = 100000


# ---------------------------------------------------------------------------- bins
def histogram_bins(max_ma: np.ndarray) -> np.ndarray:
    """Bin centres (float64) for experiments whose largest MA values are ``max_ma`` (n_exp,)."""
    step = 1 / INV_BIN_WIDTH
    ceiled = np.ceil(np.asarray(max_ma, dtype=np.float64) * INV_BIN_WIDTH) / INV_BIN_WIDTH
    largest_ale = 1.0 - np.prod(1.0 - ceiled)
    return np.round(np.arange(0, largest_ale + 1.5 * step, step), 5)


@njit(cache=True)
def _nearest_bin(value, inv_step, n_bins):
    """Index of the bin centre nearest ``value`` (exact halves go up), clipped to the grid."""
    scaled = value * inv_step
    low = np.floor(scaled)
    idx = int(low)
    if scaled - low >= 0.5:
        idx += 1
    if idx < 0:
        return 0
    if idx >= n_bins:
        return n_bins - 1
    return idx


@njit(cache=True)
def experiment_histogram(ma_values, n_mask_voxels, inv_step, n_bins):
    """Share of mask voxels per bin for one experiment's non-zero MA values (float64 (n_bins,))."""
    hist = np.zeros(n_bins, dtype=np.float64)
    for t in range(ma_values.shape[0]):
        hist[_nearest_bin(ma_values[t], inv_step, n_bins)] += 1.0
    hist[0] += n_mask_voxels - ma_values.shape[0]
    hist *= 1.0 / n_mask_voxels
    return hist


@njit(cache=True)
def _combine(ale_hist, exp_hist, centres, inv_step):
    """Histogram of ``1 - (1 - a)(1 - b)`` for independent a ~ ale_hist, b ~ exp_hist."""
    n_bins = centres.shape[0]
    out = np.zeros(n_bins, dtype=np.float64)
    ale_bins = np.flatnonzero(ale_hist > 0)
    exp_bins = np.flatnonzero(exp_hist > 0)
    for e in exp_bins:
        keep = 1.0 - centres[e]
        p_e = exp_hist[e]
        for a in ale_bins:
            score = 1.0 - keep * (1.0 - centres[a])
            out[_nearest_bin(score, inv_step, n_bins)] += p_e * ale_hist[a]
    return out


def approximate_null(ma_values: list[np.ndarray], n_mask_voxels: int, bins: np.ndarray) -> np.ndarray:
    """Null histogram weights (float64, one per bin) of the ALE statistic.

    ``ma_values``: per experiment, its non-zero MA values on mask voxels (in NiMARE's order).
    """
    centres = np.asarray(bins, dtype=np.float64)
    inv_step = 1 / (centres[1] - centres[0])
    hist = None
    for values in ma_values:
        exp_hist = experiment_histogram(np.asarray(values, dtype=np.float64), n_mask_voxels, inv_step, len(centres))
        hist = exp_hist if hist is None else _combine(hist, exp_hist, centres, inv_step)
    return hist


def approximate_null_numpy(ma_values: list[np.ndarray], n_mask_voxels: int, bins: np.ndarray) -> np.ndarray:
    """NumPy reference of :func:`approximate_null` (same placement, same summation order)."""
    centres = np.asarray(bins, dtype=np.float64)
    n_bins = len(centres)
    inv_step = 1 / (centres[1] - centres[0])

    def nearest(values):
        scaled = values * inv_step
        low = np.floor(scaled)
        return np.clip(low.astype(np.int64) + (scaled - low >= 0.5), 0, n_bins - 1)

    hist = None
    for values in ma_values:
        values = np.asarray(values, dtype=np.float64)
        exp_hist = np.bincount(nearest(values), minlength=n_bins).astype(np.float64)
        exp_hist[0] += n_mask_voxels - len(values)
        exp_hist *= 1.0 / n_mask_voxels
        if hist is None:
            hist = exp_hist
            continue
        e = np.flatnonzero(exp_hist > 0)
        a = np.flatnonzero(hist > 0)
        scores = 1.0 - (1.0 - centres[e])[:, None] * (1.0 - centres[a])[None, :]
        out = np.zeros(n_bins)
        np.add.at(out, nearest(scores).ravel(), (exp_hist[e][:, None] * hist[a][None, :]).ravel())
        hist = out
    return hist


# ---------------------------------------------------------------------------- p, z, logp
def _round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to integers, exact halves away from zero (NiMARE's ``_round2``)."""
    r = np.round(x)
    ties = np.abs(x - r) == 0.5
    r[ties] = np.sign(x[ties]) * np.ceil(np.abs(x[ties]))
    return r.astype(np.int64)


def upper_tail(weights: np.ndarray) -> np.ndarray:
    """P(statistic >= bin centre) per bin, from histogram weights (float64)."""
    tail = np.cumsum((weights / weights.sum())[::-1])[::-1]
    return tail / tail.max()


def bin_p(weights: np.ndarray) -> np.ndarray:
    """One-sided p (float64) of a statistic in each bin of a null histogram: its upper tail, floored at the
    smallest non-zero tail probability."""
    tail = upper_tail(np.asarray(weights, dtype=np.float64))
    return np.clip(tail, tail[tail != 0].min(), 1.0)


def hist_to_p(stat: np.ndarray, weights: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """One-sided p (float64) of each statistic value against a null histogram: :func:`bin_p` of its bin
    (``stat / bin width`` rounded half away from zero, at most the last bin); values <= 0 get p = 1."""
    stat = np.asarray(stat, dtype=np.float64)
    inv_step = 1 / (bins[1] - bins[0])
    p = np.ones(stat.shape)
    pos = stat > 0
    idx = np.minimum(_round_half_away(stat[pos] * inv_step), len(bins) - 1)
    p[pos] = bin_p(weights)[idx]
    return p


def hist_threshold(weights: np.ndarray, bins: np.ndarray, p: float) -> float:
    """Statistic threshold for an uncorrected ``p`` (NiMARE's ``_p_to_summarystat``).

    The bin centre just below the first bin whose upper tail is <= p; voxels count as
    above threshold when their statistic is strictly greater.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.sum() <= 0:
        return float(bins[0])
    tail = np.cumsum(weights[::-1])[::-1]
    tail /= tail[0]
    below = np.flatnonzero(tail <= p)
    if below.size == 0:
        return float(bins[-1])
    return float(bins[max(0, below[0] - 1)])


def p_to_z(p: np.ndarray) -> np.ndarray:
    """One-tailed z (float64) of p values: ``Phi^-1(1 - p)``, 0 where p >= 0.5."""
    p = np.clip(np.asarray(p, dtype=np.float64), np.finfo(np.float64).tiny, 1.0)
    return np.maximum(-special.ndtri_exp(np.log(p)), 0.0)


def p_to_logp(p: np.ndarray) -> np.ndarray:
    """``-log10 p`` (float64), never negative."""
    p = np.clip(np.asarray(p, dtype=np.float64), np.finfo(np.float64).tiny, 1.0)
    return np.maximum(-np.log10(p), 0.0) + 0.0


def null_to_p(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    """FWE p: share of ``null`` values >= each value, clipped to [1/n, 1 - 1/n] (float64)."""
    null = np.sort(np.asarray(null, dtype=np.float64))
    n = len(null)
    below = np.searchsorted(null, np.asarray(values, dtype=np.float64), side="left")
    p = 1.0 - below / n
    return np.clip(p, 1.0 / n, 1.0 - 1.0 / n)


def nlogp_to_z(nlogp: np.ndarray) -> np.ndarray:
    """Unsigned z of two-tailed log p."""
    return -special.ndtri_exp(np.asarray(nlogp, dtype=np.float64) - np.log(2.0)) + 0.0


def nlogp_to_logp(nlogp: np.ndarray) -> np.ndarray:
    """-log10 p from natural-log p, never negative."""
    return np.maximum(np.asarray(nlogp, dtype=np.float64) / -np.log(10.0) + 0.0, 0.0)
