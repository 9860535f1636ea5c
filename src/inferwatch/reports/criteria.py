"""Production-readiness criteria and their check against a report's figures.

The criteria as AI backends state them: API P95 < 2000 ms, error rate < 1 %, database query
P90 < 500 ms, Redis command P90 < 10 ms, cache hit rate > 80 %, WebSocket success > 95 %,
retries recovering >= 60 % of the calls whose first attempt failed, < 100 MB of resident
memory added per job (P95) and < 10 % growth over the last jobs. Comparisons are strict
(``<``, ``>``) unless a criterion says otherwise: ``>=`` for the recovery rate and the
request count, ``<=`` for event counts, whose limit is how many are allowed.

Criteria without a stated default take the warning level of the thresholds-file signal they
are named after (an alert at warning would have fired, so the window is not ready). The
file's open ``production_readiness`` mapping overrides any of them, in the same units as the
signals, and ``null`` drops a criterion::

    production_readiness:
      max_latency_p95: 800ms
      max_error_rate: 0.5%
      max_cpu_usage: null

Every criterion is named in the result: judged (ok or FAILED) or, where the window has no
data for it (no database, no dependency called), ``n/a``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from inferwatch.alerts import units
from inferwatch.alerts.thresholds import Levels, Thresholds

Compare = Literal["<", "<=", ">", ">="]


@dataclass(frozen=True)
class Criterion:
    name: str
    parse: Callable[[str], Fraction]
    compare: Compare
    default: str | bool | None = None  # as written in the thresholds file
    signal: str | None = None  # whose warning level is the default when there is none


CRITERIA: tuple[Criterion, ...] = (
    Criterion("min_requests", units.parse_count, ">=", "1"),
    Criterion("max_latency_p95", units.parse_duration, "<", "2000ms"),
    Criterion("max_latency_p99", units.parse_duration, "<", signal="api_latency_p99"),
    Criterion("max_error_rate", units.parse_percent, "<", "1%"),
    Criterion("min_websocket_success", units.parse_percent, ">", "95%"),
    Criterion("max_db_query_p90", units.parse_duration, "<", "500ms"),
    Criterion("max_redis_operation_p90", units.parse_duration, "<", "10ms"),
    Criterion("max_pool_usage", units.parse_percent, "<", signal="db_pool_usage"),
    Criterion("max_pool_timeouts", units.parse_count, "<=", signal="db_pool_timeouts"),
    Criterion("min_cache_hit_ratio", units.parse_percent, ">", "80%"),
    Criterion("min_retry_recovery", units.parse_percent, ">=", "60%"),
    Criterion("max_job_memory_increase", units.parse_bytes, "<", "100MB"),
    Criterion("max_job_memory_growth", units.parse_percent, "<", "10%"),
    Criterion("max_cpu_usage", units.parse_percent, "<", signal="cpu_usage"),
    Criterion("max_memory_usage", units.parse_percent, "<", signal="memory_usage"),
    Criterion("max_memory_growth", units.parse_byte_rate, "<", signal="memory_leak"),
    Criterion("no_critical_alerts", units.parse_count, "<=", True),
)  # fmt: skip
BY_NAME = {c.name: c for c in CRITERIA}
LEAK_MIN_WINDOW = 600.0  # seconds; a shorter RSS slope is warm-up, not a leak
NO_DATA = "no data"
_PASSES: dict[Compare, Callable[[float, float], bool]] = {
    "<": lambda m, limit: m < limit,
    "<=": lambda m, limit: m <= limit,
    ">": lambda m, limit: m > limit,
    ">=": lambda m, limit: m >= limit,
}
_SHOWN = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}


@dataclass(frozen=True)
class Result:
    criterion: str
    limit: str
    measured: str
    passed: bool  # n/a results pass: there was nothing to judge
    subject: str = ""  # the route, pool, cache, dependency or job kind it concerns
    judged: bool = True

    def line(self) -> str:
        where = f" [{self.subject}]" if self.subject else ""
        verdict = ("ok" if self.passed else "FAILED") if self.judged else "n/a"
        return f"{verdict}: {self.criterion}{where}: measured {self.measured}, limit {self.limit}"


def limits(t: Thresholds) -> dict[str, Any]:
    """criterion -> limit (a Fraction, or True for the alert criterion); None drops it."""
    out: dict[str, Any] = {}
    for c in CRITERIA:
        if isinstance(c.default, bool):
            out[c.name] = c.default
        elif c.default is not None:
            out[c.name] = c.parse(c.default)
        else:
            levels = t.signals.get(c.signal) if c.signal else None
            out[c.name] = levels.warning if isinstance(levels, Levels) else None
    for name, value in t.production_readiness.items():
        if name not in BY_NAME:
            continue  # the mapping is open: other readers keep their own keys there
        if value is None or isinstance(value, bool):
            out[name] = value or None
        else:
            out[name] = BY_NAME[name].parse(str(value))
    return out


def show(name: str, value: float) -> str:
    parse = BY_NAME[name].parse
    if parse is units.parse_duration:
        return f"{value * 1000:.1f}ms"
    if parse is units.parse_percent:
        return f"{value * 100:.2f}%"
    if parse is units.parse_byte_rate:
        return f"{value / 1024:.1f}KiB/s"
    if parse is units.parse_bytes:
        return f"{value / 1e6:.1f}MB"
    return f"{value:g}"


def check(figures: dict[str, Any], t: Thresholds) -> list[Result]:
    """Every criterion with a limit: judged where the window has data, n/a where not."""
    lim = limits(t)
    results: list[Result] = []
    judged: set[str] = set()

    def judge(name: str, measured: float | None, subject: str = "") -> None:
        limit = lim.get(name)
        if limit is None or measured is None:
            return
        c = BY_NAME[name]
        passed = _PASSES[c.compare](measured, float(limit))
        shown = f"{_SHOWN[c.compare]} {show(name, float(limit))}"
        results.append(Result(name, shown, show(name, measured), passed, subject))
        judged.add(name)

    judge("min_requests", figures["totals"]["requests"])
    for row in figures["routes"]:
        subject = f"{row['method']} {row['route']}"
        judge("max_latency_p95", row["latency_seconds"].get("p95"), subject)
        judge("max_latency_p99", row["latency_seconds"].get("p99"), subject)
    judge("max_error_rate", figures["totals"]["error_rate"])
    judge("min_websocket_success", figures["websocket"]["success_ratio"])
    for op in figures.get("db_operations", []):
        name = "max_redis_operation_p90" if op["system"] == "redis" else "max_db_query_p90"
        judge(name, op["seconds"].get("p90"), f"{op['system']} {op['pool']}")
    for pool in figures["pools"]:
        # The average: alerts need the level sustained (`for:`), one busy scrape is not it.
        judge("max_pool_usage", pool["usage"].get("avg"), pool["pool"])
        judge("max_pool_timeouts", pool["timeouts"], pool["pool"])
    for cache in figures["caches"]:
        judge("min_cache_hit_ratio", cache["hit_ratio"], cache["cache"])
    for peer in figures.get("upstream", []):
        judge("min_retry_recovery", peer["recovery_rate"], peer["peer"])
    for kind in figures.get("jobs", []):
        judge("max_job_memory_increase", kind["memory_increase_bytes"].get("p95"), kind["kind"])
    for instance, ratio in figures["memory_leak"].get("job_memory_growth", {}).items():
        judge("max_job_memory_growth", ratio, instance)
    for instance, cpu in figures["resources"]["cpu_usage"].items():
        judge("max_cpu_usage", cpu.get("avg"), instance)
    for instance, memory in figures["resources"]["memory_usage"].items():
        judge("max_memory_usage", memory.get("max"), instance)
    if figures["window"]["seconds"] >= LEAK_MIN_WINDOW:
        for instance, slope in figures["memory_leak"]["rss_growth_bytes_per_second"].items():
            judge("max_memory_growth", slope, instance)
    if lim.get("no_critical_alerts"):
        critical = sorted(
            {a["alertname"] for a in figures["alerts"] if a["severity"] == "critical"}
        )
        results.append(
            Result("no_critical_alerts", "none", ", ".join(critical) or "none", not critical)
        )
        judged.add("no_critical_alerts")
    for c in CRITERIA:
        limit = lim.get(c.name)
        if c.name not in judged and limit is not None and not isinstance(limit, bool):
            shown = f"{_SHOWN[c.compare]} {show(c.name, float(limit))}"
            results.append(Result(c.name, shown, NO_DATA, True, judged=False))
    return results
