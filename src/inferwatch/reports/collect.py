"""Gather a window's figures from Prometheus into one plain, JSON-ready mapping.

Counts are exact counter deltas; percentiles come from the histogram buckets' increase over
the whole window evaluated at its end, so they compare with a load generator's own
percentiles over the same run (not with a 5-minute rolling P95).
"""

from __future__ import annotations

import math
from typing import Any

from inferwatch.alerts.promql import ERROR_STATUS, ERROR_TYPE_SET, selector
from inferwatch.alerts.signals import HOST_COMPONENTS, SATURATION
from inferwatch.reports import recovery, timeline
from inferwatch.reports.query import Reader, Window
from inferwatch.stack.prometheus_api import Prometheus

QUANTILES = (0.5, 0.9, 0.95, 0.99)
HTTP = "http_server_request_duration_seconds"
INFERENCE = "inferwatch_inference_request_duration_seconds"
CLIENT = "http_client_request_duration_seconds"
OPERATION = "db_client_operation_duration_seconds"
MEMORY_INCREASE = "inferwatch_job_memory_increase_bytes"
GIB = 2**30


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


def db_operations(r: Reader) -> list[dict[str, Any]]:
    """Database and Redis commands per pool; SQL and Redis share the histogram and are told
    apart by ``db_system_name``."""
    by = ("db_system_name", "db_client_connection_pool_name")
    counts = r.delta(f"{OPERATION}_count", by)
    quantiles = _quantiles(r, OPERATION, by)
    return [
        {
            "system": system,
            "pool": pool,
            "operations": round(n),
            "seconds": quantiles.get((system, pool), {}),
        }
        for (system, pool), n in sorted(counts.items())
        if n > 0
    ]


def _by_first(found: dict[tuple[str, ...], float]) -> dict[str, dict[str, int]]:
    """``{(a, b): n}`` -> ``{a: {b: n}}``, whole counts, zeros left out."""
    out: dict[str, dict[str, int]] = {}
    for (first, second), n in found.items():
        if round(n) > 0:
            out.setdefault(first, {})[second] = round(n)
    return out


def upstream(r: Reader) -> list[dict[str, Any]]:
    """Each dependency: calls by outcome, retries by cause, attempts, the retry recovery rate
    and its circuit breaker (openings, recoveries, their mean duration: an MTTR)."""
    w = r.window
    outcomes = _by_first(r.delta("inferwatch_upstream_calls_total", ("peer", "outcome")))
    causes = _by_first(r.delta("inferwatch_upstream_retries_total", ("peer", "error_type")))
    attempts = _by_first(r.delta(f"{CLIENT}_count", ("peer", "error_type")))
    latency = _quantiles(r, CLIENT, ("peer",))
    entered = _by_first(r.delta("inferwatch_upstream_circuit_transitions_total", ("peer", "state")))
    outage_sum = r.delta("inferwatch_upstream_circuit_recovery_seconds_sum", ("peer",))
    outage_count = r.delta("inferwatch_upstream_circuit_recovery_seconds_count", ("peer",))
    not_closed = r.values(
        f'sum by (peer) (inferwatch_upstream_circuit_state{{{w.sel}, state!="closed"}})', ("peer",)
    )
    peers = sorted(set(outcomes) | set(attempts) | {k[0] for k in not_closed})
    out = []
    for peer in peers:
        calls = outcomes.get(peer, {})
        first_failed = calls.get("recovered", 0) + calls.get("failed", 0)
        recoveries = round(outage_count.get((peer,), 0))
        tried = attempts.get(peer, {})
        out.append(
            {
                "peer": peer,
                "calls": sum(calls.values()),
                "outcomes": calls,
                "retries": sum(causes.get(peer, {}).values()),
                "retry_causes": causes.get(peer, {}),
                "attempts": sum(tried.values()),
                "failed_attempts": sum(n for cause, n in tried.items() if cause),
                "attempt_seconds": latency.get((peer,), {}),
                "recovery_rate": _ratio(calls.get("recovered", 0), first_failed),
                "breaker": {
                    "opened": entered.get(peer, {}).get("open", 0),
                    "recoveries": recoveries,
                    "mttr_seconds": _ratio(outage_sum.get((peer,), 0.0), recoveries),
                    "not_closed_at_end": round(not_closed.get((peer,), 0)),
                },
            }
        )
    return out


def jobs(r: Reader) -> list[dict[str, Any]]:
    """Jobs per kind: outcomes, steps and the resident memory each added."""
    outcomes = _by_first(r.delta("inferwatch_jobs_total", ("kind", "outcome")))
    steps = r.delta("inferwatch_job_steps_total", ("kind", "step", "outcome"))
    added = _quantiles(r, MEMORY_INCREASE, ("kind",))
    added_sum = r.delta(f"{MEMORY_INCREASE}_sum", ("kind",))
    added_count = r.delta(f"{MEMORY_INCREASE}_count", ("kind",))
    out = []
    for kind in sorted(outcomes):
        by_step: dict[str, dict[str, int]] = {}
        for (k, step, outcome), n in steps.items():
            if k == kind and round(n) > 0:
                by_step.setdefault(step, {})[outcome] = round(n)
        out.append(
            {
                "kind": kind,
                "jobs": sum(outcomes[kind].values()),
                "outcomes": outcomes[kind],
                "steps": by_step,
                "memory_increase_bytes": added.get((kind,), {}),
                "memory_increase_bytes_avg": _ratio(
                    added_sum.get((kind,), 0.0), added_count.get((kind,), 0.0)
                ),
            }
        )
    return out


def job_memory_growth(r: Reader) -> dict[str, float]:
    """Per instance, the highest memory growth over the last jobs seen in the window."""
    w = r.window
    expr = (
        f"max by (instance) (max_over_time(inferwatch_job_memory_growth_ratio{{{w.sel}}}"
        f"[{w.range}]))"
    )
    return {k[0]: v for k, v in r.values(expr, ("instance",)).items()}


def cost_quantities(r: Reader) -> dict[str, Any]:
    """Resource-hours the service used in the window (what :mod:`.cost` prices)."""
    w = r.window
    hours = w.seconds / 3600
    service = f"group by (job, instance) (http_server_active_requests{{{w.sel}}})"
    cpu = r.delta("process_cpu_seconds_total", (), restrict=f"and on (job, instance) {service}")
    rss = _over_time(r, f"sum(instance:process_resident_memory_bytes:sum{{{w.sel}}})", ())
    gpus = _over_time(r, "count(inferwatch_gpu_memory_total_bytes)", ())
    instances = _over_time(r, f"count({service})", ())
    jobs = r.delta("inferwatch_jobs_total", ())

    def hours_of(found: dict[str, dict], scale: float = 1.0) -> float | None:
        average = found.get("all", {}).get("avg")
        return None if average is None else average / scale * hours

    core_seconds = cpu.get(())
    return {
        "hours": {
            "cpu": None if core_seconds is None else core_seconds / 3600,
            "memory_gib": hours_of(rss, GIB),
            "gpu": hours_of(gpus),
            "instance": hours_of(instances),
        },
        "jobs": round(jobs.get((), 0.0)),
    }


def error_faults(r: Reader, threshold: float | None) -> dict[str, Any]:
    """Stretches of scrapes of each job's instances in which more than ``threshold`` of the
    requests failed, and the mean time they took to recover (see :mod:`.recovery`)."""
    if threshold is None:
        return {"threshold": None, "jobs": {}}
    w = r.window
    # Fine enough to see every scrape (the times used are the scrapes' own), within the
    # points a range query may return.
    step = max(0.1, w.seconds / 10000)
    target = ("job", "instance")
    count = f"{HTTP}_count"
    failed = (
        f"sum by (job, instance) ({selector(count, [w.sel, ERROR_TYPE_SET])}"
        f" or {selector(count, [w.sel, ERROR_STATUS])})"
    )
    queried = [
        r.series(f"max by (job, instance) (timestamp({count}{{{w.sel}}}))", step),
        r.series(failed, step),
        r.series(f"sum by (job, instance) ({count}{{{w.sel}}})", step),
    ]
    steps: list[dict[tuple[str, ...], dict[float, float]]] = [
        {
            tuple(s["metric"].get(label, "") for label in target): {
                float(t): float(v) for t, v in s["values"]
            }
            for s in result
        }
        for result in queried
    ]
    scraped, failures, totals = steps
    per_job: dict[str, list[dict[str, Any]]] = {}
    for key, times in scraped.items():
        shares = recovery.failed_shares(times, failures.get(key, {}), totals.get(key, {}))
        per_job.setdefault(key[0], []).extend(recovery.scrape_faults(shares, threshold))
    found: dict[str, Any] = {}
    for job, instance_episodes in sorted(per_job.items()):
        episodes = recovery.merge(instance_episodes)
        if episodes:
            found[job] = {
                "episodes": episodes,
                "mttr_seconds": recovery.mean_recovery(episodes),
            }
    return {"threshold": threshold, "step_seconds": step, "jobs": found}


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


def saturation(r: Reader) -> list[dict[str, Any]]:
    """Each component's recorded saturation score (what the overview's "Likely bottleneck
    now" panel shows) over the window: its highest and its average, per resource. The
    service's components by the window's jobs, the host's CPU and GPUs whatever their job,
    as the panel selects them."""
    w = r.window
    chosen = (f"{SATURATION}{{{w.sel}}}", f"{SATURATION}{{{HOST_COMPONENTS}}}")
    by = ("component", "resource", "job")

    def over(function: str) -> dict[tuple[str, ...], float]:
        return r.values(" or ".join(f"{function}({s}[{w.range}])" for s in chosen), by)

    top, average = over("max_over_time"), over("avg_over_time")
    return [
        {
            "component": component,
            "resource": resource,
            "job": job,
            "score_max": value,
            "score_avg": average.get((component, resource, job)),
        }
        for (component, resource, job), value in sorted(top.items())
    ]


def collect(
    prometheus_url: str,
    window: Window,
    *,
    quiet: bool = False,
    fault_ratio: float | None = None,
) -> dict[str, Any]:
    """Every figure of the report, without the analysis (see :mod:`.build`); an error ratio
    above ``fault_ratio`` is a fault whose recovery is timed."""
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
        "db_operations": db_operations(r),
        "caches": caches(r),
        "websocket": websocket(r),
        "queue": queue(r),
        "alerts": r.alerts(step=max(1.0, window.seconds / 500)),
    }
    figures["memory_leak"] = {
        "rss_growth_bytes_per_second": figures["resources"]["rss_growth_bytes_per_second"],
        "job_memory_growth": job_memory_growth(r),
    }
    figures["upstream"] = upstream(r)
    figures["jobs"] = jobs(r)
    figures["cost"] = cost_quantities(r)
    figures["error_faults"] = error_faults(r, fault_ratio)
    figures["trends"] = timeline.resource_trends(r)
    figures["scalability"] = timeline.scalability(r)
    figures["saturation"] = saturation(r)
    return figures
