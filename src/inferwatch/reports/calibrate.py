"""Propose warning/critical thresholds from a measured window, as a thresholds overlay.

Headroom rules: latency warns at 1.5x the worst route's P95 (critical 3x), errors at twice
the measured rate with a 1% floor, pool usage 20 points above the peak, cache hit ratio 10%
below the measured one. The result is checked by loading it before it is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from inferwatch.alerts.thresholds import load_thresholds


def _ms(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds * 1000))}ms"


def _pct(ratio: float) -> str:
    return f"{min(max(ratio, 0.0001), 0.9999) * 100:.2f}%"


def propose(figures: dict[str, Any]) -> dict[str, Any]:
    signals: dict[str, dict[str, str]] = {}
    p95s = [r["latency_seconds"]["p95"] for r in figures["routes"] if "p95" in r["latency_seconds"]]
    if p95s:
        worst = max(p95s)
        signals["api_latency_p95"] = {"warning": _ms(worst * 1.5), "critical": _ms(worst * 3)}
    error_rate = figures["totals"]["error_rate"]
    if error_rate is not None:
        warning = min(max(error_rate * 2, 0.01), 0.5)
        signals["api_error_rate"] = {"warning": _pct(warning), "critical": _pct(warning * 1.9)}
    usage = [p["usage"]["max"] for p in figures["pools"] if p["usage"].get("max") is not None]
    if usage:
        warning = min(max(max(usage) + 0.2, 0.5), 0.9)
        signals["db_pool_usage"] = {"warning": _pct(warning), "critical": _pct(warning + 0.09)}
    ratios = [c["hit_ratio"] for c in figures["caches"] if c["hit_ratio"] and c["gets"] >= 10]
    if ratios:
        warning = max(min(ratios) * 0.9, 0.05)
        signals["cache_hit_rate"] = {"warning": _pct(warning), "critical": _pct(warning / 2)}
    return {"version": 1, "signals": signals}


def write_overlay(figures: dict[str, Any], path: Path) -> dict[str, Any]:
    import yaml

    overlay = propose(figures)
    header = (
        "# Thresholds calibrated from a load-test window by `inferwatch report --calibrate`.\n"
        "# Use with: inferwatch generate --thresholds <this file>\n"
    )
    text = header + yaml.safe_dump(overlay, sort_keys=False)
    load_thresholds(text)  # fail here, not in `inferwatch generate`, if a rule is broken
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return overlay
