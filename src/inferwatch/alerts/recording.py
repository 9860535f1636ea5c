"""Recording rules: the ratios and quantiles that alerts and dashboards share.

Names follow ``level:metric:operation``. Each alert reads one recorded series, so the
threshold comparison stays trivial and a dashboard panel shows exactly what the alert saw.
"""

from __future__ import annotations

from typing import Any

from inferwatch.alerts import promql
from inferwatch.alerts.promql import failed_requests, le, quantile, sum_rate
from inferwatch.alerts.signals import GPU, HOST, HTTP, PEER, POOL
from inferwatch.alerts.thresholds import Thresholds

Rule = dict[str, str]
HTTP_DURATION = "http_server_request_duration_seconds"
QUANTILES = (("p50", "0.5"), ("p90", "0.9"), ("p95", "0.95"), ("p99", "0.99"))


def _rule(record: str, expr: str) -> Rule:
    return {"record": record, "expr": expr}


def _http() -> list[Rule]:
    count = f"{HTTP_DURATION}_count"
    requests = "job_route:http_server_requests:rate5m"
    errors = "job_route:http_server_request_errors:rate5m"
    rules = [
        _rule(requests, sum_rate(count, HTTP, "5m")),
        # A failed request has a 5xx status or an error_type (see promql.failed_requests).
        # `or ... * 0`: a route that never failed has no such series, yet its error rate is 0.
        _rule(errors, f"{failed_requests(count, HTTP, '5m')} or {requests} * 0"),
        _rule("job_route:http_server_request_errors:ratio_rate5m", f"{errors} / {requests}"),
    ]
    for name, q in QUANTILES:
        rules.append(
            _rule(f"job_route:{HTTP_DURATION}:{name}_5m", quantile(q, HTTP_DURATION, HTTP, "5m"))
        )
    attempts = "job_route:websocket_server_connection_attempts:rate5m"
    ws = "websocket_server_connection_attempts_total"
    accepted = sum_rate(ws, HTTP, "5m", ['outcome="accepted"'])
    rules += [
        _rule(attempts, sum_rate(ws, HTTP, "5m")),
        _rule(
            "job_route:websocket_server_connection_success:ratio_rate5m",
            f"({accepted} or {attempts} * 0) / {attempts}",
        ),
    ]
    return rules


def _slo(thresholds: Thresholds) -> list[Rule]:
    """Per-job SLI ratios over every burn-rate window."""
    count = f"{HTTP_DURATION}_count"
    good_bucket = f'le="{le(thresholds.slo.latency_threshold)}"'
    rules = [
        _rule("job:http_server_requests:rate5m", sum_rate(count, ["job"], "5m")),
        _rule("job:http_server_request_errors:rate5m", failed_requests(count, ["job"], "5m")),
    ]
    for seconds in thresholds.slo.windows:
        w = promql.window(seconds)
        total = sum_rate(count, ["job"], w)
        rules.append(
            _rule(
                f"job:http_server_request_errors:ratio_rate{w}",
                f"({failed_requests(count, ['job'], w)} or {total} * 0) / {total}",
            )
        )
        good = sum_rate(f"{HTTP_DURATION}_bucket", ["job"], w, [good_bucket])
        rules.append(_rule(f"job:http_server_request_slow:ratio_rate{w}", f"1 - {good} / {total}"))
    return rules


def _pools() -> list[Rule]:
    op = "db_client_operation_duration_seconds"
    wait = "db_client_connection_wait_time_seconds"
    gets = "job_cache:inferwatch_cache_gets:rate5m"
    hits = 'result="hit"'
    redis_hits = "sum by (job, instance) (rate(inferwatch_redis_keyspace_hits_total[5m]))"
    redis_misses = "sum by (job, instance) (rate(inferwatch_redis_keyspace_misses_total[5m]))"
    used = 'db_client_connections_usage{db_client_connection_state="used"}'
    return [
        _rule(
            "job_pool:db_client_connection_usage:ratio",
            f"sum {promql.by(POOL)} ({used}) / sum {promql.by(POOL)} (db_client_connection_max)",
        ),
        _rule(
            "job_pool:db_client_connection_pending_requests:sum",
            f"sum {promql.by(POOL)} (db_client_connection_pending_requests)",
        ),
        _rule(
            "job_pool:db_client_connection_timeouts:increase5m",
            f"sum {promql.by(POOL)} (increase(db_client_connection_timeouts_total[5m]))",
        ),
        _rule(f"job_pool:{wait}:p90_5m", quantile("0.9", wait, POOL, "5m")),
        # SQL and Redis share the histogram; db_system_name tells them apart downstream.
        _rule(f"job_pool:{op}:p90_5m", quantile("0.9", op, POOL, "5m")),
        _rule(gets, sum_rate("inferwatch_cache_gets_total", ["job", "cache"], "5m")),
        _rule(
            "job_cache:inferwatch_cache_hit:ratio_rate5m",
            f"({sum_rate('inferwatch_cache_gets_total', ['job', 'cache'], '5m', [hits])}"
            f" or {gets} * 0) / {gets}",
        ),
        _rule(
            "instance:inferwatch_redis_keyspace_hit:ratio_rate5m",
            f"{redis_hits} / ({redis_hits} + {redis_misses})",
        ),
    ]


def _models() -> list[Rule]:
    load = "inferwatch_model_load_duration_seconds"
    return [
        # Loads are rare: a 1h window keeps one slow load visible long enough to act on.
        _rule(
            f"job_model:{load}:p95_1h",
            quantile("0.95", load, ["job", "model"], "1h", ['outcome="success"']),
        ),
        _rule(
            "job_model:inferwatch_model_load_failures:increase15m",
            "sum by (job, model, reason) (increase(inferwatch_model_load_failures_total[15m]))",
        ),
    ]


def _resources() -> list[Rule]:
    cpu = "inferwatch_host_cpu_seconds_total"
    idle = 'mode=~"idle|iowait"'
    gpu = promql.by(GPU)
    return [
        _rule(
            "instance:inferwatch_host_cpu_usage:ratio_rate5m",
            f"1 - {sum_rate(cpu, HOST, '5m', [idle])} / {sum_rate(cpu, HOST, '5m')}",
        ),
        _rule(
            "instance:inferwatch_host_memory_usage:ratio",
            f"1 - sum {promql.by(HOST)} (inferwatch_host_memory_available_bytes)"
            f" / sum {promql.by(HOST)} (inferwatch_host_memory_total_bytes)",
        ),
        # The service's own processes (prometheus_client's process collector; inferwatch's
        # multiprocess mode sums it over the live workers), not the exporter's: only targets
        # that serve inferwatch's HTTP metrics, so Prometheus, Alertmanager or any other
        # process of the cluster is never judged.
        _rule(
            "instance:process_resident_memory_bytes:sum",
            f"sum {promql.by(HOST)} (process_resident_memory_bytes"
            f" and on (job, instance) group {promql.by(HOST)} (http_server_active_requests))",
        ),
        # A 30m least-squares slope rides out a one-off allocation; the alert's for: then
        # asks the growth to persist.
        _rule(
            "instance:process_resident_memory_bytes:deriv30m",
            "deriv(instance:process_resident_memory_bytes:sum[30m])",
        ),
        _rule(
            "gpu:inferwatch_gpu_utilization_ratio:avg5m",
            f"avg {gpu} (avg_over_time(inferwatch_gpu_utilization_ratio[5m]))",
        ),
        _rule(
            "gpu:inferwatch_gpu_memory_usage:ratio",
            f"sum {gpu} (inferwatch_gpu_memory_used_bytes)"
            f" / sum {gpu} (inferwatch_gpu_memory_total_bytes)",
        ),
        _rule(
            "gpu:inferwatch_gpu_temperature_celsius:max",
            f"max {gpu} (inferwatch_gpu_temperature_celsius)",
        ),
        _rule(
            "gpu:inferwatch_gpu_xid_errors:increase15m",
            f"sum {gpu} (increase(inferwatch_gpu_xid_errors_total[15m]))",
        ),
        _rule(
            "gpu:inferwatch_gpu_ecc_errors:increase15m",
            f"sum {promql.by((*GPU, 'type'))} (increase(inferwatch_gpu_ecc_errors_total[15m]))",
        ),
    ]


UPSTREAM_CALLS = "inferwatch_upstream_calls_total"
CLIENT_DURATION = "http_client_request_duration_seconds"
RECOVERY = "inferwatch_upstream_circuit_recovery_seconds"
RECOVERED = 'outcome="recovered"'
INCOMPLETE = 'outcome=~"partial|failed"'


def _upstream() -> list[Rule]:
    """Dependencies: attempts and their failures, the share of failed first attempts a retry
    saved, breakers not closed, and how long an open breaker took to close (an MTTR)."""
    first_failed = "job_peer:inferwatch_upstream_first_attempt_failures:rate5m"
    attempts = "job_peer:http_client_requests:rate5m"
    count = f"{CLIENT_DURATION}_count"
    by = promql.by(PEER)
    return [
        _rule(attempts, sum_rate(count, PEER, "5m")),
        _rule(
            "job_peer:http_client_request_errors:ratio_rate5m",
            f"({sum_rate(count, PEER, '5m', [promql.ERROR_TYPE_SET])} or {attempts} * 0)"
            f" / {attempts}",
        ),
        _rule(f"job_peer:{CLIENT_DURATION}:p95_5m", quantile("0.95", CLIENT_DURATION, PEER, "5m")),
        _rule("job_peer:inferwatch_upstream_calls:rate5m", sum_rate(UPSTREAM_CALLS, PEER, "5m")),
        # A call whose first attempt failed either recovered on a retry or failed; calls the
        # open breaker refused outright were never attempted, so they are in neither.
        _rule(first_failed, sum_rate(UPSTREAM_CALLS, PEER, "5m", ['outcome=~"recovered|failed"'])),
        _rule(
            "job_peer:inferwatch_upstream_retry_recovery:ratio_rate5m",
            f"({sum_rate(UPSTREAM_CALLS, PEER, '5m', [RECOVERED])}"
            f" or {first_failed} * 0) / {first_failed}",
        ),
        _rule(
            "job_peer:inferwatch_upstream_circuit_open:sum",
            f'sum {by} (inferwatch_upstream_circuit_state{{state!="closed"}})',
        ),
        # 1h: outages are rare; one recovery stays visible long enough to read.
        _rule(
            f"job_peer:{RECOVERY}:mean1h",
            f"{sum_rate(RECOVERY + '_sum', PEER, '1h')}"
            f" / {sum_rate(RECOVERY + '_count', PEER, '1h')}",
        ),
    ]


JOBS = "inferwatch_jobs_total"
SERVICE = "group by (job, instance) (http_server_active_requests)"  # serves inferwatch's HTTP


def _jobs() -> list[Rule]:
    kind = ("job", "kind")
    ended = "job_kind:inferwatch_jobs:rate5m"
    return [
        _rule(ended, sum_rate(JOBS, kind, "5m")),
        # partial (some steps failed) and failed jobs, of all that ended
        _rule(
            "job_kind:inferwatch_jobs_incomplete:ratio_rate5m",
            f"({sum_rate(JOBS, kind, '5m', [INCOMPLETE])} or {ended} * 0) / {ended}",
        ),
        _rule(
            "job_kind:inferwatch_job_memory_increase_bytes:p95_1h",
            quantile("0.95", "inferwatch_job_memory_increase_bytes", kind, "1h"),
        ),
        _rule(
            "instance:inferwatch_job_memory_growth:ratio",
            f"max {promql.by(HOST)} (inferwatch_job_memory_growth_ratio)",
        ),
    ]


def cost_terms(thresholds: Thresholds) -> dict[str, str]:
    """resource -> PromQL for what it costs each service job per second, over 1h, for the
    resources with a price; the same quantities the report prices over its window."""
    gib = 2**30
    quantities = {
        # cores the service's processes kept busy
        "cpu": "sum by (job) (rate(process_cpu_seconds_total[1h])"
        f" and on (job, instance) {SERVICE})",
        # GiB of their resident memory, averaged
        "memory_gib": "sum by (job)"
        f" (avg_over_time(instance:process_resident_memory_bytes:sum[1h])) / {gib}",
        # every GPU the exporter reports, charged to each service
        "gpu": "group by (job) (http_server_active_requests)"
        " * scalar(count(inferwatch_gpu_memory_total_bytes) or vector(0))",
        # processes of the service that are scraped
        "instance": f"count by (job) ({SERVICE})",
    }
    return {
        resource: f"({quantities[resource]}) * {promql.number(price)} / 3600"
        for resource, price in thresholds.cost.priced().items()
    }


def _cost(thresholds: Thresholds) -> list[Rule]:
    terms = cost_terms(thresholds)
    if not terms:
        return []
    by_resource = " or ".join(
        f'label_replace({expr}, "resource", "{resource}", "", "")'
        for resource, expr in terms.items()
    )
    cost = "job:inferwatch_cost:rate1h"
    jobs = "job:inferwatch_jobs:rate1h"
    return [
        _rule("job_resource:inferwatch_cost:rate1h", by_resource),
        _rule(cost, "sum by (job) (job_resource:inferwatch_cost:rate1h)"),
        _rule(jobs, sum_rate(JOBS, ["job"], "1h")),
        _rule("job:inferwatch_cost_per_job:ratio_rate1h", f"{cost} / {jobs}"),
        _rule("job:inferwatch_cost_per_1000_jobs:ratio_rate1h", f"1000 * {cost} / {jobs}"),
    ]


def groups(thresholds: Thresholds) -> list[dict[str, Any]]:
    interval = promql.window(thresholds.settings.evaluation_interval)
    made = [
        ("inferwatch.http.rules", _http()),
        ("inferwatch.slo.rules", _slo(thresholds)),
        ("inferwatch.pools.rules", _pools()),
        ("inferwatch.models.rules", _models()),
        ("inferwatch.resources.rules", _resources()),
        ("inferwatch.upstream.rules", _upstream()),
        ("inferwatch.jobs.rules", _jobs()),
        ("inferwatch.cost.rules", _cost(thresholds)),
    ]
    return [{"name": name, "interval": interval, "rules": rules} for name, rules in made if rules]


def record_names(thresholds: Thresholds) -> list[str]:
    return [r["record"] for g in groups(thresholds) for r in g["rules"]]
