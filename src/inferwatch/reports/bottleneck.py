"""Rank the likely constraint of a load-test window, with the figures behind each guess.

The scores are the recorded saturation scores (``component:inferwatch_saturation:ratio``, one
per component and resource, see ``SATURATIONS`` in :mod:`inferwatch.alerts.signals`): the
same series the overview's "Likely bottleneck now" panel shows, so the report and the panel
agree by construction. A candidate's score is the highest its worst resource reached in the
window (what the panel showed at its worst); 1 is the warning level of the alert judging its
pressure, so one unit means the same thing across candidates, and ``likely`` marks those at
or past it. Scores measure waiting and refusal (acquire waits, timeouts, misses, slow or
failing attempts, queue waits, busy CPUs and GPUs), never a momentary maximum.

The window's own figures (pool waits, hit ratios, attempts...) come along as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from inferwatch.alerts.signals import SATURATIONS, Saturation, Signal
from inferwatch.alerts.thresholds import Levels, Thresholds

Candidate = dict[str, Any]
Figures = Mapping[str, Any]
LIKELY = 1.0  # a score at its judge's warning level
BY_COMPONENT = {s.component: s for s in SATURATIONS}


def _level(t: Thresholds, signal: Signal) -> float | None:
    """The level a pressure is scored against: the warning, else the critical level."""
    levels = t.signals.get(signal.key)
    if not isinstance(levels, Levels):
        return None
    level = levels.warning if levels.warning is not None else levels.critical
    return float(level) if isinstance(level, Fraction) else None


def _levels(saturation: Saturation, t: Thresholds) -> dict[str, float | None]:
    """``{<judging signal>_level: level}``: what each pressure is scored against, in the
    report's thresholds (the rules that recorded the scores were made from the stack's)."""
    return {f"{p.judged_by.key}_level": _level(t, p.judged_by) for p in saturation.pressures}


def _one(rows: list[dict[str, Any]], key: str, value: str) -> dict[str, Any]:
    return next((row for row in rows if row.get(key) == value), {})


def _pool(f: Figures, resource: str) -> dict[str, Any]:
    p = _one(f["pools"], "pool", resource)
    return {
        "timeouts": p.get("timeouts"),
        "waits": p.get("waits"),
        "wait_seconds_avg": p.get("wait_seconds_avg"),
        "wait_seconds_p90": p.get("wait_seconds", {}).get("p90"),
        "pending_max": p.get("pending", {}).get("max"),
        "usage_avg": p.get("usage", {}).get("avg"),
        "usage_max": p.get("usage", {}).get("max"),
    }


def _cache(f: Figures, resource: str) -> dict[str, Any]:
    c = _one(f["caches"], "cache", resource)
    gets, hits = c.get("gets"), c.get("hits")
    return {
        "hit_ratio": c.get("hit_ratio"),
        "gets": gets,
        "misses": None if gets is None or hits is None else gets - hits,
    }


def _upstream(f: Figures, resource: str) -> dict[str, Any]:
    u = _one(f["upstream"], "peer", resource)
    return {
        "attempts": u.get("attempts"),
        "failed_attempts": u.get("failed_attempts"),
        "attempt_seconds_p95": u.get("attempt_seconds", {}).get("p95"),
        "retries": u.get("retries"),
        "breaker_opened": u.get("breaker", {}).get("opened"),
    }


def _queue(f: Figures, resource: str) -> dict[str, Any]:
    m = _one(f["models"], "model", resource)
    q = f["queue"]
    return {
        "queue_seconds_p95": m.get("queue_seconds", {}).get("p95"),
        "queue_share_of_inference_time": q.get("queue_share"),
        "queue_depth_max": q.get("depth", {}).get("max"),
    }


def _cpu(f: Figures, resource: str) -> dict[str, Any]:
    cpu = f["resources"]["cpu_usage"].get(resource, {})
    return {"cpu_usage_avg": cpu.get("avg"), "cpu_usage_max": cpu.get("max")}


def _gpu(f: Figures, resource: str) -> dict[str, Any]:
    gpu = resource.rpartition("/")[2]  # instance/gpu
    res = f["resources"]
    return {
        "utilization_avg": res["gpu_utilization"].get(gpu, {}).get("avg"),
        "memory_max": res["gpu_memory_usage"].get(gpu, {}).get("max"),
    }


EVIDENCE: dict[str, Callable[[Figures, str], dict[str, Any]]] = {
    "pool": _pool,
    "cache": _cache,
    "upstream": _upstream,
    "model_queue": _queue,
    "cpu": _cpu,
    "gpu": _gpu,
}


def rank(figures: Figures, thresholds: Thresholds) -> list[Candidate]:
    """Most likely constraint first, one candidate per component (its worst resource);
    ``likely`` marks those whose score reached 1 in the window."""
    worst: dict[str, dict[str, Any]] = {}
    for row in figures.get("saturation", []):
        component = row["component"]
        if component in BY_COMPONENT and (
            component not in worst or row["score_max"] > worst[component]["score_max"]
        ):
            worst[component] = row
    found = []
    for component, row in worst.items():
        saturation = BY_COMPONENT[component]
        resource = row["resource"]
        found.append(
            {
                "kind": saturation.kind,
                "component": component,
                "resource": resource,
                "title": saturation.headline.format(resource=resource),
                "score": row["score_max"],
                "likely": row["score_max"] >= LIKELY,
                "evidence": {
                    "score_max": row["score_max"],
                    "score_avg": row["score_avg"],
                    **EVIDENCE[component](figures, resource),
                    **_levels(saturation, thresholds),
                },
                "recommendations": list(saturation.recommendations),
            }
        )
    return sorted(found, key=lambda c: (-c["score"], c["component"]))
