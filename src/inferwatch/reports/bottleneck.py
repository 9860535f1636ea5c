"""Rank the likely constraint of a load-test window, with the figures behind each guess.

Each candidate's score is how far its worst figure went past the thresholds file's warning
level (1.0 = right at the warning), plus a fixed bump for hard evidence such as pool
timeouts, so that one unit means the same thing across candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from inferwatch.alerts.thresholds import Levels, Thresholds

Candidate = dict[str, Any]
MIN_CACHE_GETS = 10  # fewer lookups say nothing about a hit ratio


def _warning(t: Thresholds, key: str, fallback: float) -> float:
    levels = t.signals.get(key)
    if isinstance(levels, Levels) and isinstance(levels.warning, Fraction):
        return float(levels.warning)
    return fallback


def _worst(by_key: Mapping[str, Mapping[str, float | None]], field: str) -> float | None:
    found = [v[field] for v in by_key.values() if v.get(field) is not None]
    return max(found) if found else None  # type: ignore[type-var]


def _pool(f: dict, t: Thresholds) -> Candidate | None:
    if not f["pools"]:
        return None
    warn = _warning(t, "db_pool_usage", 0.7)
    best = None
    for p in f["pools"]:
        usage = p["usage"].get("max") or 0.0
        pending = p["pending"].get("max") or 0.0
        score = usage / warn + (1.0 if p["timeouts"] else 0.0) + (0.5 if pending else 0.0)
        if best is None or score > best["score"]:
            best = {
                "kind": "pool_saturation",
                "title": f"Connection pool {p['pool']} saturated",
                "score": score,
                "evidence": {
                    "pool": p["pool"],
                    "usage_max": usage,
                    "usage_warning": warn,
                    "pending_max": pending,
                    "timeouts": p["timeouts"],
                    "wait_seconds_avg": p["wait_seconds_avg"],
                },
                "recommendations": [
                    "Raise the pool size (and the database's max connections) or shorten "
                    "what holds a connection: no network or model calls inside a transaction.",
                    "Look for leaked or long-held connections (use time per checkout).",
                    "Set a pool timeout below the request deadline so requests fail fast.",
                ],
            }
    return best


def _cache(f: dict, t: Thresholds) -> Candidate | None:
    warn = _warning(t, "cache_hit_rate", 0.8)  # alerts below
    caches = [c for c in f["caches"] if c["gets"] >= MIN_CACHE_GETS and c["hit_ratio"] is not None]
    if not caches:
        return None
    c = min(caches, key=lambda c: c["hit_ratio"])
    return {
        "kind": "cache_misses",
        "title": f"Cache {c['cache']} missing",
        "score": (1 - c["hit_ratio"]) / (1 - warn),
        "evidence": {
            "cache": c["cache"],
            "hit_ratio": c["hit_ratio"],
            "hit_ratio_warning": warn,
            "gets": c["gets"],
            "misses": c["gets"] - c["hits"],
        },
        "recommendations": [
            "Check that the cache is up and not being flushed (evictions, restarts, TTLs).",
            "Warm the cache on deploy with the most frequent prompts or conditionings.",
            "Give the cache more memory if entries are evicted before they are reused.",
        ],
    }


def _gpu(f: dict, t: Thresholds) -> Candidate | None:
    avg = _worst(f["resources"]["gpu_utilization"], "avg")
    if avg is None:
        return None
    warn = _warning(t, "gpu_utilization", 0.9)
    memory = _worst(f["resources"]["gpu_memory_usage"], "max")
    return {
        "kind": "gpu",
        "title": "GPU busy",
        "score": max(avg / warn, (memory or 0) / _warning(t, "gpu_memory", 0.9)),
        "evidence": {"utilization_avg": avg, "utilization_warning": warn, "memory_max": memory},
        "recommendations": [
            "Add GPUs or replicas; batch more requests per forward pass.",
            "Use a smaller or quantised model for latency-sensitive routes.",
        ],
    }


def _cpu(f: dict, t: Thresholds) -> Candidate | None:
    avg = _worst(f["resources"]["cpu_usage"], "avg")
    if avg is None:
        return None
    warn = _warning(t, "cpu_usage", 0.7)
    return {
        "kind": "cpu",
        "title": "CPU busy",
        "score": avg / warn,
        "evidence": {
            "cpu_usage_avg": avg,
            "cpu_usage_max": _worst(f["resources"]["cpu_usage"], "max"),
            "cpu_usage_warning": warn,
        },
        "recommendations": [
            "Profile pre- and post-processing; move encoding off the event loop.",
            "Add workers or CPU, or move the load generator to another machine.",
        ],
    }


def _queue(f: dict, t: Thresholds) -> Candidate | None:
    q = f["queue"]
    if q["queue_share"] is None:
        return None
    depth = q["depth"].get("max") or 0.0
    # Half the inference time spent waiting in the queue counts as "at the warning".
    return {
        "kind": "model_queue",
        "title": "Requests waiting for the model",
        "score": q["queue_share"] / 0.5 + (0.5 if depth >= 10 else 0.0),
        "evidence": {
            "queue_share_of_inference_time": q["queue_share"],
            "queue_depth_max": depth,
            "queue_seconds_total": q["queue_seconds_total"],
        },
        "recommendations": [
            "Raise the batch size or add model replicas.",
            "Reject early (429) when the queue is long rather than let deadlines expire.",
        ],
    }


CANDIDATES: tuple[Callable[[dict, Thresholds], Candidate | None], ...] = (
    _pool,
    _cache,
    _gpu,
    _cpu,
    _queue,
)


def rank(figures: dict, thresholds: Thresholds) -> list[Candidate]:
    """Most likely constraint first; ``likely`` marks those past their warning level."""
    found = [c for make in CANDIDATES if (c := make(figures, thresholds)) is not None]
    for c in found:
        c["likely"] = c["score"] >= 1.0
    return sorted(found, key=lambda c: c["score"], reverse=True)
