"""Input series for promtool tests: raw metrics shaped so the recorded value is known exactly.

A phase holds one target value for some samples. Counters grow at slopes proportional to the
wanted ratio, so every rate window yields the same ratio; histograms put all observations of a
phase in one bucket ``(lo, hi]`` whose bounds sit on the thresholds, so ``histogram_quantile``
interpolates to exactly ``lo + q * (hi - lo)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

from inferwatch.alerts.promql import le
from inferwatch.alerts.signals import Signal
from inferwatch.alerts.units import decimal_text

Region = tuple[Fraction, Fraction]  # the open interval the recorded value must fall in
Phase = tuple[Region, int]  # (region, number of samples)
Series = dict[str, str]
Labels = dict[str, str]

PER_STEP = Fraction(1000)  # events per scrape interval in ratio fixtures

DEFAULT_LABELS: dict[str, Labels] = {
    "http": {"job": "inferwatch-api", "http_route": "/v1/generate"},
    "host": {"job": "inferwatch-exporter", "instance": "gpu-node-1:9400"},
    "pool": {
        "job": "inferwatch-api",
        "db_system_name": "postgresql",
        "db_client_connection_pool_name": "main",
    },
    "cache": {"job": "inferwatch-api", "cache": "embeddings"},
    "model": {"job": "inferwatch-api", "model": "musicgen-small"},
    "gpu": {
        "job": "inferwatch-exporter",
        "instance": "gpu-node-1:9400",
        "gpu": "0",
        "uuid": "GPU-00000000-0000-0000-0000-000000000000",
    },
    "peer": {"job": "inferwatch-api", "peer": "tts"},
}


def quantile_of(signal: Signal) -> Fraction | None:
    """0.95 for a ``...:p95_5m`` series; None when the signal is not a quantile."""
    op = signal.series.rsplit(":", 1)[-1]
    if op.startswith("p") and "_" in op:
        return Fraction(op[1:].split("_")[0]) / 100
    return None


def window_of(signal: Signal) -> Fraction:
    """Seconds of history the recorded value spans (0 for instant gauges)."""
    op = signal.series.rsplit(":", 1)[-1]
    for suffix, seconds in (("1h", 3600), ("30m", 1800), ("15m", 900), ("5m", 300)):
        if op.endswith(suffix):
            return Fraction(seconds)
    return Fraction(0)


def value_in(signal: Signal, region: Region) -> Fraction:
    lo, hi = region
    q = quantile_of(signal)
    if q is not None:
        return lo + q * (hi - lo)
    return lo + (hi - lo) * (Fraction(9, 10) if signal.direction == "above" else Fraction(1, 10))


def labels_for(signal: Signal) -> Labels:
    if signal.key == "redis_operation_p90":
        return {
            **DEFAULT_LABELS["pool"],
            "db_system_name": "redis",
            "db_client_connection_pool_name": "cache",
        }
    if signal.key.startswith("gpu_ecc"):
        return {**DEFAULT_LABELS["gpu"], "type": signal.key.removeprefix("gpu_ecc_")}
    if signal.key == "model_load_failures":
        return {**DEFAULT_LABELS["model"], "reason": "oom"}
    if signal.key in ("memory_leak", "job_memory_growth"):  # the service's own process
        return {"job": "inferwatch-api", "instance": "api-1:8000"}
    group = {
        "job_route": "http", "instance": "host", "job_pool": "pool", "job_cache": "cache",
        "job_model": "model", "gpu": "gpu", "job_peer": "peer",
    }[signal.series.split(":", 1)[0]]  # fmt: skip
    return dict(DEFAULT_LABELS[group])


def _selector(metric: str, labels: Labels) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def gauge_values(values: Sequence[tuple[Fraction | None, int]]) -> str:
    """``[(v, n), ...]`` -> promtool notation; None is a gap (``_``)."""
    parts = []
    for value, n in values:
        if value is None:
            parts.append(f"_x{n}")  # n missing samples (``axn`` would be n+1 values)
        else:
            parts.append(f"{decimal_text(value)}+0x{n - 1}")
    return " ".join(parts)


def counter_values(slopes: Sequence[tuple[Fraction, int]]) -> str:
    """A counter starting at 0 and growing ``slope`` per sample during each phase."""
    parts, current, first = [], Fraction(0), True
    for slope, n in slopes:
        start = current if first else current + slope
        parts.append(f"{decimal_text(start)}+{decimal_text(slope)}x{n - 1}")
        current = start + slope * (n - 1)
        first = False
    return " ".join(parts)


def _split(name: str, labels: Labels, phases: Sequence[Phase], share: Callable, parts) -> list:
    """Counters ``name{part}`` whose slopes are ``share(value, part) * PER_STEP``."""
    out = []
    for part_labels in parts:
        slopes = [(share(v, part_labels) * PER_STEP, n) for v, n in phases]
        out.append(
            {"series": _selector(name, {**labels, **part_labels}), "values": counter_values(slopes)}
        )
    return out


def _ratio_counters(name: str, labels: Labels, values, good: Labels, bad: Labels) -> list[Series]:
    return _split(name, labels, values, lambda v, p: v if p == good else 1 - v, [good, bad])


def _histogram(name: str, labels: Labels, phases: Sequence[Phase]) -> list[Series]:
    bounds = sorted({b for (lo, hi), _ in phases for b in (lo, hi) if b > 0})
    out = []
    for bound in [*bounds, None]:
        slopes = []
        for (_, hi), n in phases:
            inside = bound is None or bound >= hi
            slopes.append((Fraction(10) if inside else Fraction(0), n))
        le_value = "+Inf" if bound is None else le(bound)
        series = _selector(f"{name}_bucket", {**labels, "le": le_value})
        out.append({"series": series, "values": counter_values(slopes)})
    return out


def _events(name: str, labels: Labels, values, window: Fraction, step: Fraction) -> list[Series]:
    slopes = [(v * step / window, n) for v, n in values]
    return [{"series": _selector(name, labels), "values": counter_values(slopes)}]


def threshold_series(
    signal: Signal, labels: Labels, phases: Sequence[Phase], step: Fraction
) -> list[Series]:
    """Raw input series making ``signal``'s recorded value fall in each phase's region."""
    values = [(value_in(signal, region), n) for region, n in phases]
    key = signal.key
    http = {"http_request_method": "POST", "http_response_status_code": "200"}
    if key in ("api_latency_p95", "api_latency_p99"):
        return _histogram("http_server_request_duration_seconds", {**labels, **http}, phases)
    if key in ("db_query_p90", "redis_operation_p90"):
        op = {"db_operation_name": "GET" if key.startswith("redis") else "SELECT"}
        return _histogram("db_client_operation_duration_seconds", {**labels, **op}, phases)
    if key == "model_load_duration":
        return _histogram(
            "inferwatch_model_load_duration_seconds", {**labels, "outcome": "success"}, phases
        )
    if key == "api_error_rate":
        # As the middleware writes them: a failed request carries its error_type.
        ok = {"http_response_status_code": "200"}
        failed = {"http_response_status_code": "500", "error_type": "500"}
        return _ratio_counters(
            "http_server_request_duration_seconds_count",
            {**labels, "http_request_method": "POST"}, values, failed, ok,
        )  # fmt: skip
    if key == "websocket_success":
        return _ratio_counters(
            "websocket_server_connection_attempts_total", labels, values,
            {"outcome": "accepted"}, {"outcome": "rejected"},
        )  # fmt: skip
    if key == "cpu_usage":
        return _ratio_counters(
            "inferwatch_host_cpu_seconds_total", labels, values, {"mode": "user"}, {"mode": "idle"}
        )
    if key == "cache_hit_rate":
        return _ratio_counters(
            "inferwatch_cache_gets_total", labels, values, {"result": "hit"}, {"result": "miss"}
        )
    if key == "upstream_retry_recovery":
        return _ratio_counters(
            "inferwatch_upstream_calls_total", labels, values,
            {"outcome": "recovered"}, {"outcome": "failed"},
        )  # fmt: skip
    if key == "upstream_circuit_open":  # breakers (one per worker) in the open state
        state = {**labels, "state": "open"}
        return [
            {"series": _selector("inferwatch_upstream_circuit_state", state),
             "values": gauge_values(values)},
        ]  # fmt: skip
    if key == "memory_usage":
        total = Fraction(10**6)
        return [
            {"series": _selector("inferwatch_host_memory_total_bytes", labels),
             "values": gauge_values([(total, n) for _, n in values])},
            {"series": _selector("inferwatch_host_memory_available_bytes", labels),
             "values": gauge_values([((1 - v) * total, n) for v, n in values])},
        ]  # fmt: skip
    if key in ("gpu_memory", "db_pool_usage"):
        total = Fraction(10**6) if key == "gpu_memory" else Fraction(100)
        if key == "gpu_memory":
            used, size = "inferwatch_gpu_memory_used_bytes", "inferwatch_gpu_memory_total_bytes"
            used_labels = labels
        else:
            used, size = "db_client_connections_usage", "db_client_connection_max"
            used_labels = {**labels, "db_client_connection_state": "used"}
        return [
            {"series": _selector(used, used_labels),
             "values": gauge_values([(v * total, n) for v, n in values])},
            {"series": _selector(size, labels),
             "values": gauge_values([(total, n) for _, n in values])},
        ]  # fmt: skip
    if key == "memory_leak":
        # RSS growing at the wanted slope (bytes/s), on a target serving inferwatch's HTTP
        # metrics, which is what makes it a service process the rule judges.
        return [
            {"series": _selector("process_resident_memory_bytes", labels),
             "values": counter_values([(v * step, n) for v, n in values])},
            {"series": _selector("http_server_active_requests",
                                  {**labels, "http_request_method": "GET"}),
             "values": gauge_values([(Fraction(0), n) for _, n in values])},
        ]  # fmt: skip
    gauges = {
        "gpu_utilization": "inferwatch_gpu_utilization_ratio",
        "gpu_temperature": "inferwatch_gpu_temperature_celsius",
        "job_memory_growth": "inferwatch_job_memory_growth_ratio",
    }
    if key in gauges:
        return [{"series": _selector(gauges[key], labels), "values": gauge_values(values)}]
    counters = {
        "db_pool_timeouts": ("db_client_connection_timeouts_total", {}),
        "model_load_failures": ("inferwatch_model_load_failures_total", {"phase": "to_device"}),
        "gpu_xid_errors": ("inferwatch_gpu_xid_errors_total", {}),
        "gpu_ecc_corrected": ("inferwatch_gpu_ecc_errors_total", {}),
        "gpu_ecc_uncorrected": ("inferwatch_gpu_ecc_errors_total", {}),
    }
    name, extra = counters[key]
    return _events(name, {**labels, **extra}, values, window_of(signal), step)
