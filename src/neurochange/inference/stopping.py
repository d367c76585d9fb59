"""When a Monte Carlo null is long enough: distribution-free intervals for its 0.95 quantile.

The FWE thresholds of a Monte Carlo null are the 95th percentiles of its maxima. With
``n`` values drawn, the number below the true quantile ``xi`` is Binomial(n, 0.95), so the
order statistics ``x_(l) <= xi <= x_(u)`` bracket it with probability
``F(u - 1) - F(l - 1)`` (F: that binomial's cdf), whatever the distribution (the
classical order-statistic interval, e.g. Hahn & Meeker 1991, section 5.2). We take the
narrowest symmetric-in-probability pair with at least the requested confidence.

A run may stop once, for every null, the interval lies within ``precision`` of the
estimate (the sample 0.95 quantile): ``max(estimate - x_(l), x_(u) - estimate) <=
precision * estimate``. Then, with the stated confidence per null, the estimate is within
``precision`` (relative) of the threshold an infinite run would give. An interval of
width zero (e.g. every iteration's largest cluster has the same size) also counts as
known.

Checks are repeated (every ``check_every`` iterations), which widens the real error
rate beyond ``1 - confidence``; the default confidence, 0.999 per null, keeps early-stopped
thresholds within the precision of a long run in more than 95 % of runs (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

#: The quantile FWE thresholds sit at (alpha = 0.05).
FWE_QUANTILE = 0.95


@dataclass(frozen=True)
class QuantileInterval:
    """Sample quantile and its distribution-free confidence interval."""

    estimate: float
    low: float
    high: float
    n: int

    def within(self, precision: float) -> bool:
        """Whether the interval lies within ``precision`` (relative) of the estimate."""
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return False
        spread = max(self.estimate - self.low, self.high - self.estimate)
        return spread == 0 or spread <= precision * abs(self.estimate)

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n}


def order_statistic_ranks(n: int, q: float = FWE_QUANTILE, confidence: float = 0.999) -> tuple[int, int]:
    """1-based ranks (l, u) with P(x_(l) <= xi_q <= x_(u)) >= confidence for n draws.

    ``l`` is 0 or ``u`` is n + 1 when n is too small for that side (the bound is infinite).
    """
    alpha = 1.0 - confidence
    cdf = stats.binom.cdf(np.arange(-1, n + 1), n, q)  # cdf[k + 1] = F(k), F(-1) = 0
    # l: largest rank with F(l - 1) <= alpha / 2; u: smallest rank with F(u - 1) >= 1 - alpha / 2
    low_ok = np.flatnonzero(cdf[:-1] <= alpha / 2)  # index r means F(r - 1), rank r
    l = int(low_ok.max()) if len(low_ok) else 0
    high_ok = np.flatnonzero(cdf >= 1.0 - alpha / 2)
    u = int(high_ok.min()) if len(high_ok) else n + 1
    return l, u


def quantile_interval(values: np.ndarray, q: float = FWE_QUANTILE, confidence: float = 0.999) -> QuantileInterval:
    """Sample ``q`` quantile of ``values`` (linear interpolation) and its order-statistic interval."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0:
        return QuantileInterval(np.nan, -np.inf, np.inf, 0)
    l, u = order_statistic_ranks(n, q, confidence)
    low = x[l - 1] if l >= 1 else -np.inf
    high = x[u - 1] if u <= n else np.inf
    return QuantileInterval(float(np.quantile(x, q)), float(low), float(high), n)


def thresholds_known(nulls: dict[str, np.ndarray], precision: float, confidence: float = 0.999) -> tuple[bool, dict]:
    """Whether every null's 0.95 quantile is known to ``precision``; intervals by null name."""
    intervals = {name: quantile_interval(values, FWE_QUANTILE, confidence) for name, values in nulls.items()}
    return all(iv.within(precision) for iv in intervals.values()), {k: v.as_dict() for k, v in intervals.items()}
