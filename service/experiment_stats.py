"""The statistics behind experiment reports: 95 % intervals, differences to control, sample sizes.

Standard library and numpy only. Rates: Wilson score intervals, and Newcombe's hybrid score interval for
the difference of two rates. Means: t intervals, and Welch's for the difference of two means. Quantiles of
a histogram (latency): a percentile bootstrap with a fixed seed, so the same data always gives the same
interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy

LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)  # 1.959964...
BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_SEED = 20261203

Interval = tuple[float | None, float | None, float | None]  # value, low, high


def wilson(successes: int, n: int, z: float = Z) -> Interval:
    """The rate `successes / n` with its Wilson score interval; (None, None, None) without observations."""
    if n <= 0:
        return None, None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return p, max(0.0, centre - half), min(1.0, centre + half)


def newcombe(control: tuple[int, int], arm: tuple[int, int], z: float = Z) -> Interval:
    """The arm's rate minus control's, with Newcombe's hybrid score interval (method 10, from two Wilsons)."""
    p1, l1, u1 = wilson(*control, z=z)
    p2, l2, u2 = wilson(*arm, z=z)
    if p1 is None or p2 is None or l1 is None or u1 is None or l2 is None or u2 is None:
        return None, None, None
    difference = p2 - p1
    low = difference - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = difference + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return difference, low, high


def _t_density(x: float, df: float) -> float:
    log_constant = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_constant - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf_above_half(x: float, df: float, steps: int = 400) -> float:
    """P(T <= x) for x >= 0, by Simpson's rule over the density from 0 (smooth, so a few hundred steps do)."""
    h = x / steps
    total = _t_density(0.0, df) + _t_density(x, df)
    total += sum((4 if i % 2 else 2) * _t_density(i * h, df) for i in range(1, steps))
    return 0.5 + total * h / 3


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile for p >= 0.5: exact for 1 and 2 degrees of freedom; up to 10, the density
    integrated and the quantile found by bisection; beyond, a Cornish-Fisher expansion (A&S 26.7.5, within
    0.0002 there)."""
    if df <= 1:
        return math.tan(math.pi * (p - 0.5))
    if df <= 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    if df <= 10:
        low, high = z, z * 4 + 10
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if _t_cdf_above_half(middle, df) < p else (low, middle)
        return (low + high) / 2
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, sum and sum of squares of some values: what SQL aggregates, enough for means and variances."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.squares + other.squares)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """The sample variance (n - 1 in the denominator); None under two values."""
        if self.n < 2:
            return None
        mean = self.total / self.n
        return max(0.0, (self.squares - self.n * mean * mean) / (self.n - 1))


def mean_interval(values: Moments) -> Interval:
    """The mean with its t interval (no interval under two values)."""
    mean, variance = values.mean, values.variance
    if mean is None or variance is None:
        return mean, None, None
    half = t_quantile(0.5 + LEVEL / 2, values.n - 1) * math.sqrt(variance / values.n)
    return mean, mean - half, mean + half


def welch(control: Moments, arm: Moments) -> Interval:
    """The arm's mean minus control's, with Welch's interval (unequal variances)."""
    m1, m2, v1, v2 = control.mean, arm.mean, control.variance, arm.variance
    if m1 is None or m2 is None:
        return None, None, None
    difference = m2 - m1
    if v1 is None or v2 is None:
        return difference, None, None
    a, b = v1 / control.n, v2 / arm.n
    se = math.sqrt(a + b)
    if se == 0:
        return difference, difference, difference
    df = (a + b) ** 2 / (a * a / (control.n - 1) + b * b / (arm.n - 1))
    half = t_quantile(0.5 + LEVEL / 2, df) * se
    return difference, difference - half, difference + half


Histogram = dict[int, int]  # value -> how many times it was seen


def quantile(histogram: Histogram, q: float) -> float | None:
    """The `q` quantile of a histogram (nearest rank: the smallest value with at least q of the data at or below)."""
    n = sum(histogram.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    raise AssertionError("unreachable: rank <= n")


def _bootstrap(histogram: Histogram, q: float, seed: int) -> numpy.ndarray | None:
    """The `q` quantile of BOOTSTRAP_DRAWS resamples of the histogram, drawn without building the resamples.

    A resample is the empirical quantile function applied to n uniforms, so its k-th smallest value is that
    function at the k-th smallest of n uniforms, which is Beta(k, n - k + 1): the same distribution as resampling,
    at a cost independent of n.
    """
    n = sum(histogram.values())
    if n == 0:
        return None
    values = numpy.array(sorted(histogram), dtype=float)
    cumulative = numpy.cumsum([histogram[int(v)] for v in values]) / n
    rank = max(1, math.ceil(q * n))
    uniforms = numpy.random.default_rng(seed).beta(rank, n - rank + 1, size=BOOTSTRAP_DRAWS)
    positions = numpy.searchsorted(cumulative, uniforms, side="left")
    result: numpy.ndarray = values[numpy.minimum(positions, len(values) - 1)]
    return result


def _percentiles(draws: numpy.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = numpy.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def quantile_interval(histogram: Histogram, q: float) -> Interval:
    """The `q` quantile with its percentile-bootstrap interval (fixed seed)."""
    draws = _bootstrap(histogram, q, BOOTSTRAP_SEED)
    if draws is None:
        return None, None, None
    return (quantile(histogram, q), *_percentiles(draws))


def quantile_difference(control: Histogram, arm: Histogram, q: float) -> Interval:
    """The arm's `q` quantile minus control's, with a bootstrap interval (independent resamples, fixed seeds)."""
    control_draws = _bootstrap(control, q, BOOTSTRAP_SEED)
    arm_draws = _bootstrap(arm, q, BOOTSTRAP_SEED + 1)
    c, a = quantile(control, q), quantile(arm, q)
    if control_draws is None or arm_draws is None or c is None or a is None:
        return None, None, None
    return (a - c, *_percentiles(arm_draws - control_draws))


def sample_size(base_rate: float | None, effect: float, power: float = 0.8, level: float = LEVEL) -> int:
    """Conversations per arm to detect a change of `effect` in a rate (two-sided test, equal arms).

    From the control's rate when known, else the most demanding rate (0.5).
    """
    p1 = 0.5 if base_rate is None else base_rate
    p2 = p1 + effect if p1 + effect <= 1 else p1 - effect
    z_alpha = NormalDist().inv_cdf(0.5 + level / 2)
    z_beta = NormalDist().inv_cdf(power)
    mean = (p1 + p2) / 2
    root = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_beta * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root * root / (effect * effect))
