"""Production-readiness criteria and their check against a report's figures.

Defaults come from the thresholds file's warning levels (an alert at warning would have
fired, so the window is not ready); the file's open ``production_readiness`` mapping
overrides any of them, in the same units as the signals, and ``null`` drops a criterion::

    production_readiness:
      max_latency_p95: 800ms
      max_error_rate: 1%
      max_cpu_usage: null
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from inferwatch.alerts import units
from inferwatch.alerts.thresholds import Levels, Thresholds

# criterion -> (signal its default comes from, unit parser, lower limit?)
CRITERIA: dict[str, tuple[str | None, Callable[[str], Fraction], bool]] = {
    "min_requests": (None, units.parse_count, True),
    "max_latency_p95": ("api_latency_p95", units.parse_duration, False),
    "max_latency_p99": ("api_latency_p99", units.parse_duration, False),
    "max_error_rate": ("api_error_rate", units.parse_percent, False),
    "min_websocket_success": ("websocket_success", units.parse_percent, True),
    "max_pool_usage": ("db_pool_usage", units.parse_percent, False),
    "max_pool_timeouts": ("db_pool_timeouts", units.parse_count, False),
    "min_cache_hit_ratio": ("cache_hit_rate", units.parse_percent, True),
    "max_cpu_usage": ("cpu_usage", units.parse_percent, False),
    "max_memory_usage": ("memory_usage", units.parse_percent, False),
    "max_memory_growth": ("memory_leak", units.parse_byte_rate, False),
    "no_critical_alerts": (None, units.parse_count, False),
}
DEFAULTS: dict[str, Any] = {"min_requests": 1, "no_critical_alerts": True}
LEAK_MIN_WINDOW = 600.0  # seconds; a shorter RSS slope is warm-up, not a leak


@dataclass(frozen=True)
class Result:
    criterion: str
    limit: str
    measured: str
    passed: bool
    subject: str = ""  # the route, pool or cache it concerns

    def line(self) -> str:
        where = f" [{self.subject}]" if self.subject else ""
        verdict = "ok" if self.passed else "FAILED"
        return f"{verdict}: {self.criterion}{where}: measured {self.measured}, limit {self.limit}"


def limits(t: Thresholds) -> dict[str, Any]:
    """criterion -> limit (a Fraction, or True for the alert criterion); None drops it."""
    out: dict[str, Any] = {}
    for name, (signal, _, _) in CRITERIA.items():
        levels = t.signals.get(signal) if signal else None
        out[name] = levels.warning if isinstance(levels, Levels) else DEFAULTS.get(name)
    for name, value in t.production_readiness.items():
        if name not in CRITERIA:
            continue  # the mapping is open: other readers keep their own keys there
        parse = CRITERIA[name][1]
        if value is None or isinstance(value, bool):
            out[name] = value or None
        else:
            out[name] = parse(str(value))
    return out


def _show(name: str, value: float) -> str:
    parse = CRITERIA[name][1]
    if parse is units.parse_duration:
        return f"{value * 1000:.1f}ms"
    if parse is units.parse_percent:
        return f"{value * 100:.2f}%"
    if parse is units.parse_byte_rate:
        return f"{value / 1024:.1f}KiB/s"
    return f"{value:g}"


def check(figures: dict[str, Any], t: Thresholds) -> list[Result]:
    """Every criterion that applies to the window, passed or not."""
    results: list[Result] = []

    def judge(name: str, measured: float | None, subject: str = "") -> None:
        limit = lim.get(name)
        if limit is None or measured is None:
            return
        lower = CRITERIA[name][2]
        passed = measured >= limit if lower else measured <= limit
        shown = _show(name, float(limit))
        results.append(Result(name, shown, _show(name, measured), passed, subject))

    lim = limits(t)
    judge("min_requests", figures["totals"]["requests"])
    for row in figures["routes"]:
        subject = f"{row['method']} {row['route']}"
        judge("max_latency_p95", row["latency_seconds"].get("p95"), subject)
        judge("max_latency_p99", row["latency_seconds"].get("p99"), subject)
    judge("max_error_rate", figures["totals"]["error_rate"])
    judge("min_websocket_success", figures["websocket"]["success_ratio"])
    for pool in figures["pools"]:
        # The average: alerts need the level sustained (`for:`), one busy scrape is not it.
        judge("max_pool_usage", pool["usage"].get("avg"), pool["pool"])
        judge("max_pool_timeouts", pool["timeouts"], pool["pool"])
    for cache in figures["caches"]:
        judge("min_cache_hit_ratio", cache["hit_ratio"], cache["cache"])
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
            Result(
                "no_critical_alerts",
                "none",
                ", ".join(critical) or "none",
                not critical,
            )
        )
    return results
