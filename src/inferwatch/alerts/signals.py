"""The catalogue of alerting signals: what each thresholds-file key measures and how.

A signal names the recording rule its alerts read, the labels that series carries (the ones
an override may match on), its unit and which direction is bad. Everything site-specific (the
numbers) lives in the thresholds file; everything about *what* is measured lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["duration", "ratio", "celsius", "byte_rate", "count", "state"]
Direction = Literal["above", "below"]

DASHBOARDS = {
    "overview": "inferwatch-overview",
    "models": "inferwatch-models",
    "resources": "inferwatch-resources",
    "pools": "inferwatch-pools",
    "streaming": "inferwatch-streaming",
}

HTTP = ("job", "http_route")
HOST = ("job", "instance")
POOL = ("job", "db_system_name", "db_client_connection_pool_name")
GPU = ("job", "instance", "gpu", "uuid")
PEER = ("job", "peer")  # a dependency the service calls, by the name the service gives it


@dataclass(frozen=True)
class Signal:
    key: str
    alert: str
    kind: Kind
    series: str  # the recording rule (or raw metric) the alert compares
    labels: tuple[str, ...]  # labels of that series once aggregated
    dashboard: str
    summary: str  # Go template; $labels are available
    what: str  # what the value is, for the description ("P95 latency")
    direction: Direction = "above"
    matchers: str = ""  # fixed matchers added to ``series``

    @property
    def dashboard_uid(self) -> str:
        return DASHBOARDS[self.dashboard]


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "api_latency_p95", "APIHighLatencyP95", "duration",
        "job_route:http_server_request_duration_seconds:p95_5m", HTTP, "overview",
        "Slow responses on {{ $labels.job }} {{ $labels.http_route }}", "P95 response time",
    ),
    Signal(
        "api_latency_p99", "APIHighLatencyP99", "duration",
        "job_route:http_server_request_duration_seconds:p99_5m", HTTP, "overview",
        "Slow tail responses on {{ $labels.job }} {{ $labels.http_route }}", "P99 response time",
    ),
    Signal(
        "api_error_rate", "APIHighErrorRate", "ratio",
        "job_route:http_server_request_errors:ratio_rate5m", HTTP, "overview",
        "Requests failing on {{ $labels.job }} {{ $labels.http_route }}", "Error rate",
    ),
    Signal(
        "websocket_success", "WebSocketLowSuccessRate", "ratio",
        "job_route:websocket_server_connection_success:ratio_rate5m", HTTP, "streaming",
        "WebSocket handshakes failing on {{ $labels.job }} {{ $labels.http_route }}",
        "WebSocket handshake success rate", direction="below",
    ),
    Signal(
        "cpu_usage", "HostHighCPUUsage", "ratio",
        "instance:inferwatch_host_cpu_usage:ratio_rate5m", HOST, "resources",
        "High CPU usage on {{ $labels.instance }}", "CPU usage",
    ),
    Signal(
        "memory_usage", "HostHighMemoryUsage", "ratio",
        "instance:inferwatch_host_memory_usage:ratio", HOST, "resources",
        "High memory usage on {{ $labels.instance }}", "Memory usage",
    ),
    Signal(
        "memory_leak", "ProcessMemoryLeakSuspected", "byte_rate",
        "instance:process_resident_memory_bytes:deriv30m", HOST, "resources",
        "Resident memory keeps growing on {{ $labels.job }} {{ $labels.instance }}",
        "Resident-memory growth of the service's processes over 30m",
    ),
    Signal(
        "db_pool_usage", "DBPoolHighUsage", "ratio",
        "job_pool:db_client_connection_usage:ratio", POOL, "pools",
        "Connection pool {{ $labels.db_client_connection_pool_name }} nearly exhausted",
        "Pool usage",
    ),
    Signal(
        "db_pool_timeouts", "DBPoolAcquireTimeouts", "count",
        "job_pool:db_client_connection_timeouts:increase5m", POOL, "pools",
        "Connection acquisitions timing out on pool "
        "{{ $labels.db_client_connection_pool_name }}",
        "Acquire timeouts in 5m",
    ),
    Signal(
        "db_query_p90", "DBSlowQueries", "duration",
        "job_pool:db_client_operation_duration_seconds:p90_5m", POOL, "pools",
        "Slow database queries on pool {{ $labels.db_client_connection_pool_name }}",
        "P90 query time", matchers='db_system_name!="redis"',
    ),
    Signal(
        "redis_operation_p90", "RedisSlowOperations", "duration",
        "job_pool:db_client_operation_duration_seconds:p90_5m", POOL, "pools",
        "Slow Redis commands on pool {{ $labels.db_client_connection_pool_name }}",
        "P90 Redis command time", matchers='db_system_name="redis"',
    ),
    Signal(
        "cache_hit_rate", "CacheLowHitRate", "ratio",
        "job_cache:inferwatch_cache_hit:ratio_rate5m", ("job", "cache"), "pools",
        "Cache {{ $labels.cache }} is missing", "Hit rate", direction="below",
    ),
    Signal(
        "model_load_duration", "ModelSlowInitialization", "duration",
        "job_model:inferwatch_model_load_duration_seconds:p95_1h", ("job", "model"), "models",
        "Model {{ $labels.model }} is slow to initialize", "P95 load time over 1h",
    ),
    Signal(
        "model_load_failures", "ModelLoadFailures", "count",
        "job_model:inferwatch_model_load_failures:increase15m", ("job", "model", "reason"),
        "models", "Model {{ $labels.model }} fails to load ({{ $labels.reason }})",
        "Failed loads in 15m",
    ),
    Signal(
        "gpu_utilization", "GPUHighUtilization", "ratio",
        "gpu:inferwatch_gpu_utilization_ratio:avg5m", GPU, "resources",
        "GPU {{ $labels.gpu }} on {{ $labels.instance }} saturated", "GPU utilization",
    ),
    Signal(
        "gpu_memory", "GPUHighMemoryUsage", "ratio",
        "gpu:inferwatch_gpu_memory_usage:ratio", GPU, "resources",
        "GPU {{ $labels.gpu }} on {{ $labels.instance }} running out of memory",
        "GPU memory usage",
    ),
    Signal(
        "gpu_temperature", "GPUHighTemperature", "celsius",
        "gpu:inferwatch_gpu_temperature_celsius:max", GPU, "resources",
        "GPU {{ $labels.gpu }} on {{ $labels.instance }} running hot", "GPU temperature",
    ),
    Signal(
        "gpu_xid_errors", "GPUXidErrors", "count",
        "gpu:inferwatch_gpu_xid_errors:increase15m", GPU, "resources",
        "GPU {{ $labels.gpu }} on {{ $labels.instance }} reports XID errors",
        "XID errors in 15m",
    ),
    Signal(
        "gpu_ecc_corrected", "GPUCorrectedECCErrors", "count",
        "gpu:inferwatch_gpu_ecc_errors:increase15m", (*GPU, "type"), "resources",
        "GPU {{ $labels.gpu }} on {{ $labels.instance }} corrects memory errors",
        "Corrected ECC errors in 15m", matchers='type="corrected"',
    ),
    Signal(
        "gpu_ecc_uncorrected", "GPUUncorrectedECCErrors", "count",
        "gpu:inferwatch_gpu_ecc_errors:increase15m", (*GPU, "type"), "resources",
        "GPU {{ $labels.gpu }} on {{ $labels.instance }} has uncorrectable memory errors",
        "Uncorrected ECC errors in 15m", matchers='type="uncorrected"',
    ),
    Signal(
        "upstream_circuit_open", "UpstreamCircuitOpen", "count",
        "job_peer:inferwatch_upstream_circuit_open:sum", PEER, "pools",
        "Circuit breaker for {{ $labels.peer }} stays open on {{ $labels.job }}",
        "Circuit breakers not closed",
    ),
    Signal(
        "upstream_retry_recovery", "UpstreamLowRetryRecovery", "ratio",
        "job_peer:inferwatch_upstream_retry_recovery:ratio_rate5m", PEER, "pools",
        "Retries rarely save failed calls to {{ $labels.peer }} on {{ $labels.job }}",
        "Share of failed first attempts recovered by a retry", direction="below",
    ),
    Signal(
        "job_memory_growth", "JobMemoryGrowth", "ratio",
        "instance:inferwatch_job_memory_growth:ratio", HOST, "resources",
        "Resident memory grows from job to job on {{ $labels.job }} {{ $labels.instance }}",
        "Resident-memory growth over the last jobs",
    ),
    Signal(
        "exporter_collector_failure", "ExporterCollectorFailing", "state",
        "inferwatch_exporter_collector_success", ("job", "instance", "collector"), "resources",
        "Exporter collector {{ $labels.collector }} failing on {{ $labels.instance }}",
        "Collector success",
    ),
    Signal(
        "target_down", "TargetDown", "state", "up", HOST, "overview",
        "Prometheus cannot scrape {{ $labels.job }} on {{ $labels.instance }}", "Scrape up",
    ),
    Signal(
        "target_absent", "TargetAbsent", "state", "up", ("job",), "overview",
        "No {{ $labels.job }} target is being scraped", "Scrape targets",
    ),
)  # fmt: skip

BY_KEY = {s.key: s for s in SIGNALS}
