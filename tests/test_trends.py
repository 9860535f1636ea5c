"""The report's trend and scalability arithmetic on synthetic series with known answers."""

from __future__ import annotations

import math
import random

import pytest

from inferwatch.reports import trends

# Student's t 0.975 quantiles: df -> t (df 1 and 2 in closed form, the others from tables)
T975 = {1: math.tan(0.475 * math.pi), 2: 0.95 / math.sqrt(2 * 0.975 * 0.025),
        10: 2.228138851986274, 30: 2.042272456301238}  # fmt: skip


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantiles_match_the_tables(df: int) -> None:
    assert trends.t_quantile(0.975, df) == pytest.approx(T975[df], rel=1e-9)


def test_t_quantile_tends_to_the_normal_one() -> None:
    assert trends.t_quantile(0.975, 1e7) == pytest.approx(1.959963984540054, rel=1e-6)
    assert trends.t_cdf(0.0, 3.5) == 0.5


def test_exact_slope_and_interval_on_a_known_series() -> None:
    # y = 2x + 10 plus residuals (1, -1, -1, 1): orthogonal to 1 and x, so the fit is
    # exactly the line; SSR = 4 on 2 degrees of freedom, Sxx = 5, and the residuals'
    # lag-1 autocorrelation is -1/4 (negative: no correction of n).
    points = [(x, 2 * x + 10 + e) for x, e in zip((0, 1, 2, 3), (1, -1, -1, 1), strict=True)]
    found = trends.fit(points)
    assert found is not None
    assert found.slope == pytest.approx(2.0, abs=1e-12)
    assert found.at(0) == pytest.approx(10.0, abs=1e-12)
    assert found.n == 4 and found.n_effective == 4
    assert found.lag1_autocorrelation == pytest.approx(-0.25)
    assert found.residual_sd == pytest.approx(math.sqrt(2))
    half = 4.302652729911275 * math.sqrt(2 / 5)
    assert found.low == pytest.approx(2 - half, rel=1e-9)
    assert found.high == pytest.approx(2 + half, rel=1e-9)
    assert found.excludes_zero is False  # 4 points this noisy prove nothing


def test_per_hour_figures_from_seconds() -> None:
    # 1 MiB per second plus noise orthogonal to the line (+-1000 B in blocks of
    # (1, -1, -1, 1)): exactly 3600 MiB per hour.
    mib = 2**20
    points = [(float(t), t * mib + (1, -1, -1, 1)[t % 4] * 1000.0) for t in range(60)]
    line = trends.trend(points)
    assert line is not None
    assert line["slope_per_hour"] == pytest.approx(3600 * mib, rel=1e-12)
    low, high = line["ci95_per_hour"]
    assert 0 < low < 3600 * mib < high
    assert line["ci_excludes_zero"] is True


def test_a_flat_series_interval_contains_zero() -> None:
    rng = random.Random(7)
    points = [(float(t), 500.0 + rng.gauss(0, 5)) for t in range(200)]
    found = trends.fit(points)
    assert found is not None
    assert found.low < 0 < found.high and not found.excludes_zero


def test_a_wandering_series_counts_fewer_effective_samples() -> None:
    # A flat random walk: its residuals follow each other, so n shrinks; the naive interval
    # (n - 2 degrees of freedom) would be much narrower.
    rng = random.Random(3)
    level, points = 0.0, []
    for t in range(300):
        level += rng.gauss(0, 1)
        points.append((float(t), level))
    found = trends.fit(points)
    assert found is not None
    r1 = found.lag1_autocorrelation
    assert r1 > 0.5
    assert found.n_effective == pytest.approx(300 * (1 - r1) / (1 + r1))
    ssr = found.residual_sd**2 * (found.n_effective - 2)
    naive = trends.t_quantile(0.975, 298) * math.sqrt(ssr / 298 / found.sxx)
    assert found.high - found.slope > 3 * naive


def test_too_few_points_give_no_fit() -> None:
    assert trends.fit([(0, 1), (1, 2)]) is None
    assert trends.fit([(5, 1), (5, 2), (5, 3)]) is None


def test_the_band_of_the_fitted_line_is_narrowest_at_the_mean() -> None:
    points = [(x, 2 * x + 10 + e) for x, e in zip((0, 1, 2, 3), (1, -1, -1, 1), strict=True)]
    found = trends.fit(points)
    assert found is not None
    low, high = found.band(1.5)
    assert (high - low) / 2 == pytest.approx(4.302652729911275 * math.sqrt(2) / 2)
    edge_low, edge_high = found.band(0)
    assert edge_high - edge_low > high - low


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.2, (0, 1)), (1, (0, 1)), (1.5, (1, 2)), (2, (1, 2)), (3, (2, 4)), (4, (2, 4)),
     (8, (4, 8)), (8.5, (8, 16))],
)  # fmt: skip
def test_power_of_two_bands(value: float, expected: tuple[float, float]) -> None:
    assert trends.band(value) == expected


def test_counter_increments_count_a_reset_anew() -> None:
    assert trends.increments([1, 4, 4, 10, 3, 5]) == [3, 0, 6, 3, 2]


def test_histogram_quantile_as_prometheus_computes_it() -> None:
    buckets = {0.1: 10.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    # rank 95 falls in (0.5, 1.0] holding 10: halfway
    assert trends.histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    assert trends.histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * 40 / 80)
    assert trends.histogram_quantile(0.99, {1.0: 1.0, math.inf: 2.0}) == 1.0  # in +Inf
    assert trends.histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None


def test_intervals_grouped_by_level() -> None:
    def interval(level: float, requests: float, fast: float) -> trends.Interval:
        counts = {"requests": requests}
        return trends.Interval(2.0, level, counts, {0.1: fast, 1.0: requests, math.inf: requests})

    rows = trends.by_level(
        [interval(1.0, 10, 10), interval(0.0, 0, 0), interval(3.0, 40, 20),
         interval(4.0, 60, 30)]
    )  # fmt: skip
    assert [(r["low"], r["high"]) for r in rows] == [(0, 1), (2, 4)]
    one, four = rows
    assert one["seconds"] == 2.0 and one["per_second"]["requests"] == 5.0
    assert four["seconds"] == 4.0 and four["counts"]["requests"] == 100
    assert four["per_second"]["requests"] == 25.0
    assert four["level_avg"] == 3.5
    # 50 of 100 under 0.1 s: the P95 (rank 95) is 0.1 + 0.9 * 45 / 50
    assert four["latency_seconds"]["p95"] == pytest.approx(0.1 + 0.9 * 45 / 50)


def test_counter_steps_count_a_series_born_inside_the_window_from_zero() -> None:
    from inferwatch.reports.timeline import _increases

    times = [0.0, 2.0, 4.0, 6.0, 8.0]
    # Absent at the window's start: born inside it, so its first value is all increase.
    assert _increases(times, {4.0: 5.0, 6.0: 7.0, 8.0: 7.0}) == {4.0: 5.0, 6.0: 2.0, 8.0: 0.0}
    # Present from the start: only what it gained; after a missing sample the gain lands on
    # the next step that has one.
    assert _increases(times, {0.0: 10.0, 2.0: 12.0, 6.0: 20.0, 8.0: 3.0}) == {
        2.0: 2.0,
        6.0: 8.0,
        8.0: 3.0,  # a reset: counted anew
    }
