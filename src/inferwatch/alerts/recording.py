"""Recording rules: the ratios and quantiles that alerts and dashboards share.

Names follow ``level:metric:operation``. Each alert reads one recorded series, so the
threshold comparison stays trivial and a dashboard panel shows exactly what the alert saw.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from inferwatch.alerts import promql, signals
from inferwatch.alerts.promql import failed_requests, le, quantile, sum_rate
from inferwatch.alerts.signals import (
    HTTP_DURATION,
    PEER,
    POOL,
    SATURATION,
    UPSTREAM_CALLS,
    Pressure,
    Saturation,
    Signal,
)
from inferwatch.alerts.thresholds import Levels, Thresholds

Rule = dict[str, str]
_rule = signals.rule


def _of(*placed: Signal) -> list[Rule]:
    """The recording rules of signals placed here, between rules only panels read."""
    return [r for signal in placed if signal.recording is not None for r in signal.recording.rules]


def _http() -> list[Rule]:
    return [
        *_of(signals.API_ERROR_RATE),
        signals.http_quantile("p50", "0.5"),
        signals.http_quantile("p90", "0.9"),
        *_of(signals.API_LATENCY_P95, signals.API_LATENCY_P99, signals.WEBSOCKET_SUCCESS),
    ]


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
    wait = "db_client_connection_wait_time_seconds"
    redis_hits = "sum by (job, instance) (rate(inferwatch_redis_keyspace_hits_total[5m]))"
    redis_misses = "sum by (job, instance) (rate(inferwatch_redis_keyspace_misses_total[5m]))"
    return [
        *_of(signals.DB_POOL_USAGE),
        _rule(
            "job_pool:db_client_connection_pending_requests:sum",
            f"sum {promql.by(POOL)} (db_client_connection_pending_requests)",
        ),
        *_of(signals.DB_POOL_TIMEOUTS),
        _rule(f"job_pool:{wait}:p90_5m", quantile("0.9", wait, POOL, "5m")),
        *_of(signals.DB_QUERY_P90, signals.REDIS_OPERATION_P90, signals.CACHE_HIT_RATE),
        _rule(
            "instance:inferwatch_redis_keyspace_hit:ratio_rate5m",
            f"{redis_hits} / ({redis_hits} + {redis_misses})",
        ),
    ]


CLIENT_DURATION = "http_client_request_duration_seconds"
RECOVERY = "inferwatch_upstream_circuit_recovery_seconds"
INCOMPLETE = 'outcome=~"partial|failed"'


def _upstream() -> list[Rule]:
    """Dependencies: attempts and their failures, the share of failed first attempts a retry
    saved, breakers not closed, and how long an open breaker took to close (an MTTR)."""
    attempts = "job_peer:http_client_requests:rate5m"
    count = f"{CLIENT_DURATION}_count"
    return [
        _rule(attempts, sum_rate(count, PEER, "5m")),
        _rule(
            "job_peer:http_client_request_errors:ratio_rate5m",
            f"({sum_rate(count, PEER, '5m', [promql.ERROR_TYPE_SET])} or {attempts} * 0)"
            f" / {attempts}",
        ),
        _rule(f"job_peer:{CLIENT_DURATION}:p95_5m", quantile("0.95", CLIENT_DURATION, PEER, "5m")),
        _rule("job_peer:inferwatch_upstream_calls:rate5m", sum_rate(UPSTREAM_CALLS, PEER, "5m")),
        *_of(signals.UPSTREAM_RETRY_RECOVERY, signals.UPSTREAM_CIRCUIT_OPEN),
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
        *_of(signals.JOB_MEMORY_GROWTH),
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


def pressure_unit(pressure: Pressure, thresholds: Thresholds) -> Fraction | None:
    """The value of ``pressure`` that scores 1: its judge's warning (else critical) level,
    read the way that signal reads it; None when the judge has no level to scale by."""
    signal = pressure.judged_by
    levels = thresholds.signals.get(signal.key)
    if not isinstance(levels, Levels):
        return None
    level = levels.warning if levels.warning is not None else levels.critical
    if level is None:
        return None
    if signal.direction == "below":  # the shortfall 1 - value against 1 - level
        return 1 - level if level < 1 else None
    if signal.kind == "count":  # whole events: "above 0" is reached by the first one
        return max(level, Fraction(1))
    return level if level > 0 else None


def pressure_score(pressure: Pressure, thresholds: Thresholds) -> str | None:
    """PromQL of ``pressure`` in score units (1 = at its judge's level)."""
    unit = pressure_unit(pressure, thresholds)
    if unit is None:
        return None
    value = pressure.expr
    if pressure.judged_by.direction == "below":
        value = f"(1 - {value})"
    return value if unit == 1 else f"{value} / {promql.number(unit)}"


def saturation_rules(saturation: Saturation, thresholds: Thresholds) -> list[Rule]:
    """What the component's score reads, then the score: the highest of its pressures per
    resource. ``>= 0`` drops NaN (a quantile over a window without observations), so a
    resource without a figure has no score rather than one that sorts anywhere."""
    terms = [
        f'label_replace({score}, "pressure", "{p.name}", "", "")'
        for p in saturation.pressures
        if (score := pressure_score(p, thresholds)) is not None
    ]
    if not terms:
        return []
    expr = f"max {promql.by(saturation.labels)} ({' or '.join(terms)}) >= 0"
    return [*saturation.prepare, _rule(saturation.series, expr)]


def _bottleneck(thresholds: Thresholds) -> list[Rule]:
    """Each component's saturation score, then all of them in one series (labels
    ``component`` and ``resource`` beside the component's own): the live bottleneck ranking
    the overview dashboard and ``inferwatch report`` read."""
    rules: list[Rule] = []
    parts = []
    for saturation in signals.SATURATIONS:
        made = saturation_rules(saturation, thresholds)
        if not made:
            continue
        rules += made
        named = (
            f'label_join({saturation.series}, "resource", "/", '
            + ", ".join(f'"{label}"' for label in saturation.resource)
            + ")"
        )
        parts.append(f'label_replace({named}, "component", "{saturation.component}", "", "")')
    if parts:
        rules.append(_rule(SATURATION, " or ".join(parts)))
    return rules


def groups(thresholds: Thresholds) -> list[dict[str, Any]]:
    """The rule groups, each in evaluation order: a rule that reads another comes after it.

    The layouts above place the rules only panels read between the signals' own. A signal
    they do not place gets its rules appended to its group (a new group when none has that
    name), so a new signal needs no edit here. A record two signals share is written once;
    one name with two expressions is a mistake in the definitions.
    """
    interval = promql.window(thresholds.settings.evaluation_interval)
    made: dict[str, list[Rule]] = {
        "http": _http(),
        "slo": _slo(thresholds),
        "pools": _pools(),
        "models": [],  # only signals' rules, in the order of SIGNALS
        "resources": [],
        "upstream": _upstream(),
        "jobs": _jobs(),
        "cost": _cost(thresholds),
        "bottleneck": _bottleneck(thresholds),
    }
    for signal in signals.SIGNALS:
        if signal.recording is not None:
            made.setdefault(signal.recording.group, []).extend(signal.recording.rules)
    seen: dict[str, str] = {}
    result = []
    for name, rules in made.items():
        unique = []
        for rule in rules:
            record, expr = rule["record"], rule["expr"]
            if record in seen:
                if seen[record] != expr:
                    raise ValueError(f"{record} is recorded as both {seen[record]} and {expr}")
                continue
            seen[record] = expr
            unique.append(dict(rule))  # a copy: callers may adjust the groups they get
        if unique:
            result.append(
                {"name": f"inferwatch.{name}.rules", "interval": interval, "rules": unique}
            )
    return result


def record_names(thresholds: Thresholds) -> list[str]:
    return [r["record"] for g in groups(thresholds) for r in g["rules"]]
