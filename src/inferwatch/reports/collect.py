"""Gather a window's figures from Prometheus into one plain, JSON-ready mapping.

Counts are exact counter deltas; percentiles come from the histogram buckets' increase over
the whole window evaluated at its end, so they compare with a load generator's own
percentiles over the same run (not with a 5-minute rolling P95).
"""

from __future__ import annotations

import math
from typing import Any

from inferwatch.dashboards.prometheus import Prometheus
from inferwatch.reports.query import Reader, Window

QUANTILES = (0.5, 0.9, 0.95, 0.99)
HTTP = "http_server_request_duration_seconds"
INFERENCE = "inferwatch_inference_request_duration_seconds"


def _quantiles(r: Reader, metric: str, by: tuple[str, ...], extra: str = "") -> dict:
    """``{key: {"p50": s, ...}}`` from ``histogram_quantile`` over the window's increase."""
    w = r.window
    matchers = ", ".join(m for m in (w.sel, extra) if m)
    labels = ", ".join(("le", *by))
    out: dict[tuple[str, ...], dict[str, float]] = {}
    for q in QUANTILES:
        expr = (
            f"histogram_quantile({q}, sum by ({labels}) "
            f"(increase({metric}_bucket{{{matchers}}}[{w.range}])))"
        )
        for key, value in r.values(expr, by).items():
            out.setdefault(key, {})[f"p{round(q * 100)}"] = value
    return out


def _bounds(r: Reader, metric: str) -> list[float]:
    les = r.values(f"group by (le) ({metric}_bucket{{{r.window.sel}}})", ("le",))
    return sorted(float(le) for (le,) in les if le != "+Inf")


def bucket_around(bounds: list[float], value: float) -> tuple[float, float]:
    """The histogram bucket ``(lower, upper]`` an interpolated quantile lies in."""
    lower = 0.0
    for bound in bounds:
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, math.inf


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def routes(r: Reader) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    by = ("http_request_method", "http_route", "http_response_status_code")
    counts = r.delta(f"{HTTP}_count", by)
    quantiles = _quantiles(r, HTTP, ("http_route",))
    overall = _quantiles(r, HTTP, ())
    bounds = _bounds(r, HTTP)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (method, route, status), n in counts.items():
        if n <= 0:
            continue
        row = rows.setdefault(
            (method, route),
            {"method": method, "route": route, "requests": 0, "errors": 0, "statuses": {}},
        )
        row["requests"] += round(n)
        row["errors"] += round(n) if status.startswith("5") else 0
        row["statuses"][status] = row["statuses"].get(status, 0) + round(n)
    seconds = r.window.seconds
    for (_, route), row in rows.items():
        row["throughput_rps"] = row["requests"] / seconds
        row["error_rate"] = _ratio(row["errors"], row["requests"])
        row["success_rate"] = 1 - row["error_rate"] if row["error_rate"] is not None else None
        row["latency_seconds"] = quantiles.get((route,), {})
        p95 = row["latency_seconds"].get("p95")
        row["p95_bucket"] = list(bucket_around(bounds, p95)) if p95 is not None else None
    total = sum(row["requests"] for row in rows.values())
    errors = sum(row["errors"] for row in rows.values())
    totals = {
        "requests": total,
        "errors": errors,
        "throughput_rps": total / seconds,
        "error_rate": _ratio(errors, total),
        "success_rate": 1 - errors / total if total else None,
        "latency_seconds": overall.get((), {}),
    }
    return sorted(rows.values(), key=lambda x: (x["route"], x["method"])), totals


def models(r: Reader) -> list[dict[str, Any]]:
    w = r.window
    requests = r.delta("inferwatch_inference_requests_total", ("model", "outcome"))
    latency = _quantiles(r, INFERENCE, ("model",))
    queue = _quantiles(
        r, "inferwatch_inference_stage_duration_seconds", ("model",), 'stage="queue"'
    )
    loads = r.delta("inferwatch_model_load_duration_seconds_count", ("model",))
    load_sum = r.delta("inferwatch_model_load_duration_seconds_sum", ("model",))
    load_max = r.values(
        f"max by (model) (max_over_time(inferwatch_model_last_load_duration_seconds{{{w.sel}}}"
        f"[{w.range}]))",
        ("model",),
    )
    names = sorted({k[0] for k in requests} | {k[0] for k in latency} | {k[0] for k in loads})
    out = []
    for name in names:
        by_outcome = {o: round(n) for (m, o), n in requests.items() if m == name and n > 0}
        n_loads = round(loads.get((name,), 0))
        out.append(
            {
                "model": name,
                "inferences": sum(by_outcome.values()),
                "outcomes": by_outcome,
                "inference_seconds": latency.get((name,), {}),
                "queue_seconds": queue.get((name,), {}),
                "loads": n_loads,
                "load_seconds_avg": load_sum.get((name,), 0) / n_loads if n_loads else None,
                "load_seconds_max": load_max.get((name,)),
            }
        )
    return out


def _over_time(r: Reader, expr: str, by: tuple[str, ...]) -> dict[str, dict]:
    """avg and max over the window of a gauge-like expression (a subquery at 1 s steps)."""
    w = r.window
    labels = ", ".join(by)
    grouped = f"max by ({labels}) ({expr})" if by else f"max({expr})"
    avg = r.values(f"avg_over_time(({grouped})[{w.range}:1s])", by)
    top = r.values(f"max_over_time(({grouped})[{w.range}:1s])", by)
    return {"|".join(k) or "all": {"avg": avg.get(k), "max": top.get(k)} for k in top}


def resources(r: Reader) -> dict[str, Any]:
    w = r.window
    rss = "inferwatch_process_resident_memory_bytes"
    return {
        "cpu_usage": _over_time(r, "inferwatch_host_cpu_usage_ratio", ("instance",)),
        "memory_usage": _over_time(r, "instance:inferwatch_host_memory_usage:ratio", ("instance",)),
        "process_rss_bytes": _over_time(r, rss, ("instance",)),
        "gpu_utilization": _over_time(r, "inferwatch_gpu_utilization_ratio", ("gpu",)),
        "gpu_memory_usage": _over_time(r, "gpu:inferwatch_gpu_memory_usage:ratio", ("gpu",)),
        # The leak trend: the least-squares slope of RSS over the whole window.
        "rss_growth_bytes_per_second": {
            "|".join(k): v
            for k, v in r.values(
                f"max by (instance) (deriv({rss}[{w.range}]))", ("instance",)
            ).items()
        },
    }


def pools(r: Reader) -> list[dict[str, Any]]:
    w = r.window
    by = ("db_client_connection_pool_name",)
    usage = _over_time(r, f"job_pool:db_client_connection_usage:ratio{{{w.sel}}}", by)
    pending = _over_time(r, f"job_pool:db_client_connection_pending_requests:sum{{{w.sel}}}", by)
    timeouts = r.delta("db_client_connection_timeouts_total", by)
    waits = r.delta("db_client_connection_wait_time_seconds_count", by)
    wait_sum = r.delta("db_client_connection_wait_time_seconds_sum", by)
    wait_q = _quantiles(r, "db_client_connection_wait_time_seconds", by)
    out = []
    for name in sorted(usage):
        key = (name,)
        out.append(
            {
                "pool": name,
                "usage": usage[name],
                "pending": pending.get(name, {}),
                "timeouts": round(timeouts.get(key, 0)),
                "waits": round(waits.get(key, 0)),
                "wait_seconds_avg": _ratio(wait_sum.get(key, 0), waits.get(key, 0)),
                "wait_seconds": wait_q.get(key, {}),
            }
        )
    return out


def caches(r: Reader) -> list[dict[str, Any]]:
    gets = r.delta("inferwatch_cache_gets_total", ("cache", "result"))
    out = []
    for name in sorted({c for c, _ in gets}):
        total = sum(n for (c, _), n in gets.items() if c == name)
        hits = gets.get((name, "hit"), 0)
        out.append(
            {
                "cache": name,
                "gets": round(total),
                "hits": round(hits),
                "hit_ratio": _ratio(hits, total),
            }
        )
    return out


def websocket(r: Reader) -> dict[str, Any]:
    attempts = r.delta("websocket_server_connection_attempts_total", ("outcome",))
    closes = r.delta("websocket_server_connections_closed_total", ("close_code",))
    total = sum(attempts.values())
    accepted = attempts.get(("accepted",), 0)
    return {
        "attempts": round(total),
        "accepted": round(accepted),
        "success_ratio": _ratio(accepted, total),
        "outcomes": {k[0]: round(v) for k, v in attempts.items() if v > 0},
        "close_codes": {k[0]: round(v) for k, v in closes.items() if v > 0},
    }


def queue(r: Reader) -> dict[str, Any]:
    w = r.window
    depth = _over_time(r, f"sum(inferwatch_queue_depth{{{w.sel}}})", ())
    queued = r.delta("inferwatch_inference_stage_duration_seconds_sum", (), 'stage="queue"')
    busy = r.delta(f"{INFERENCE}_sum", ())
    return {
        "depth": depth.get("all", {}),
        "queue_seconds_total": queued.get((), 0.0),
        "inference_seconds_total": busy.get((), 0.0),
        "queue_share": _ratio(queued.get((), 0.0), busy.get((), 0.0)),
    }


def collect(prometheus_url: str, window: Window, *, quiet: bool = False) -> dict[str, Any]:
    """Every figure of the report, without the analysis (see :mod:`.analysis`)."""
    r = Reader(Prometheus(prometheus_url), window, quiet=quiet)
    route_rows, totals = routes(r)
    figures = {
        "window": {
            "start": window.start,
            "end": window.end,
            "seconds": window.seconds,
            "job": window.job,
        },
        "totals": totals,
        "routes": route_rows,
        "models": models(r),
        "resources": resources(r),
        "pools": pools(r),
        "caches": caches(r),
        "websocket": websocket(r),
        "queue": queue(r),
        "alerts": r.alerts(step=max(1.0, window.seconds / 500)),
    }
    figures["memory_leak"] = {
        "rss_growth_bytes_per_second": figures["resources"]["rss_growth_bytes_per_second"],
    }
    return figures
