"""What each alert means for an AI model-serving backend, its likely causes and first checks.

Kept as data so that ``runbooks.py`` can render one page per alert and a test can insist that
every alert the rules can produce has a page.
"""

from __future__ import annotations

from typing import NamedTuple


class Page(NamedTuple):
    meaning: str
    causes: tuple[str, ...]
    checks: tuple[str, ...]


PAGES: dict[str, Page] = {
    "APIHighLatencyP95": Page(
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
    "APIHighLatencyP99": Page(
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
    "APIHighErrorRate": Page(
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
    "WebSocketLowSuccessRate": Page(
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
    "HostHighCPUUsage": Page(
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
    "HostHighMemoryUsage": Page(
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
    "ProcessMemoryLeakSuspected": Page(
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
    "GPUHighUtilization": Page(
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
    "GPUHighMemoryUsage": Page(
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
    "GPUHighTemperature": Page(
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
    "GPUXidErrors": Page(
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
    "GPUCorrectedECCErrors": Page(
        "A GPU's memory corrects ECC errors; harmless alone, often a sign of ageing memory.",
        ("Degrading GPU memory cells.",),
        ("Watch the trend; schedule a replacement if the count keeps climbing.",),
    ),
    "GPUUncorrectedECCErrors": Page(
        "A GPU reported uncorrectable memory errors; results computed on it may be corrupt.",
        ("Failing GPU memory.",),
        (
            "Drain the node now and reset the GPU; retire the page or replace the card.",
            "Check whether recently produced outputs need to be regenerated.",
        ),
    ),
    "ExporterCollectorFailing": Page(
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
    "TargetDown": Page(
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
    "TargetAbsent": Page(
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
    "DBPoolHighUsage": Page(
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
    "DBPoolAcquireTimeouts": Page(
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
    "DBSlowQueries": Page(
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
    "RedisSlowOperations": Page(
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
    "CacheLowHitRate": Page(
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
    "ModelSlowInitialization": Page(
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
    "ModelLoadFailures": Page(
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
    "UpstreamCircuitOpen": Page(
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
    "UpstreamLowRetryRecovery": Page(
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
    "JobMemoryGrowth": Page(
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
    "APIAvailabilityBudgetBurn": Page(
        "The service fails requests (5xx, exceptions, streams broken halfway, clients that "
        "left) fast enough to exhaust its availability error budget well before the SLO "
        "window ends. Critical: the budget goes in hours or days; "
        "warning: in weeks.",
        (
            "An ongoing incident (see APIHighErrorRate for the route).",
            "A steady trickle of failures from a dependency or a bad release.",
        ),
        (
            "Find the routes with the highest `job_route:http_server_request_errors:ratio_rate5m`.",
            "Roll back recent changes if the burn started with a deployment.",
        ),
    ),
    "APILatencyBudgetBurn": Page(
        "Too many requests are slower than the latency SLO threshold, fast enough to exhaust "
        "the latency error budget before the SLO window ends.",
        (
            "Capacity: queueing for GPUs during traffic peaks.",
            "A slow dependency or a model reload.",
        ),
        (
            "Find the routes with the highest P95/P99 in the overview dashboard.",
            "Check queue depth, GPU saturation and pool usage.",
        ),
    ),
    "Watchdog": Page(
        "Always firing, by design: the dead-man's switch. Alertmanager sends it to a "
        "heartbeat receiver, which raises the alarm when it stops arriving.",
        (
            "If the heartbeat stops: Prometheus is down, rule evaluation fails, or the "
            "Prometheus-to-Alertmanager-to-receiver path is broken.",
        ),
        (
            "Check that Prometheus is up and its rule evaluations succeed.",
            "Check Alertmanager's status page and the heartbeat receiver.",
        ),
    ),
}
