"""The catalogue of alerting signals: one definition per thresholds-file key.

A signal is everything about *what* is measured, in one place: the recording rules its alert
reads (their PromQL, rule group and window), the labels that series carries (the ones an
override may match on), its unit and which direction is bad, its alert's texts, the raw series
that put it at a given value in the generated promtool tests, and its runbook page. The rule,
runbook and test generators iterate over :data:`SIGNALS`; nothing else names a signal.
Everything site-specific (the numbers) lives in the thresholds file, under the same key.

Adding a signal is one :class:`Signal` here, listed in :data:`SIGNALS`, plus its entry in
``thresholds.yaml`` (``docs/adding-a-signal.md`` walks through one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from inferwatch.alerts import fixtures
from inferwatch.alerts.fixtures import (
    CACHE_LABELS,
    GPU_LABELS,
    HOST_LABELS,
    HTTP_LABELS,
    MODEL_LABELS,
    PEER_LABELS,
    POOL_LABELS,
    SERVICE_LABELS,
    Available,
    Events,
    Fixture,
    Gauge,
    Growth,
    Histogram,
    Ratio,
    StateCase,
    Used,
)
from inferwatch.alerts.promql import by, failed_requests, quantile, sum_rate
from inferwatch.alerts.runbook_data import Page
from inferwatch.alerts.units import parse_duration

Kind = Literal["duration", "ratio", "celsius", "byte_rate", "count", "state"]
Direction = Literal["above", "below"]
Rule = dict[str, str]

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

HTTP_DURATION = "http_server_request_duration_seconds"
UPSTREAM_CALLS = "inferwatch_upstream_calls_total"


def rule(record: str, expr: str) -> Rule:
    return {"record": record, "expr": expr}


@dataclass(frozen=True)
class Recording:
    """The recording rules a signal's alert reads, in evaluation order: the last one records
    the signal's series, the ones before it what that rule reads. A rule two signals share
    (or a panel reads too) is written once; ``recording.groups`` drops the repeats."""

    group: str  # rule group: "http" is inferwatch.http.rules
    rules: tuple[Rule, ...]
    window: Fraction  # seconds of history the recorded value spans (0: an instant gauge)
    quantile: Fraction | None = None  # of a histogram_quantile series

    @property
    def series(self) -> str:
        return self.rules[-1]["record"]


def recording(group: str, *rules: Rule, window: str = "0s", q: str | None = None) -> Recording:
    """``window`` and ``q`` as the rule writes them (``"5m"``, ``"0.95"``)."""
    return Recording(group, rules, parse_duration(window), None if q is None else Fraction(q))


@dataclass(frozen=True)
class State:
    """How a yes/no signal is judged: no levels, one severity and ``for:`` from the file."""

    series: str  # the raw metric the alert reads
    expressions: Callable[[Sequence[str]], list[str]]  # from the scrape targets (settings)
    description: str  # ``{for}`` becomes the alert's for:
    case: Callable[[Sequence[str]], StateCase]  # the promtool fixture, from the targets


@dataclass(frozen=True, eq=False)
class Signal:
    """One alerting signal; the thresholds file holds its levels and ``for:`` under ``key``.

    A threshold signal reads its ``recording`` and is made in tests by its ``fixture``; a
    yes/no signal (``kind="state"``) has a ``State`` instead. Compared by identity: the
    registry holds each definition once.
    """

    key: str  # in the thresholds file's ``signals:``
    alert: str
    kind: Kind
    labels: tuple[str, ...]  # labels of the series once aggregated
    dashboard: str
    summary: str  # Go template; $labels are available
    what: str  # what the value is, for the description ("P95 latency")
    runbook: Page
    recording: Recording | None = None  # threshold signals: the series the alert compares
    fixture: Fixture | None = None  # threshold signals: how the tests make that series
    state: State | None = None  # yes/no signals instead of the two above
    direction: Direction = "above"
    matchers: str = ""  # fixed matchers added to ``series``

    def __post_init__(self) -> None:
        # Caught here, a half-made definition would otherwise fail deep inside a generator.
        if self.kind == "state":
            whole = self.state is not None and self.recording is None and self.fixture is None
        else:
            whole = self.state is None and self.recording is not None and self.fixture is not None
        if not whole:
            raise ValueError(
                f"{self.key}: a state signal has a State, any other a Recording and a Fixture"
            )

    @property
    def series(self) -> str:
        """The recording rule (or raw metric) the alert compares."""
        if self.recording is not None:
            return self.recording.series
        assert self.state is not None
        return self.state.series

    @property
    def window(self) -> Fraction:
        return Fraction(0) if self.recording is None else self.recording.window

    @property
    def quantile(self) -> Fraction | None:
        return None if self.recording is None else self.recording.quantile

    @property
    def dashboard_uid(self) -> str:
        return DASHBOARDS[self.dashboard]


# --- HTTP --------------------------------------------------------------------------------------

_HTTP_COUNT = f"{HTTP_DURATION}_count"
_REQUESTS = "job_route:http_server_requests:rate5m"
_ERRORS = "job_route:http_server_request_errors:rate5m"
_WS_ATTEMPTS = "job_route:websocket_server_connection_attempts:rate5m"
_WS = "websocket_server_connection_attempts_total"
_ACCEPTED = 'outcome="accepted"'
_HTTP_OK = {"http_request_method": "POST", "http_response_status_code": "200"}


def http_quantile(name: str, q: str) -> Rule:
    """``job_route:...:p95_5m`` and its siblings."""
    return rule(f"job_route:{HTTP_DURATION}:{name}_5m", quantile(q, HTTP_DURATION, HTTP, "5m"))


API_LATENCY_P95 = Signal(
    key="api_latency_p95",
    alert="APIHighLatencyP95",
    kind="duration",
    labels=HTTP,
    dashboard="overview",
    summary="Slow responses on {{ $labels.job }} {{ $labels.http_route }}",
    what="P95 response time",
    recording=recording("http", http_quantile("p95", "0.95"), window="5m", q="0.95"),
    fixture=Histogram(HTTP_LABELS, HTTP_DURATION, _HTTP_OK),
    runbook=Page(
        "The 95th percentile of HTTP response time on a route is above its threshold: one "
        "request in twenty is slower than users accept.",
        (
            "Inference queue backing up: more concurrent generations than GPU workers.",
            "A model was evicted and is reloading, or cold-started on a new replica.",
            "Larger inputs than usual (long prompts, long audio or video) or bigger batches.",
            "Slow dependencies: database pool contention, Redis latency, object storage.",
        ),
        (
            "Compare `job_route:http_server_request_duration_seconds:p95_5m` across routes.",
            "Check `inferwatch_queue_depth` and `inferwatch_inference_stage_duration_seconds`.",
            "Check GPU utilization and memory on the resources dashboard.",
            "Look for recent model loads (`inferwatch_model_load_duration_seconds_count`).",
        ),
    ),
)

API_LATENCY_P99 = Signal(
    key="api_latency_p99",
    alert="APIHighLatencyP99",
    kind="duration",
    labels=HTTP,
    dashboard="overview",
    summary="Slow tail responses on {{ $labels.job }} {{ $labels.http_route }}",
    what="P99 response time",
    recording=recording("http", http_quantile("p99", "0.99"), window="5m", q="0.99"),
    fixture=Histogram(HTTP_LABELS, HTTP_DURATION, _HTTP_OK),
    runbook=Page(
        "The 99th percentile of HTTP response time on a route is above its threshold: the "
        "slowest requests, often the ones interactive users notice, are too slow.",
        (
            "Head-of-line blocking behind long generation jobs on shared workers.",
            "Garbage collection pauses or CPU throttling of the serving process.",
            "Occasional cache misses that recompute embeddings or re-fetch weights.",
        ),
        (
            "Compare P99 with P95: a widening gap points at a minority of slow requests.",
            "Check CPU usage and throttling of the API hosts.",
            "Check cache hit rates and `inferwatch_cache_load_duration_seconds`.",
        ),
    ),
)

API_ERROR_RATE = Signal(
    key="api_error_rate",
    alert="APIHighErrorRate",
    kind="ratio",
    labels=HTTP,
    dashboard="overview",
    summary="Requests failing on {{ $labels.job }} {{ $labels.http_route }}",
    what="Error rate",
    recording=recording(
        "http",
        rule(_REQUESTS, sum_rate(_HTTP_COUNT, HTTP, "5m")),
        # A failed request has a 5xx status or an error_type (see promql.failed_requests).
        # `or ... * 0`: a route that never failed has no such series, yet its error rate is 0.
        rule(_ERRORS, f"{failed_requests(_HTTP_COUNT, HTTP, '5m')} or {_REQUESTS} * 0"),
        rule("job_route:http_server_request_errors:ratio_rate5m", f"{_ERRORS} / {_REQUESTS}"),
        window="5m",
    ),
    # As the middleware writes them: a failed request carries its error_type.
    fixture=Ratio(
        HTTP_LABELS,
        _HTTP_COUNT,
        good={"http_response_status_code": "500", "error_type": "500"},
        bad={"http_response_status_code": "200"},
        extra={"http_request_method": "POST"},
    ),
    runbook=Page(
        "An unusual share of a route's requests fails: a 5xx status, an exception (also one "
        "that broke a streamed response after its 200 status line was sent) or a client that "
        "left before the response was complete (499).",
        (
            'GPU out-of-memory during inference (`outcome="oom"`).',
            "A model failed to load or was unloaded; requests for it fail.",
            "A dependency (database, Redis, storage) is down or timing out.",
            "A bad deployment: exceptions in new code paths.",
            "Streams breaking halfway: the generator raises after the first chunks, clients "
            "get truncated audio or video.",
            "Clients giving up: responses so slow that callers time out and hang up (499).",
        ),
        (
            "Split `http_server_request_duration_seconds_count` of the route by `error_type` "
            "and `http_response_status_code`: exception classes, 5xx codes and 499 tell the "
            "failures apart.",
            "Check `http_server_exceptions_total` by `error_type` for the route.",
            "Check `inferwatch_inference_requests_total` by `outcome`.",
            "Check the pools dashboard and recent deployments.",
        ),
    ),
)

WEBSOCKET_SUCCESS = Signal(
    key="websocket_success",
    alert="WebSocketLowSuccessRate",
    kind="ratio",
    labels=HTTP,
    dashboard="streaming",
    summary="WebSocket handshakes failing on {{ $labels.job }} {{ $labels.http_route }}",
    what="WebSocket handshake success rate",
    direction="below",
    recording=recording(
        "http",
        rule(_WS_ATTEMPTS, sum_rate(_WS, HTTP, "5m")),
        rule(
            "job_route:websocket_server_connection_success:ratio_rate5m",
            f"({sum_rate(_WS, HTTP, '5m', [_ACCEPTED])} or {_WS_ATTEMPTS} * 0) / {_WS_ATTEMPTS}",
        ),
        window="5m",
    ),
    fixture=Ratio(HTTP_LABELS, _WS, good={"outcome": "accepted"}, bad={"outcome": "rejected"}),
    runbook=Page(
        "Too few WebSocket handshakes on a streaming route are accepted.",
        (
            "The application raises before accepting (authentication, model not ready).",
            "Connection limits reached: the server rejects new streams.",
            "A proxy or load balancer drops the upgrade headers.",
        ),
        (
            "Split `websocket_server_connection_attempts_total` by `outcome`.",
            "Check `websocket_server_active_connections` against configured limits.",
            "Check the ingress or proxy logs for failed upgrades.",
        ),
    ),
)

# --- hosts and the service's processes -----------------------------------------------------------

_CPU = "inferwatch_host_cpu_seconds_total"
_IDLE = 'mode=~"idle|iowait"'
_RSS = "instance:process_resident_memory_bytes:sum"

CPU_USAGE = Signal(
    key="cpu_usage",
    alert="HostHighCPUUsage",
    kind="ratio",
    labels=HOST,
    dashboard="resources",
    summary="High CPU usage on {{ $labels.instance }}",
    what="CPU usage",
    recording=recording(
        "resources",
        rule(
            "instance:inferwatch_host_cpu_usage:ratio_rate5m",
            f"1 - {sum_rate(_CPU, HOST, '5m', [_IDLE])} / {sum_rate(_CPU, HOST, '5m')}",
        ),
        window="5m",
    ),
    fixture=Ratio(HOST_LABELS, _CPU, good={"mode": "user"}, bad={"mode": "idle"}),
    runbook=Page(
        "A host's CPUs are busy most of the time.",
        (
            "CPU-bound pre- or post-processing (audio decoding, video encoding, tokenization).",
            "Inference fell back to CPU because no GPU was visible.",
            "Too many worker processes for the cores available.",
        ),
        (
            "Check `inferwatch_host_cpu_seconds_total` by `mode` and the load average.",
            "Check that models report the expected `device` in `inferwatch_model_loaded`.",
            "Check per-process CPU on the host.",
        ),
    ),
)

MEMORY_USAGE = Signal(
    key="memory_usage",
    alert="HostHighMemoryUsage",
    kind="ratio",
    labels=HOST,
    dashboard="resources",
    summary="High memory usage on {{ $labels.instance }}",
    what="Memory usage",
    recording=recording(
        "resources",
        rule(
            "instance:inferwatch_host_memory_usage:ratio",
            f"1 - sum {by(HOST)} (inferwatch_host_memory_available_bytes)"
            f" / sum {by(HOST)} (inferwatch_host_memory_total_bytes)",
        ),
    ),
    fixture=Available(
        HOST_LABELS,
        available="inferwatch_host_memory_available_bytes",
        total="inferwatch_host_memory_total_bytes",
        size=Fraction(10**6),
    ),
    runbook=Page(
        "Little memory is left available on a host; the OOM killer may soon end a process.",
        (
            "Too many models resident in host memory, or weights staged on the CPU.",
            "Large request payloads (audio, video) buffered in memory.",
            "A memory leak in the serving process.",
        ),
        (
            "Check `inferwatch_process_resident_memory_bytes` and its growth.",
            "Check `inferwatch_model_loaded` for more copies than expected.",
            "Check the kernel log for OOM kills.",
        ),
    ),
)

MEMORY_LEAK = Signal(
    key="memory_leak",
    alert="ProcessMemoryLeakSuspected",
    kind="byte_rate",
    labels=HOST,
    dashboard="resources",
    summary="Resident memory keeps growing on {{ $labels.job }} {{ $labels.instance }}",
    what="Resident-memory growth of the service's processes over 30m",
    recording=recording(
        "resources",
        # The service's own processes (prometheus_client's process collector; inferwatch's
        # multiprocess mode sums it over the live workers), not the exporter's: only targets
        # that serve inferwatch's HTTP metrics, so Prometheus, Alertmanager or any other
        # process of the cluster is never judged.
        rule(
            _RSS,
            f"sum {by(HOST)} (process_resident_memory_bytes"
            f" and on (job, instance) group {by(HOST)} (http_server_active_requests))",
        ),
        # A 30m least-squares slope rides out a one-off allocation; the alert's for: then
        # asks the growth to persist.
        rule("instance:process_resident_memory_bytes:deriv30m", f"deriv({_RSS}[30m])"),
        window="30m",
    ),
    # RSS growing at the wanted slope (bytes/s), on a target serving inferwatch's HTTP
    # metrics, which is what makes it a service process the rule judges.
    fixture=Growth(
        SERVICE_LABELS,
        "process_resident_memory_bytes",
        marker="http_server_active_requests",
        marker_extra={"http_request_method": "GET"},
    ),
    runbook=Page(
        "The service's processes' resident memory has grown steadily for the whole window.",
        (
            "Caches without a size bound (embeddings, tokenizers, results).",
            "Tensors or buffers kept alive by references in long-lived objects.",
            "Model versions loaded side by side and never released.",
        ),
        (
            "Check `process_resident_memory_bytes` of the service's job over the last day.",
            "Check `inferwatch_cache_entries` and model load/unload counts.",
            "Take a heap profile of one worker and restart it if memory is nearly exhausted.",
        ),
    ),
)

# --- connection pools, databases, caches -------------------------------------------------------

_DB_OPERATION = "db_client_operation_duration_seconds"
# SQL and Redis share the histogram; db_system_name tells them apart downstream.
_DB_OPERATION_P90 = rule(
    f"job_pool:{_DB_OPERATION}:p90_5m", quantile("0.9", _DB_OPERATION, POOL, "5m")
)
_CACHE_GETS = "inferwatch_cache_gets_total"
_CACHE_GETS_RATE = "job_cache:inferwatch_cache_gets:rate5m"
_HIT = 'result="hit"'

DB_POOL_USAGE = Signal(
    key="db_pool_usage",
    alert="DBPoolHighUsage",
    kind="ratio",
    labels=POOL,
    dashboard="pools",
    summary="Connection pool {{ $labels.db_client_connection_pool_name }} nearly exhausted",
    what="Pool usage",
    recording=recording(
        "pools",
        rule(
            "job_pool:db_client_connection_usage:ratio",
            f'sum {by(POOL)} (db_client_connections_usage{{db_client_connection_state="used"}})'
            f" / sum {by(POOL)} (db_client_connection_max)",
        ),
    ),
    fixture=Used(
        POOL_LABELS,
        used="db_client_connections_usage",
        total="db_client_connection_max",
        size=Fraction(100),
        used_extra={"db_client_connection_state": "used"},
    ),
    runbook=Page(
        "Most connections of a database or Redis pool are checked out.",
        (
            "Slow queries holding connections longer.",
            "More concurrent requests than the pool was sized for.",
            "Connections leaked by code paths that never return them.",
        ),
        (
            "Check `db_client_connection_pending_requests` and wait time.",
            "Check query P90 (`job_pool:db_client_operation_duration_seconds:p90_5m`).",
            "Compare pool size with the database's `max_connections`.",
        ),
    ),
)

DB_POOL_TIMEOUTS = Signal(
    key="db_pool_timeouts",
    alert="DBPoolAcquireTimeouts",
    kind="count",
    labels=POOL,
    dashboard="pools",
    summary="Connection acquisitions timing out on pool "
    "{{ $labels.db_client_connection_pool_name }}",
    what="Acquire timeouts in 5m",
    recording=recording(
        "pools",
        rule(
            "job_pool:db_client_connection_timeouts:increase5m",
            f"sum {by(POOL)} (increase(db_client_connection_timeouts_total[5m]))",
        ),
        window="5m",
    ),
    fixture=Events(POOL_LABELS, "db_client_connection_timeouts_total"),
    runbook=Page(
        "Requests gave up waiting for a pool connection; they most likely failed.",
        (
            "The pool is exhausted (see DBPoolHighUsage).",
            "The database is unreachable or refusing connections.",
        ),
        (
            "Check pool usage and `inferwatch_postgres_connections` / `inferwatch_redis_up`.",
            "Check for long-running transactions holding connections.",
        ),
    ),
)

DB_QUERY_P90 = Signal(
    key="db_query_p90",
    alert="DBSlowQueries",
    kind="duration",
    labels=POOL,
    dashboard="pools",
    summary="Slow database queries on pool {{ $labels.db_client_connection_pool_name }}",
    what="P90 query time",
    matchers='db_system_name!="redis"',
    recording=recording("pools", _DB_OPERATION_P90, window="5m", q="0.9"),
    fixture=Histogram(POOL_LABELS, _DB_OPERATION, {"db_operation_name": "SELECT"}),
    runbook=Page(
        "The 90th percentile of SQL operation time on a pool is above its threshold.",
        (
            "Missing indexes or a changed query plan.",
            "Lock contention from long transactions.",
            "The database host is saturated.",
        ),
        (
            "Check `db_client_operation_duration_seconds` by `db_operation_name`.",
            "Check the database's slow-query log and active sessions.",
        ),
    ),
)

REDIS_OPERATION_P90 = Signal(
    key="redis_operation_p90",
    alert="RedisSlowOperations",
    kind="duration",
    labels=POOL,
    dashboard="pools",
    summary="Slow Redis commands on pool {{ $labels.db_client_connection_pool_name }}",
    what="P90 Redis command time",
    matchers='db_system_name="redis"',
    recording=recording("pools", _DB_OPERATION_P90, window="5m", q="0.9"),
    fixture=Histogram(
        {**POOL_LABELS, "db_system_name": "redis", "db_client_connection_pool_name": "cache"},
        _DB_OPERATION,
        {"db_operation_name": "GET"},
    ),
    runbook=Page(
        "The 90th percentile of Redis command time is above its threshold.",
        (
            "Expensive commands (KEYS, large HGETALL, big values) blocking the server.",
            "Redis memory pressure and eviction, or persistence forks.",
            "Network latency between the service and Redis.",
        ),
        (
            "Check `db_client_operation_duration_seconds` by `db_operation_name`.",
            "Check Redis `SLOWLOG GET` and `INFO memory`.",
        ),
    ),
)

CACHE_HIT_RATE = Signal(
    key="cache_hit_rate",
    alert="CacheLowHitRate",
    kind="ratio",
    labels=("job", "cache"),
    dashboard="pools",
    summary="Cache {{ $labels.cache }} is missing",
    what="Hit rate",
    direction="below",
    recording=recording(
        "pools",
        rule(_CACHE_GETS_RATE, sum_rate(_CACHE_GETS, ["job", "cache"], "5m")),
        rule(
            "job_cache:inferwatch_cache_hit:ratio_rate5m",
            f"({sum_rate(_CACHE_GETS, ['job', 'cache'], '5m', [_HIT])}"
            f" or {_CACHE_GETS_RATE} * 0) / {_CACHE_GETS_RATE}",
        ),
        window="5m",
    ),
    fixture=Ratio(CACHE_LABELS, _CACHE_GETS, good={"result": "hit"}, bad={"result": "miss"}),
    runbook=Page(
        "An application cache misses too often, so expensive work (embeddings, features, "
        "generated assets) is recomputed.",
        (
            "The cache was flushed or the service restarted (cold cache).",
            "Cache keys changed with a deployment.",
            "The cache is too small and evicts entries before reuse.",
        ),
        (
            "Check `inferwatch_cache_evictions_total` by `reason` and `inferwatch_cache_entries`.",
            "Check `inferwatch_cache_load_duration_seconds` for the cost of misses.",
        ),
    ),
)

# --- models ------------------------------------------------------------------------------------

_MODEL_LOAD = "inferwatch_model_load_duration_seconds"

MODEL_LOAD_DURATION = Signal(
    key="model_load_duration",
    alert="ModelSlowInitialization",
    kind="duration",
    labels=("job", "model"),
    dashboard="models",
    summary="Model {{ $labels.model }} is slow to initialize",
    what="P95 load time over 1h",
    recording=recording(
        "models",
        # Loads are rare: a 1h window keeps one slow load visible long enough to act on.
        rule(
            f"job_model:{_MODEL_LOAD}:p95_1h",
            quantile("0.95", _MODEL_LOAD, ["job", "model"], "1h", ['outcome="success"']),
        ),
        window="1h",
        q="0.95",
    ),
    fixture=Histogram(MODEL_LABELS, _MODEL_LOAD, {"outcome": "success"}),
    runbook=Page(
        "Models take longer than the threshold to load and initialize; scale-out and "
        "recovery after a restart are slowed down.",
        (
            "Weights downloaded from remote storage instead of a local cache.",
            "Slow disks or contention while several models load at once.",
            "Warm-up compiling kernels on first use.",
        ),
        (
            "Check `inferwatch_model_load_phase_duration_seconds` by `phase`.",
            "Check the weights cache and storage throughput on the host.",
        ),
    ),
)

MODEL_LOAD_FAILURES = Signal(
    key="model_load_failures",
    alert="ModelLoadFailures",
    kind="count",
    labels=("job", "model", "reason"),
    dashboard="models",
    summary="Model {{ $labels.model }} fails to load ({{ $labels.reason }})",
    what="Failed loads in 15m",
    recording=recording(
        "models",
        rule(
            "job_model:inferwatch_model_load_failures:increase15m",
            "sum by (job, model, reason) (increase(inferwatch_model_load_failures_total[15m]))",
        ),
        window="15m",
    ),
    fixture=Events(
        {**MODEL_LABELS, "reason": "oom"},
        "inferwatch_model_load_failures_total",
        {"phase": "to_device"},
    ),
    runbook=Page(
        "Model loads failed recently; requests for the model fail or fall back.",
        (
            'GPU out of memory (`reason="oom"`).',
            "Missing or corrupt weights, or an incompatible framework version.",
            "Load timeouts on slow storage.",
        ),
        (
            "Check `inferwatch_model_load_failures_total` by `phase` and `reason`.",
            "Read the service log around the failed load.",
        ),
    ),
)

# --- GPUs --------------------------------------------------------------------------------------

_GPU_ECC = rule(
    "gpu:inferwatch_gpu_ecc_errors:increase15m",
    f"sum {by((*GPU, 'type'))} (increase(inferwatch_gpu_ecc_errors_total[15m]))",
)

GPU_UTILIZATION = Signal(
    key="gpu_utilization",
    alert="GPUHighUtilization",
    kind="ratio",
    labels=GPU,
    dashboard="resources",
    summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} saturated",
    what="GPU utilization",
    recording=recording(
        "resources",
        rule(
            "gpu:inferwatch_gpu_utilization_ratio:avg5m",
            f"avg {by(GPU)} (avg_over_time(inferwatch_gpu_utilization_ratio[5m]))",
        ),
        window="5m",
    ),
    fixture=Gauge(GPU_LABELS, "inferwatch_gpu_utilization_ratio"),
    runbook=Page(
        "A GPU is saturated: kernels run almost all the time, so new work queues up.",
        (
            "Traffic above the capacity of the replicas.",
            "Batches too large, or long generations monopolising the device.",
        ),
        (
            "Check `inferwatch_queue_depth` and inference latency.",
            "Consider scaling out or lowering batch sizes.",
        ),
    ),
)

GPU_MEMORY = Signal(
    key="gpu_memory",
    alert="GPUHighMemoryUsage",
    kind="ratio",
    labels=GPU,
    dashboard="resources",
    summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} running out of memory",
    what="GPU memory usage",
    recording=recording(
        "resources",
        rule(
            "gpu:inferwatch_gpu_memory_usage:ratio",
            f"sum {by(GPU)} (inferwatch_gpu_memory_used_bytes)"
            f" / sum {by(GPU)} (inferwatch_gpu_memory_total_bytes)",
        ),
    ),
    fixture=Used(
        GPU_LABELS,
        used="inferwatch_gpu_memory_used_bytes",
        total="inferwatch_gpu_memory_total_bytes",
        size=Fraction(10**6),
    ),
    runbook=Page(
        "A GPU's memory is nearly full; the next allocation may fail with an OOM error.",
        (
            "Too many models or model copies on one device.",
            "Large batches or long sequences growing activations and KV caches.",
            "Memory fragmentation in the framework's caching allocator.",
        ),
        (
            "Check `inferwatch_gpu_process_memory_used_bytes` and `inferwatch_model_loaded`.",
            "Check inference outcomes for `oom`.",
            "Unload idle models or lower the batch size.",
        ),
    ),
)

GPU_TEMPERATURE = Signal(
    key="gpu_temperature",
    alert="GPUHighTemperature",
    kind="celsius",
    labels=GPU,
    dashboard="resources",
    summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} running hot",
    what="GPU temperature",
    recording=recording(
        "resources",
        rule(
            "gpu:inferwatch_gpu_temperature_celsius:max",
            f"max {by(GPU)} (inferwatch_gpu_temperature_celsius)",
        ),
    ),
    fixture=Gauge(GPU_LABELS, "inferwatch_gpu_temperature_celsius"),
    runbook=Page(
        "A GPU runs hot; it will throttle its clocks and may shut down.",
        (
            "Failing fans or blocked airflow in the chassis.",
            "Sustained full load in a warm data-centre aisle.",
        ),
        (
            "Check `inferwatch_gpu_throttle_reasons` and clocks.",
            "Ask the hardware team to check cooling; drain the node if it keeps rising.",
        ),
    ),
)

GPU_XID_ERRORS = Signal(
    key="gpu_xid_errors",
    alert="GPUXidErrors",
    kind="count",
    labels=GPU,
    dashboard="resources",
    summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} reports XID errors",
    what="XID errors in 15m",
    recording=recording(
        "resources",
        rule(
            "gpu:inferwatch_gpu_xid_errors:increase15m",
            f"sum {by(GPU)} (increase(inferwatch_gpu_xid_errors_total[15m]))",
        ),
        window="15m",
    ),
    fixture=Events(GPU_LABELS, "inferwatch_gpu_xid_errors_total"),
    runbook=Page(
        "The NVIDIA driver reported XID errors on a GPU.",
        (
            "Application faults (illegal memory access, XID 13/31/43).",
            "Hardware or driver faults (XID 48, 63, 64, 79: fell off the bus).",
        ),
        (
            "Read the XID codes in the kernel log (`dmesg | grep -i xid`).",
            "Drain the node if the codes point at hardware; report to the hardware team.",
        ),
    ),
)

GPU_ECC_CORRECTED = Signal(
    key="gpu_ecc_corrected",
    alert="GPUCorrectedECCErrors",
    kind="count",
    labels=(*GPU, "type"),
    dashboard="resources",
    summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} corrects memory errors",
    what="Corrected ECC errors in 15m",
    matchers='type="corrected"',
    recording=recording("resources", _GPU_ECC, window="15m"),
    fixture=Events({**GPU_LABELS, "type": "corrected"}, "inferwatch_gpu_ecc_errors_total"),
    runbook=Page(
        "A GPU's memory corrects ECC errors; harmless alone, often a sign of ageing memory.",
        ("Degrading GPU memory cells.",),
        ("Watch the trend; schedule a replacement if the count keeps climbing.",),
    ),
)

GPU_ECC_UNCORRECTED = Signal(
    key="gpu_ecc_uncorrected",
    alert="GPUUncorrectedECCErrors",
    kind="count",
    labels=(*GPU, "type"),
    dashboard="resources",
    summary="GPU {{ $labels.gpu }} on {{ $labels.instance }} has uncorrectable memory errors",
    what="Uncorrected ECC errors in 15m",
    matchers='type="uncorrected"',
    recording=recording("resources", _GPU_ECC, window="15m"),
    fixture=Events({**GPU_LABELS, "type": "uncorrected"}, "inferwatch_gpu_ecc_errors_total"),
    runbook=Page(
        "A GPU reported uncorrectable memory errors; results computed on it may be corrupt.",
        ("Failing GPU memory.",),
        (
            "Drain the node now and reset the GPU; retire the page or replace the card.",
            "Check whether recently produced outputs need to be regenerated.",
        ),
    ),
)

# --- dependencies and jobs ---------------------------------------------------------------------

_FIRST_FAILED = "job_peer:inferwatch_upstream_first_attempt_failures:rate5m"
_RECOVERED = 'outcome="recovered"'

UPSTREAM_CIRCUIT_OPEN = Signal(
    key="upstream_circuit_open",
    alert="UpstreamCircuitOpen",
    kind="count",
    labels=PEER,
    dashboard="pools",
    summary="Circuit breaker for {{ $labels.peer }} stays open on {{ $labels.job }}",
    what="Circuit breakers not closed",
    recording=recording(
        "upstream",
        rule(
            "job_peer:inferwatch_upstream_circuit_open:sum",
            f'sum {by(PEER)} (inferwatch_upstream_circuit_state{{state!="closed"}})',
        ),
    ),
    # breakers (one per worker) in the open state
    fixture=Gauge(PEER_LABELS, "inferwatch_upstream_circuit_state", {"state": "open"}),
    runbook=Page(
        "The circuit breaker guarding calls to a dependency (a TTS, LLM or other model "
        "service) has not closed for a while: the dependency keeps failing its probes, and "
        "every call to it is refused at once. Work that needs it fails or degrades (jobs "
        "end partial).",
        (
            "The dependency is down, restarting or overloaded (5xx, 429, timeouts).",
            "The network path to it is broken: DNS, TLS, a proxy, a firewall change.",
            "Credentials or quota expired, so every call fails the same way.",
        ),
        (
            "Split `http_client_request_duration_seconds_count` of the peer by "
            "`http_response_status_code` and `error_type`: refused connections, timeouts and "
            "5xx answers tell the causes apart.",
            "Check the dependency's own status page or dashboards.",
            "`job_peer:inferwatch_upstream_circuit_recovery_seconds:mean1h` says how long its "
            "past outages lasted.",
        ),
    ),
)

UPSTREAM_RETRY_RECOVERY = Signal(
    key="upstream_retry_recovery",
    alert="UpstreamLowRetryRecovery",
    kind="ratio",
    labels=PEER,
    dashboard="pools",
    summary="Retries rarely save failed calls to {{ $labels.peer }} on {{ $labels.job }}",
    what="Share of failed first attempts recovered by a retry",
    direction="below",
    recording=recording(
        "upstream",
        # A call whose first attempt failed either recovered on a retry or failed; calls the
        # open breaker refused outright were never attempted, so they are in neither.
        rule(
            _FIRST_FAILED,
            sum_rate(UPSTREAM_CALLS, PEER, "5m", ['outcome=~"recovered|failed"']),
        ),
        rule(
            "job_peer:inferwatch_upstream_retry_recovery:ratio_rate5m",
            f"({sum_rate(UPSTREAM_CALLS, PEER, '5m', [_RECOVERED])}"
            f" or {_FIRST_FAILED} * 0) / {_FIRST_FAILED}",
        ),
        window="5m",
    ),
    fixture=Ratio(
        PEER_LABELS, UPSTREAM_CALLS, good={"outcome": "recovered"}, bad={"outcome": "failed"}
    ),
    runbook=Page(
        "Of the calls to a dependency whose first attempt failed, too few succeeded on a "
        "retry: the failures are not transient, so retries only add load and latency.",
        (
            "A lasting outage rather than sporadic errors (see UpstreamCircuitOpen).",
            "Too few attempts or too short a backoff for the dependency to recover in.",
            "Errors that are retried although they cannot succeed (bad input, auth).",
        ),
        (
            "Compare `inferwatch_upstream_retries_total` by `error_type` with the outcomes in "
            "`inferwatch_upstream_calls_total`.",
            "Check the attempt durations: retries that time out point at an overloaded peer.",
        ),
    ),
)

JOB_MEMORY_GROWTH = Signal(
    key="job_memory_growth",
    alert="JobMemoryGrowth",
    kind="ratio",
    labels=HOST,
    dashboard="resources",
    summary="Resident memory grows from job to job on {{ $labels.job }} {{ $labels.instance }}",
    what="Resident-memory growth over the last jobs",
    recording=recording(
        "jobs",
        rule(
            "instance:inferwatch_job_memory_growth:ratio",
            f"max {by(HOST)} (inferwatch_job_memory_growth_ratio)",
        ),
    ),
    fixture=Gauge(SERVICE_LABELS, "inferwatch_job_memory_growth_ratio"),
    runbook=Page(
        "The service's resident memory grew by more than the threshold over its last jobs "
        "(20 by default): each job leaves memory behind, and the process will run out "
        "eventually.",
        (
            "Caches without a bound (results, embeddings, per-job tensors kept referenced).",
            "Models or buffers loaded per job and never released.",
            "Memory fragmentation under allocation-heavy jobs.",
        ),
        (
            "Compare `inferwatch_job_memory_increase_bytes` by `kind`: the kind that adds the "
            "most is the first suspect.",
            "Take a heap snapshot (tracemalloc, memray) between two jobs and compare.",
            "Check `instance:process_resident_memory_bytes:deriv30m` on the resources dashboard.",
        ),
    ),
)

# --- yes/no signals: collectors and scrape targets ---------------------------------------------

_TARGET_INSTANCE = "10.0.0.1:8000"
_OTHER_INSTANCE = "10.0.0.9:8000"


def _other_targets(targets: Sequence[str]) -> tuple[str, ...]:
    """The other scrape jobs, up throughout, so only the first one's alert can fire."""
    return tuple(
        fixtures.selector("up", {"job": job, "instance": _OTHER_INSTANCE}) for job in targets[1:]
    )


def _target_down_case(targets: Sequence[str]) -> StateCase:
    labels = {"job": targets[0], "instance": _TARGET_INSTANCE}
    return StateCase("up", labels, labels, Fraction(0), others=_other_targets(targets))


def _target_absent_case(targets: Sequence[str]) -> StateCase:
    labels = {"job": targets[0]}
    series_labels = {**labels, "instance": "x:1"}
    return StateCase("up", labels, series_labels, None, others=_other_targets(targets))


def _collector_case(targets: Sequence[str]) -> StateCase:
    labels = {"job": "inferwatch-exporter", "instance": "gpu-node-1:9400", "collector": "gpu"}
    return StateCase("inferwatch_exporter_collector_success", labels, labels, Fraction(0))


EXPORTER_COLLECTOR_FAILURE = Signal(
    key="exporter_collector_failure",
    alert="ExporterCollectorFailing",
    kind="state",
    labels=("job", "instance", "collector"),
    dashboard="resources",
    summary="Exporter collector {{ $labels.collector }} failing on {{ $labels.instance }}",
    what="Collector success",
    state=State(
        series="inferwatch_exporter_collector_success",
        expressions=lambda targets: ["inferwatch_exporter_collector_success == 0"],
        description=(
            "Collector {{ $labels.collector }} of {{ $labels.job }} has failed every scrape "
            "for {for}; its metrics are missing, not zero."
        ),
        case=_collector_case,
    ),
    runbook=Page(
        "One collector of the inferwatch exporter fails every scrape; its metrics are absent.",
        (
            "The GPU driver (NVML) or the watched processes are not reachable.",
            "A backend (Redis, PostgreSQL) rejects the exporter's credentials.",
        ),
        (
            "Read the exporter's log for the collector's error.",
            "Check `inferwatch_exporter_collector_duration_seconds` for timeouts.",
        ),
    ),
)

TARGET_DOWN = Signal(
    key="target_down",
    alert="TargetDown",
    kind="state",
    labels=HOST,
    dashboard="overview",
    summary="Prometheus cannot scrape {{ $labels.job }} on {{ $labels.instance }}",
    what="Scrape up",
    state=State(
        series="up",
        expressions=lambda jobs: (
            [" or ".join(f'up{{job="{job}"}} == 0' for job in jobs)] if jobs else []
        ),
        description=(
            "Prometheus has failed to scrape {{ $labels.job }} on {{ $labels.instance }} for "
            "{for}; alerts on its metrics cannot fire while it is down."
        ),
        case=_target_down_case,
    ),
    runbook=Page(
        "Prometheus cannot scrape a target: its metrics are missing, and every alert that "
        "reads them stays silent.",
        (
            "The process crashed or is restarting (OOM kill, failed deployment).",
            "Network policy, TLS or authentication on `/metrics` changed.",
        ),
        (
            "Open Prometheus' targets page for the scrape error.",
            "Check the process and its logs on the instance.",
        ),
    ),
)

TARGET_ABSENT = Signal(
    key="target_absent",
    alert="TargetAbsent",
    kind="state",
    labels=("job",),
    dashboard="overview",
    summary="No {{ $labels.job }} target is being scraped",
    what="Scrape targets",
    state=State(
        series="up",
        # One rule: promtool rejects rules that differ only in their expression.
        expressions=lambda jobs: (
            [" or ".join(f'absent(up{{job="{job}"}})' for job in jobs)] if jobs else []
        ),
        description=(
            "No scrape target of job {{ $labels.job }} has existed for {for}: service "
            "discovery or the scrape config lost it, so alerts on its metrics cannot fire."
        ),
        case=_target_absent_case,
    ),
    runbook=Page(
        "No target of an expected job exists at all: a dead service must never read as healthy.",
        (
            "Service discovery lost the job (labels, annotations, namespace).",
            "The scrape configuration was changed or the job renamed.",
        ),
        (
            "Check Prometheus' service-discovery page for the job.",
            "Compare the scrape config with `settings.targets` in the thresholds file.",
        ),
    ),
)

# The order of the alerts in the rule files and of the generated tests.
SIGNALS: tuple[Signal, ...] = (
    API_LATENCY_P95,
    API_LATENCY_P99,
    API_ERROR_RATE,
    WEBSOCKET_SUCCESS,
    CPU_USAGE,
    MEMORY_USAGE,
    MEMORY_LEAK,
    DB_POOL_USAGE,
    DB_POOL_TIMEOUTS,
    DB_QUERY_P90,
    REDIS_OPERATION_P90,
    CACHE_HIT_RATE,
    MODEL_LOAD_DURATION,
    MODEL_LOAD_FAILURES,
    GPU_UTILIZATION,
    GPU_MEMORY,
    GPU_TEMPERATURE,
    GPU_XID_ERRORS,
    GPU_ECC_CORRECTED,
    GPU_ECC_UNCORRECTED,
    UPSTREAM_CIRCUIT_OPEN,
    UPSTREAM_RETRY_RECOVERY,
    JOB_MEMORY_GROWTH,
    EXPORTER_COLLECTOR_FAILURE,
    TARGET_DOWN,
    TARGET_ABSENT,
)

BY_KEY = {s.key: s for s in SIGNALS}

# --- saturation: where the bottleneck is now -----------------------------------------------------
#
# One score per component and resource, in one unit: 1 is the warning level of the signal that
# judges what the component makes work do (wait or fail), so scores of a pool, a cache and a
# GPU compare with each other. A score reads waiting and refusal, never a momentary maximum:
# a pool that touched its limit once without anyone waiting is not a constraint.

SATURATION = "component:inferwatch_saturation:ratio"
_QUEUE_P95 = "job_model:inferwatch_inference_queue_seconds:p95_5m"
_WAIT = "db_client_connection_wait_time_seconds"
_STAGE = "inferwatch_inference_stage_duration_seconds"
_CLIENT = "http_client_request_duration_seconds"
_REDIS_POOL_LABELS = {
    **POOL_LABELS,
    "db_system_name": "redis",
    "db_client_connection_pool_name": "cache",
}


@dataclass(frozen=True)
class Pressure:
    """One way a component makes work wait or refuses it: a recorded value (labelled like the
    component's score), read against the warning level of the signal ``judged_by`` (its
    critical where it has no warning). How it is scaled follows that signal: a count is
    divided by its warning, at least 1 (one timeout where any is too many scores 1); a value
    that is bad above its level is divided by it; one that is bad below it (a hit ratio)
    scores its shortfall, ``(1 - value) / (1 - level)``."""

    name: str
    expr: str
    judged_by: Signal
    # How the generated promtool tests make ``expr`` hold a value: None where ``expr`` is the
    # judge's own series, made by the judge's fixture; else a fixture of its own and, as for
    # a signal's recording, the window and quantile the rule computes.
    fixture: Fixture | None = None
    window: Fraction = Fraction(0)
    quantile: Fraction | None = None

    def made_by(self) -> tuple[Fixture, Fraction, Fraction | None]:
        """The fixture, window and quantile that make ``expr`` hold a value."""
        if self.fixture is not None:
            return self.fixture, self.window, self.quantile
        judge = self.judged_by
        if judge.fixture is None or judge.series != self.expr:
            raise ValueError(f"pressure {self.name}: {self.expr} needs a fixture of its own")
        return judge.fixture, judge.window, judge.quantile


def pressure(
    name: str,
    expr: str,
    judged_by: Signal,
    fixture: Fixture | None = None,
    *,
    window: str = "0s",
    q: str | None = None,
) -> Pressure:
    """``window`` and ``q`` as the rule writes them (``"5m"``, ``"0.9"``)."""
    quantile_of = None if q is None else Fraction(q)
    return Pressure(name, expr, judged_by, fixture, parse_duration(window), quantile_of)


@dataclass(frozen=True)
class Saturation:
    """A component's saturation score: the highest of its pressures, per resource."""

    component: str  # the `component` label: pool, cache, upstream, model_queue, cpu, gpu
    level: str  # of the per-component record's name, as the other rules name theirs
    kind: str  # the report's name for the candidate
    headline: str  # the report's title of the candidate; {resource} is filled in
    labels: tuple[str, ...]  # of the score, as its pressures are aggregated
    resource: tuple[str, ...]  # the labels naming the resource, joined into `resource`
    pressures: tuple[Pressure, ...]
    recommendations: tuple[str, ...]
    prepare: tuple[Rule, ...] = ()  # rules only the pressures read, evaluated first
    # The machine's (the exporter's series), not a service's: no job of the service selects it.
    host: bool = False

    @property
    def series(self) -> str:
        return f"{self.level}:inferwatch_{self.component}_saturation:ratio"


POOL_SATURATION = Saturation(
    component="pool",
    level="job_pool",
    kind="pool_saturation",
    headline="Connection pool {resource} saturated",
    labels=POOL,
    resource=("db_client_connection_pool_name",),
    pressures=(
        # Waiting for a connection is part of every query's time: a P90 wait as long as the
        # slow-query warning makes queries slow on its own.
        pressure(
            "acquire_wait_p90",
            f'job_pool:{_WAIT}:p90_5m{{db_system_name!="redis"}}',
            DB_QUERY_P90,
            Histogram(POOL_LABELS, _WAIT),
            window="5m",
            q="0.9",
        ),
        pressure(
            "acquire_wait_p90",
            f'job_pool:{_WAIT}:p90_5m{{db_system_name="redis"}}',
            REDIS_OPERATION_P90,
            Histogram(_REDIS_POOL_LABELS, _WAIT),
            window="5m",
            q="0.9",
        ),
        # Requests that gave up waiting: refused work.
        Pressure("timeouts", "job_pool:db_client_connection_timeouts:increase5m", DB_POOL_TIMEOUTS),
    ),
    recommendations=(
        "Raise the pool size (and the database's max connections) or shorten what holds a "
        "connection: no network or model calls inside a transaction.",
        "Look for leaked or long-held connections (use time per checkout).",
        "Set a pool timeout below the request deadline so requests fail fast.",
    ),
)

CACHE_SATURATION = Saturation(
    component="cache",
    level="job_cache",
    kind="cache_misses",
    headline="Cache {resource} missing",
    labels=("job", "cache"),
    resource=("cache",),
    # Every miss recomputes: the miss ratio against the one CacheLowHitRate allows.
    pressures=(Pressure("misses", "job_cache:inferwatch_cache_hit:ratio_rate5m", CACHE_HIT_RATE),),
    recommendations=(
        "Check that the cache is up and not being flushed (evictions, restarts, TTLs).",
        "Warm the cache on deploy with the most frequent prompts or conditionings.",
        "Give the cache more memory if entries are evicted before they are reused.",
    ),
)

UPSTREAM_SATURATION = Saturation(
    component="upstream",
    level="job_peer",
    kind="upstream",
    headline="Dependency {resource} slow or failing",
    labels=PEER,
    resource=("peer",),
    pressures=(
        # A dependency whose P95 alone reaches the API's P95 warning makes the API slow.
        pressure(
            "attempt_p95",
            f"job_peer:{_CLIENT}:p95_5m",
            API_LATENCY_P95,
            Histogram(PEER_LABELS, _CLIENT),
            window="5m",
            q="0.95",
        ),
        # Failed attempts: retried (more load, more latency) or passed on as failures.
        pressure(
            "attempt_errors",
            "job_peer:http_client_request_errors:ratio_rate5m",
            API_ERROR_RATE,
            Ratio(
                PEER_LABELS,
                f"{_CLIENT}_count",
                good={"http_response_status_code": "503", "error_type": "503"},
                bad={"http_response_status_code": "200"},
            ),
            window="5m",
        ),
        # An open breaker refuses every call.
        Pressure(
            "circuit_open", "job_peer:inferwatch_upstream_circuit_open:sum", UPSTREAM_CIRCUIT_OPEN
        ),
    ),
    recommendations=(
        "Check the dependency's own status and latency; add capacity or a closer region.",
        "Bound each attempt with a timeout below the request deadline, and retry with backoff.",
        "Cache or batch the calls that repeat.",
    ),
)

QUEUE_SATURATION = Saturation(
    component="model_queue",
    level="job_model",
    kind="model_queue",
    headline="Requests waiting for model {resource}",
    labels=("job", "model"),
    resource=("model",),
    # Time in the model's queue is time the response waits: a P95 wait as long as the API's
    # P95 warning breaches it by waiting alone.
    pressures=(
        pressure(
            "queue_wait_p95",
            _QUEUE_P95,
            API_LATENCY_P95,
            Histogram(MODEL_LABELS, _STAGE, {"stage": "queue"}),
            window="5m",
            q="0.95",
        ),
    ),
    recommendations=(
        "Raise the batch size or add model replicas.",
        "Reject early (429) when the queue is long rather than let deadlines expire.",
    ),
    prepare=(
        rule(
            _QUEUE_P95,
            quantile(
                "0.95",
                _STAGE,
                ["job", "model"],
                "5m",
                ['stage="queue"'],
            ),
        ),
    ),
)

CPU_SATURATION = Saturation(
    component="cpu",
    level="instance",
    kind="cpu",
    headline="CPU busy on {resource}",
    host=True,
    labels=HOST,
    resource=("instance",),
    pressures=(Pressure("usage", "instance:inferwatch_host_cpu_usage:ratio_rate5m", CPU_USAGE),),
    recommendations=(
        "Profile pre- and post-processing; move encoding off the event loop.",
        "Add workers or CPU, or move the load generator to another machine.",
    ),
)

GPU_SATURATION = Saturation(
    component="gpu",
    level="gpu",
    kind="gpu",
    headline="GPU {resource} busy",
    host=True,
    labels=GPU,
    resource=("instance", "gpu"),
    pressures=(
        Pressure("utilization", "gpu:inferwatch_gpu_utilization_ratio:avg5m", GPU_UTILIZATION),
        Pressure("memory", "gpu:inferwatch_gpu_memory_usage:ratio", GPU_MEMORY),
    ),
    recommendations=(
        "Add GPUs or replicas; batch more requests per forward pass.",
        "Use a smaller or quantised model for latency-sensitive routes.",
    ),
)

# The components of the bottleneck ranking, in the order the rules record them.
SATURATIONS: tuple[Saturation, ...] = (
    POOL_SATURATION,
    CACHE_SATURATION,
    UPSTREAM_SATURATION,
    QUEUE_SATURATION,
    CPU_SATURATION,
    GPU_SATURATION,
)
# A matcher of the machine's components, which a service's job does not select.
HOST_COMPONENTS = 'component=~"' + "|".join(s.component for s in SATURATIONS if s.host) + '"'
