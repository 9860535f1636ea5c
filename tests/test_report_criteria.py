"""The production-readiness criteria of ``inferwatch report --check``: the stated defaults,
strict comparisons at the boundary, and every criterion named in the result."""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest

from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.reports import criteria

THRESHOLDS = load_thresholds()

# A window with one route, one SQL pool and one Redis pool, a cache, a dependency and a job
# kind, every figure comfortably within its criterion.
HEALTHY: dict[str, Any] = {
    "window": {"start": 0.0, "end": 900.0, "seconds": 900.0, "job": ".*"},
    "totals": {"requests": 1000, "error_rate": 0.0},
    "routes": [
        {"method": "POST", "route": "/v1/generate", "latency_seconds": {"p95": 0.8, "p99": 1.2}}
    ],
    "websocket": {"success_ratio": 1.0},
    "db_operations": [
        {"system": "postgresql", "pool": "main", "seconds": {"p90": 0.02}},
        {"system": "redis", "pool": "cache", "seconds": {"p90": 0.002}},
    ],
    "pools": [{"pool": "main", "usage": {"avg": 0.2}, "timeouts": 0}],
    "caches": [{"cache": "embeddings", "hit_ratio": 0.9}],
    "upstream": [{"peer": "tts", "recovery_rate": 0.9}],
    "jobs": [{"kind": "video", "memory_increase_bytes": {"p95": 20e6}}],
    "memory_leak": {"rss_growth_bytes_per_second": {}, "job_memory_growth": {"api-1": 0.01}},
    "resources": {"cpu_usage": {}, "memory_usage": {}},
    "alerts": [],
}
# criterion -> (where its figure lives, the stated limit: failing exactly there or not)
BOUNDARIES = {
    "max_latency_p95": (("routes", 0, "latency_seconds", "p95"), 2.0, False),
    "max_error_rate": (("totals", "error_rate"), 0.01, False),
    "max_db_query_p90": (("db_operations", 0, "seconds", "p90"), 0.5, False),
    "max_redis_operation_p90": (("db_operations", 1, "seconds", "p90"), 0.01, False),
    "min_cache_hit_ratio": (("caches", 0, "hit_ratio"), 0.8, False),
    "min_websocket_success": (("websocket", "success_ratio"), 0.95, False),
    "min_retry_recovery": (("upstream", 0, "recovery_rate"), 0.6, True),  # >= 60 %
    "max_job_memory_increase": (("jobs", 0, "memory_increase_bytes", "p95"), 100e6, False),
    "max_job_memory_growth": (("memory_leak", "job_memory_growth", "api-1"), 0.1, False),
    "max_pool_timeouts": (("pools", 0, "timeouts"), 0, True),  # <= 0: no timeout allowed
}


def with_value(path: tuple[Any, ...], value: float) -> dict[str, Any]:
    figures = copy.deepcopy(HEALTHY)
    target: Any = figures
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return figures


def results(figures: dict[str, Any], overlay: str = "") -> dict[str, list[criteria.Result]]:
    t = load_thresholds(overlay) if overlay else THRESHOLDS
    found: dict[str, list[criteria.Result]] = {}
    for r in criteria.check(figures, t):
        found.setdefault(r.criterion, []).append(r)
    return found


def test_the_stated_defaults() -> None:
    limits = criteria.limits(THRESHOLDS)
    assert {name: limits[name] for name in BOUNDARIES if name != "max_pool_timeouts"} == {
        "max_latency_p95": Fraction(2),
        "max_error_rate": Fraction(1, 100),
        "max_db_query_p90": Fraction(1, 2),
        "max_redis_operation_p90": Fraction(1, 100),
        "min_cache_hit_ratio": Fraction(4, 5),
        "min_websocket_success": Fraction(19, 20),
        "min_retry_recovery": Fraction(3, 5),
        "max_job_memory_increase": Fraction(100 * 10**6),
        "max_job_memory_growth": Fraction(1, 10),
    }


@pytest.mark.parametrize("name", sorted(BOUNDARIES))
def test_a_figure_exactly_at_the_limit(name: str) -> None:
    """Strict criteria fail exactly at their limit; >= and <= ones pass there. Just inside
    the limit every criterion passes."""
    path, limit, inclusive = BOUNDARIES[name]
    at = results(with_value(path, limit))[name]
    assert [(r.passed, r.judged) for r in at] == [(inclusive, True)]
    assert at[0].limit.startswith(criteria._SHOWN[criteria.BY_NAME[name].compare])
    lower = criteria.BY_NAME[name].compare.startswith(">")
    inside = limit * (1.01 if lower else 0.99) if limit else 0
    assert [r.passed for r in results(with_value(path, inside))[name]] == [True]


def test_every_criterion_is_named_judged_or_not() -> None:
    everything = results(HEALTHY)
    limits = criteria.limits(THRESHOLDS)
    assert set(everything) == {name for name, limit in limits.items() if limit is not None}
    assert all(r.passed for rs in everything.values() for r in rs)
    # Without a database, a dependency or jobs, those criteria are named n/a, not dropped.
    bare = copy.deepcopy(HEALTHY)
    for key in ("db_operations", "upstream", "jobs"):
        bare[key] = []
    bare["memory_leak"]["job_memory_growth"] = {}
    found = results(bare)
    for name in ("max_db_query_p90", "max_redis_operation_p90", "min_retry_recovery",
                 "max_job_memory_increase", "max_job_memory_growth"):  # fmt: skip
        (result,) = found[name]
        assert (result.judged, result.passed, result.measured) == (False, True, "no data")
        assert result.line().startswith(f"n/a: {name}: measured no data, limit ")


def test_each_breached_criterion_is_named_with_its_subject() -> None:
    figures = with_value(("totals", "error_rate"), 0.02)
    figures["db_operations"][1]["seconds"]["p90"] = 0.015
    figures["upstream"][0]["recovery_rate"] = 0.4
    failed = [r.line() for r in criteria.check(figures, THRESHOLDS) if not r.passed]
    assert failed == [
        "FAILED: max_error_rate: measured 2.00%, limit < 1.00%",
        "FAILED: max_redis_operation_p90 [redis cache]: measured 15.0ms, limit < 10.0ms",
        "FAILED: min_retry_recovery [tts]: measured 40.00%, limit ≥ 60.00%",
    ]


def test_the_thresholds_file_overrides_and_drops() -> None:
    overlay = "production_readiness:\n  max_error_rate: 3%\n  min_cache_hit_ratio: null\n"
    found = results(with_value(("totals", "error_rate"), 0.02), overlay)
    assert [r.passed for r in found["max_error_rate"]] == [True]
    assert "min_cache_hit_ratio" not in found
