"""The arithmetic of the report's Trends and Scalability sections, on plain numbers.

Trends: a least-squares line through a resource's samples over the window (CPU, resident
memory), with a 95 % confidence interval for its slope from the residuals. Samples of a
time series are not independent: a slow wander leaves residuals that follow each other, and
the textbook interval would then be far too narrow (a flat but wandering RSS would "grow").
So the residuals' lag-1 autocorrelation r1, when positive, shrinks the sample count to an
effective one, ``n_eff = n (1 - r1) / (1 + r1)``, which sets both the residual variance's
denominator and the t-distribution's degrees of freedom (``n_eff - 2``).

Scalability: the window cut into intervals, each classed by its level (requests in flight,
or the batch size the model ran), and per level the throughput and latency percentiles of
the intervals at that level. Levels are power-of-two bands, ``(0, 1], (1, 2], (2, 4], ...``,
the batch-size histogram's own buckets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

CONFIDENCE = 0.95
HOUR = 3600.0


@dataclass(frozen=True)
class Fit:
    """A least-squares line ``y = intercept + slope * (x - x_mean)`` and its slope's
    confidence interval; x in the caller's unit (seconds here), slope per that unit."""

    n: int
    n_effective: float
    lag1_autocorrelation: float
    slope: float
    intercept: float  # the fitted value at x_mean
    x_mean: float
    sxx: float  # sum of (x - x_mean)^2
    residual_sd: float  # with n_effective - 2 degrees of freedom
    t: float  # the t-quantile of the interval
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def at(self, x: float) -> float:
        return self.intercept + self.slope * (x - self.x_mean)

    def band(self, x: float) -> tuple[float, float]:
        """The confidence band of the fitted line (the mean response) at ``x``."""
        half = (
            self.t
            * self.residual_sd
            * math.sqrt(1 / self.n_effective + (x - self.x_mean) ** 2 / self.sxx)
        )
        return self.at(x) - half, self.at(x) + half

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):  # fmt: skip
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with ``df`` (> 0, not necessarily whole) degrees."""
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` degrees of freedom."""
    if not 0.5 < p < 1 or not df > 0:
        raise ValueError(f"need 0.5 < p < 1 and df > 0, got p={p!r}, df={df!r}")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):  # bisection: t_cdf is increasing; 200 halvings reach float precision
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * high:
            break
    return (low + high) / 2


def fit(points: Sequence[tuple[float, float]], confidence: float = CONFIDENCE) -> Fit | None:
    """The least-squares line through ``(x, y)`` points and its slope's interval; None for
    fewer than 3 points or a single x."""
    n = len(points)
    if n < 3:
        return None
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    x_mean, y_mean = sum(xs) / n, sum(ys) / n
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = sum((x - x_mean) * (y - y_mean) for x, y in points) / sxx
    residuals = [y - y_mean - slope * (x - x_mean) for x, y in points]
    ssr = sum(e * e for e in residuals)
    r1 = sum(a * b for a, b in itertools.pairwise(residuals)) / ssr if ssr > 0 else 0.0
    n_eff = float(n)
    if r1 > 0:
        n_eff = min(float(n), max(3.0, n * (1 - r1) / (1 + r1)))
    df = n_eff - 2
    sd = math.sqrt(ssr / df)
    t = t_quantile((1 + confidence) / 2, df)
    half = t * sd / math.sqrt(sxx)
    return Fit(n, n_eff, r1, slope, y_mean, x_mean, sxx, sd, t, slope - half, slope + half)


def trend(points: Sequence[tuple[float, float]]) -> dict[str, Any] | None:
    """A series' trend for the report: the fit with its slope and interval per hour (x in
    seconds), and the fitted values at the first and last sample."""
    found = fit(points)
    if found is None:
        return None
    first, last = points[0][0], points[-1][0]
    return {
        "fit": found.as_dict(),
        "slope_per_hour": found.slope * HOUR,
        "ci95_per_hour": [found.low * HOUR, found.high * HOUR],
        "ci_excludes_zero": found.excludes_zero,
        "fitted_start": found.at(first),
        "fitted_end": found.at(last),
    }


# --- scalability ---------------------------------------------------------------------------


def band(value: float) -> tuple[float, float]:
    """The power-of-two band ``(low, high]`` holding ``value`` (> 0): (0, 1], (1, 2], (2, 4]."""
    if value <= 1:
        return 0.0, 1.0
    high = 2.0 ** math.ceil(math.log2(value) - 1e-12)
    return high / 2, high


def increments(values: Sequence[float]) -> list[float]:
    """Successive increases of a counter's samples; a drop is a reset, counted anew."""
    return [b - a if b >= a else b for a, b in itertools.pairwise(values)]


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` over cumulative ``{le: count}`` (``math.inf``
    for +Inf): linear within the bucket; the highest finite bound when the rank falls in
    +Inf; None without observations."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return None
    total = buckets[math.inf]
    if total <= 0:
        return None
    rank = q * total
    lower, before = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == math.inf:
                return lower
            if count == before:
                return bound
            return lower + (bound - lower) * (rank - before) / (count - before)
        lower, before = bound, count
    return lower


@dataclass
class Interval:
    """One interval of the window: its length, what was counted in it, and the cumulative
    latency histogram of what completed in it (``{le: count}``)."""

    seconds: float
    level: float  # requests in flight, or the mean batch size; <= 0: idle, left out
    counts: dict[str, float]
    buckets: dict[float, float]


def by_level(intervals: Sequence[Interval]) -> list[dict[str, Any]]:
    """Per power-of-two band of the intervals' levels: seconds spent there, the time-
    weighted mean level, the counts summed, their rates, and latency percentiles from the
    bands' summed buckets."""
    groups: dict[tuple[float, float], list[Interval]] = {}
    for interval in intervals:
        if interval.level > 0 and interval.seconds > 0:
            groups.setdefault(band(interval.level), []).append(interval)
    rows = []
    for (low, high), members in sorted(groups.items()):
        seconds = sum(i.seconds for i in members)
        counts: dict[str, float] = {}
        buckets: dict[float, float] = {}
        for i in members:
            for name, n in i.counts.items():
                counts[name] = counts.get(name, 0.0) + n
            for le, n in i.buckets.items():
                buckets[le] = buckets.get(le, 0.0) + n
        rows.append(
            {
                "low": low,
                "high": high,
                "level_avg": sum(i.level * i.seconds for i in members) / seconds,
                "intervals": len(members),
                "seconds": seconds,
                "counts": counts,
                "per_second": {name: n / seconds for name, n in counts.items()},
                "latency_seconds": {
                    f"p{round(q * 100)}": histogram_quantile(q, buckets) for q in (0.5, 0.95, 0.99)
                },
            }
        )
    return rows
