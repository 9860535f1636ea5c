"""Pools and caches: database and Redis connection pools, application caches, Redis server."""

from __future__ import annotations

from inferwatch.alerts.thresholds import Thresholds
from inferwatch.dashboards import panels as p
from inferwatch.dashboards.model import DashboardSpec, Query
from inferwatch.dashboards.thresholds import steps

UID = "inferwatch-pools"
POOL_BY = ("db_system_name", "db_client_connection_pool_name")
POOL_LEGEND = "{{db_system_name}} {{db_client_connection_pool_name}}"
POOL_SEL = p.sel(p.JOB)
RAW = (p.JOB, p.INSTANCE)
REDIS = 'db_system_name="redis"'
USED = 'db_client_connection_state="used"'
NOT_REDIS = 'db_system_name!="redis"'
OP_P90 = "job_pool:db_client_operation_duration_seconds:p90_5m"
HIT_RATIO = "job_cache:inferwatch_cache_hit:ratio_rate5m"
OVERRIDES = " Levels shown are the thresholds file's defaults; overrides there apply per pool."


def _by_pool(expr: str) -> str:
    return f"sum by ({', '.join(POOL_BY)}) ({expr})"


def build(t: Thresholds) -> DashboardSpec:
    usage = (
        p.bargauge(
            "Pool usage (used / max)",
            "Connections checked out over the most the pool allows, per pool (recorded: what "
            "DBPoolHighUsage reads); amber and red at its levels." + OVERRIDES,
            "percentunit",
            Query(
                f"max by ({', '.join(POOL_BY)}) (job_pool:db_client_connection_usage:ratio"
                f"{POOL_SEL})",
                POOL_LEGEND,
            ),
            steps=steps(t, "db_pool_usage"),
            max=1,
            width=8,
        ),
        p.timeseries(
            "Connections used vs max",
            "Connections checked out and idle per pool, against the pool's maximum.",
            "short",
            Query(
                _by_pool(f"db_client_connections_usage{p.sel(*RAW, USED)}"), "used " + POOL_LEGEND
            ),
            Query(_by_pool(f"db_client_connection_max{p.sel(*RAW)}"), "max " + POOL_LEGEND),
            width=8,
        ),
        p.timeseries(
            "Waiting for a connection",
            "Requests waiting for a free connection right now, per pool: any sustained value "
            "means the pool is too small or connections are held too long.",
            "short",
            Query(
                _by_pool(f"job_pool:db_client_connection_pending_requests:sum{POOL_SEL}"),
                POOL_LEGEND,
            ),
            width=8,
        ),
    )
    waits = (
        p.timeseries(
            "Acquire wait P90",
            "P90 time to obtain a connection from the pool, waiting and connecting included.",
            "s",
            Query(
                _by_pool(f"job_pool:db_client_connection_wait_time_seconds:p90_5m{POOL_SEL}"),
                POOL_LEGEND,
            ),
            width=8,
        ),
        p.timeseries(
            "Acquire timeouts (5m)",
            "Connection requests that gave up over 5 minutes (recorded: what "
            "DBPoolAcquireTimeouts reads); any timeout is amber." + OVERRIDES,
            "short",
            Query(
                _by_pool(f"job_pool:db_client_connection_timeouts:increase5m{POOL_SEL}"),
                POOL_LEGEND,
            ),
            steps=steps(t, "db_pool_timeouts"),
            width=8,
        ),
        p.timeseries(
            "SQL statement time P90",
            "P90 duration of SQL statements per pool (recorded: what DBSlowQueries reads)."
            + OVERRIDES,
            "s",
            Query(_by_pool(f"{OP_P90}{p.sel(p.JOB, NOT_REDIS)}"), POOL_LEGEND),
            steps=steps(t, "db_query_p90"),
            width=8,
        ),
    )
    redis = (
        p.timeseries(
            "Redis command latency P90",
            "P90 duration of Redis commands per pool (recorded: what RedisSlowOperations "
            "reads), and per command name.",
            "s",
            Query(_by_pool(f"{OP_P90}{p.sel(p.JOB, REDIS)}"), POOL_LEGEND),
            Query(
                p.quantile(
                    "0.9",
                    "db_client_operation_duration_seconds",
                    ("db_operation_name",),
                    *RAW,
                    REDIS,
                ),
                "{{db_operation_name}}",
            ),
            steps=steps(t, "redis_operation_p90"),
        ),
        p.timeseries(
            "Redis server keyspace hit ratio",
            "Share of key lookups the Redis server found (keyspace hits over hits and misses, "
            "5m), from the exporter's INFO scrape (`--redis-url`): the server-side view of every "
            "client.",
            "percentunit",
            Query(
                "instance:inferwatch_redis_keyspace_hit:ratio_rate5m" + p.sel(*RAW), "{{instance}}"
            ),
            max=1,
        ),
    )
    caches = (
        p.timeseries(
            "Cache hit ratio",
            "Share of lookups answered from the application cache, per cache (5m, recorded: "
            "what CacheLowHitRate reads); amber and red below its levels.",
            "percentunit",
            Query(f"min by (cache) ({HIT_RATIO}{p.sel(p.JOB)})", "{{cache}}"),
            steps=steps(t, "cache_hit_rate"),
            max=1,
            width=8,
        ),
        p.timeseries(
            "Cost of a miss",
            "P50 and P95 time to compute a value that was not cached: what every miss costs.",
            "s",
            *p.quantile_queries(
                "inferwatch_cache_load_duration_seconds",
                ("cache",),
                "{{cache}}",
                *RAW,
                which=("p50", "p95"),
            ),
            width=8,
        ),
        p.timeseries(
            "Cache lookups by result",
            "Cache lookups per second by result (hit or miss), per cache.",
            "ops",
            Query(
                p.sum_rate("inferwatch_cache_gets_total", ("cache", "result"), *RAW),
                "{{cache}} {{result}}",
            ),
            width=8,
        ),
    )
    upstream = _upstream(t)
    postgres = (
        p.timeseries(
            "PostgreSQL server connections",
            "Connections to the PostgreSQL server by state, from every client, against its "
            "max_connections (the exporter's view, `--postgres-url`).",
            "short",
            Query(
                f"sum by (instance, state) (inferwatch_postgres_connections{p.sel(*RAW)})",
                "{{state}}",
            ),
            Query(
                f"max by (instance) (inferwatch_postgres_max_connections{p.sel(*RAW)})",
                "max_connections",
            ),
            width=24,
        ),
    )
    return DashboardSpec(
        uid=UID,
        title="inferwatch / Pools and caches",
        description="Is a pool or a cache the bottleneck: database and Redis pools, caches.",
        variables=(
            p.DATASOURCE,
            # Pools, caches and the exporter's server views come from different jobs.
            p.job_var("up"),
            p.instance_var("up"),
        ),
        rows=(usage, waits, redis, caches, upstream, postgres),
    )


def _upstream(t: Thresholds) -> tuple:
    """The services the backend calls (TTS, LLM, ...), by the name it gives each (peer)."""
    peer = p.sel(p.JOB)
    return (
        p.timeseries(
            "Dependency calls by outcome",
            "Calls to each dependency per second through its retry policy, by how they ended: "
            "success at the first attempt, recovered by a retry, failed, rejected by the open "
            "circuit breaker, client_error, cancelled.",
            "ops",
            Query(
                p.sum_rate("inferwatch_upstream_calls_total", ("peer", "outcome"), p.JOB),
                "{{peer}} {{outcome}}",
            ),
            width=6,
        ),
        p.timeseries(
            "Retry recovery rate",
            "Of the calls whose first attempt failed, the share a retry saved, per dependency "
            "(5m, recorded: what UpstreamLowRetryRecovery reads); amber below its level.",
            "percentunit",
            Query(
                f"min by (peer) (job_peer:inferwatch_upstream_retry_recovery:ratio_rate5m{peer})",
                "{{peer}}",
            ),
            steps=steps(t, "upstream_retry_recovery"),
            max=1,
            width=6,
            needs=p.fault("upstream_failure_rate", 0.3),
        ),
        p.timeseries(
            "Circuit breakers not closed",
            "Breakers of each dependency open or half-open right now, all workers (recorded: "
            "what UpstreamCircuitOpen reads); any is amber.",
            "short",
            Query(
                f"max by (peer) (job_peer:inferwatch_upstream_circuit_open:sum{peer})", "{{peer}}"
            ),
            steps=steps(t, "upstream_circuit_open"),
            width=6,
        ),
        p.timeseries(
            "Dependency attempt latency P95",
            "P95 duration of single HTTP attempts to each dependency, up to the response "
            "headers (http_client_request_duration_seconds), retries counted one by one.",
            "s",
            Query(
                f"max by (peer) (job_peer:http_client_request_duration_seconds:p95_5m{peer})",
                "P95 {{peer}}",
            ),
            width=6,
        ),
    )
