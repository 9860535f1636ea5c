"""Service overview: traffic, errors, latency per route, SLO status and firing alerts."""

from __future__ import annotations

from inferwatch.alerts import promql
from inferwatch.alerts.signals import HOST_COMPONENTS, SATURATION
from inferwatch.alerts.slo import SLIS, budget
from inferwatch.alerts.thresholds import Thresholds
from inferwatch.alerts.units import format_percent
from inferwatch.dashboards import panels as p
from inferwatch.dashboards.model import DashboardSpec, Panel, Query, Step, ref_id
from inferwatch.dashboards.thresholds import AMBER, GREEN, RED, steps

UID = "inferwatch-overview"
HTTP = "http_server_request_duration_seconds"
REQUESTS = "job_route:http_server_requests:rate5m"
ERRORS = "job_route:http_server_request_errors:rate5m"
ERROR_RATIO = "job_route:http_server_request_errors:ratio_rate5m"
RECORDED = p.sel(p.JOB, p.ROUTE)
RAW = (p.JOB, p.INSTANCE, p.ROUTE)
OVERRIDES = " Levels shown are the thresholds file's defaults; overrides there apply per route."


def _slo_panels(t: Thresholds) -> tuple[Panel, ...]:
    slo = t.slo
    window = promql.window(slo.window)
    count = f"{HTTP}_count"
    total = f"sum(increase({count}{p.sel(p.JOB)}[{window}]))"
    # Failed as the SLO's rules count it: a 5xx status or an error_type.
    failed = f"({promql.failed_requests(count, (), window, [p.JOB], 'increase')} or vector(0))"
    error_budget = promql.number(budget(t, SLIS[0]))
    objective = format_percent(slo.availability)
    availability = p.stat(
        f"Availability ({window})",
        f"Share of requests that did not fail (no 5xx status, no error_type) over the SLO "
        f"window of {window}, against the objective of {objective}: red below it.",
        "percentunit",
        Query(f"1 - {failed} / {total}"),
        steps=(Step(RED, None), Step(GREEN, float(slo.availability))),
    )
    remaining = p.stat(
        "Error budget left",
        f"Share of the {window} availability error budget ({format_percent(1 - slo.availability)}"
        " of requests may fail) not yet spent; red once it is used up.",
        "percentunit",
        Query(f"1 - ({failed} / {total}) / {error_budget}"),
        steps=(Step(RED, None), Step(GREEN, 0.0)),
    )
    queries: list[Query] = []
    query_steps: list[tuple[str, tuple[Step, ...]]] = []
    for sli in SLIS:
        for rate in t.slo.burn_rates:
            long = promql.window(rate.long)
            factor = float(rate.factor)
            color = RED if rate.severity == "critical" else AMBER
            queries.append(
                Query(
                    f"max({sli.ratio}{long}{p.sel(p.JOB)}) / {promql.number(budget(t, sli))}",
                    f"{sli.name} {long} (alerts at {promql.number(rate.factor)}x)",
                )
            )
            query_steps.append((ref_id(len(queries) - 1), (Step(GREEN, None), Step(color, factor))))
    burn = p.bargauge(
        "SLO burn rate",
        "How fast each SLI spends its error budget over the long window of each burn-rate "
        "alert (1x: exactly used up at the end of the SLO window). A bar turns amber or red "
        "at the factor its alert uses (the alert also needs the short window to agree).",
        "x",
        *queries,
        query_steps=tuple(query_steps),
        width=12,
        height=9,
    )
    return availability, remaining, burn


LIKELY = 1.0  # a saturation score at its judge's warning level
BOTTLENECK_SHOWN = 10


def bottleneck_query() -> str:
    """The ranking the panel shows, highest first. Every scored component is listed, so the
    panel has rows when nothing is saturated too. The service's components are those of the
    chosen jobs; the host's CPU and GPUs are the exporter's, whose job the job variable does
    not list (``inferwatch report`` reads them the same way)."""
    chosen = f"{SATURATION}{p.sel(p.JOB)} or {SATURATION}{p.sel(HOST_COMPONENTS)}"
    return f"sort_desc(topk({BOTTLENECK_SHOWN}, {chosen}))"


def _bottleneck() -> Panel:
    return p.bargauge(
        "Likely bottleneck now",
        "Each component's saturation score, highest first: how far what it makes work do "
        "(wait for a connection, miss the cache, wait on a dependency or in the model's "
        "queue, share a busy CPU or GPU) is from the warning level of the alert that judges "
        "it. 1 is at that warning: the likely constraint is the first bar at or above 1 "
        "(amber); none there, nothing is likely. Waiting and refusals count, never a "
        "momentary maximum: a pool that touched its limit without anyone waiting scores "
        "near 0.",
        "x",
        Query(bottleneck_query(), "{{component}} {{resource}}", instant=True),
        steps=(Step(GREEN, None), Step(AMBER, LIKELY)),
        width=24,
        height=7,
        max=2 * LIKELY,
    )


def build(t: Thresholds) -> DashboardSpec:
    availability, remaining, burn = _slo_panels(t)
    stats = (
        p.stat(
            "Request rate",
            "Requests per second over the last 5 minutes, all selected routes.",
            "reqps",
            Query(f"sum({REQUESTS}{RECORDED})"),
        ),
        p.stat(
            "Error ratio",
            "Share of failed requests (a 5xx status, or an error_type: an exception, a stream "
            "broken halfway, a client that left) over 5 minutes; amber and red at the "
            "APIHighErrorRate levels." + OVERRIDES,
            "percentunit",
            Query(f"sum({ERRORS}{RECORDED}) / sum({REQUESTS}{RECORDED})"),
            steps=steps(t, "api_error_rate"),
        ),
        p.stat(
            "Slowest route P95",
            "P95 response time of the slowest selected route over 5 minutes; amber and red at "
            "the APIHighLatencyP95 levels." + OVERRIDES,
            "s",
            Query(f"max(job_route:{HTTP}:p95_5m{RECORDED})"),
            steps=steps(t, "api_latency_p95"),
        ),
        p.stat(
            "In-flight requests",
            "HTTP requests being served right now, all instances.",
            "short",
            Query(f"sum(http_server_active_requests{p.sel(p.JOB, p.INSTANCE)})"),
        ),
        availability,
        remaining,
    )
    traffic = (
        p.timeseries(
            "Request rate by route",
            "Requests per second per route (5m rate, recorded).",
            "reqps",
            Query(f"sum by (http_route) ({REQUESTS}{RECORDED})", "{{http_route}}"),
        ),
        p.timeseries(
            "Error ratio by route",
            "Share of failed requests per route (5m, recorded: what APIHighErrorRate reads); "
            "dashed lines at its warning and critical levels." + OVERRIDES,
            "percentunit",
            Query(f"max by (http_route) ({ERROR_RATIO}{RECORDED})", "{{http_route}}"),
            steps=steps(t, "api_error_rate"),
        ),
    )
    latency = (
        p.timeseries(
            "Latency percentiles by route",
            "P50, P90, P95 and P99 response time per route over 5 minutes (recorded). Dashed "
            "lines: the APIHighLatencyP95 levels, which apply to P95." + OVERRIDES,
            "s",
            *(
                Query(
                    f"max by (http_route) (job_route:{HTTP}:{name}_5m{RECORDED})",
                    f"{{{{http_route}}}} {name}",
                )
                for name, _ in p.QUANTILES
            ),
            steps=steps(t, "api_latency_p95"),
            width=16,
            height=10,
        ),
        p.timeseries(
            "In-flight requests by method",
            "Requests being served right now by HTTP method; a climb without more traffic "
            "means requests are piling up.",
            "short",
            Query(
                f"sum by (http_request_method) (http_server_active_requests"
                f"{p.sel(p.JOB, p.INSTANCE)})",
                "{{http_request_method}}",
            ),
            width=8,
            height=10,
        ),
    )
    alerts = (
        burn,
        p.table(
            "Firing alerts",
            "Alerts Prometheus is firing now, with how many series each covers. Watchdog "
            "always fires: it proves the alerting path works.",
            "short",
            Query('sum by (alertname, severity) (ALERTS{alertstate="firing"})', instant=True),
            height=9,
        ),
    )
    failures = (
        p.timeseries(
            "Failed requests by route",
            "Failed requests per second by route and how they failed, counted as the SLO and "
            "APIHighErrorRate count them: a 5xx status or an error_type (the exception, the "
            "5xx status, 499 for a client that left; empty for another instrumentation's 5xx).",
            "reqps",
            Query(
                promql.failed_requests(f"{HTTP}_count", ("http_route", "error_type"), p.RATE, RAW),
                "{{http_route}} {{error_type}}",
            ),
            width=8,
            needs=p.fault("error_rate", 0.5),
        ),
        p.timeseries(
            "Unhandled exceptions by type",
            "Exceptions the application raised while serving a request, by exception type.",
            "cps",
            Query(
                p.sum_rate("http_server_exceptions_total", ("error_type",), *RAW),
                "{{error_type}}",
            ),
            width=8,
            needs=p.fault("error_rate", 0.5),
        ),
        p.timeseries(
            "Gateway timeouts (504) by route",
            "Requests that hit the service's own deadline, per second.",
            "reqps",
            Query(
                p.sum_rate(
                    f"{HTTP}_count", ("http_route",), *RAW, 'http_response_status_code="504"'
                ),
                "{{http_route}}",
            ),
            width=8,
            needs=p.fault("timeout_rate", 0.5),
        ),
    )
    streamed = (
        p.timeseries(
            "Time to first byte (streamed responses)",
            "P50 and P95 time from the request to the first body chunk of streamed responses.",
            "s",
            *p.quantile_queries(
                "http_server_time_to_first_byte_seconds",
                ("http_route",),
                "{{http_route}}",
                *RAW,
                which=("p50", "p95"),
            ),
        ),
        p.timeseries(
            "Background time after the response",
            "P95 time the application kept working after the response was sent (background "
            "tasks); not part of the request latency.",
            "s",
            *p.quantile_queries(
                "http_server_background_duration_seconds",
                ("http_route",),
                "{{http_route}}",
                *RAW,
                which=("p95",),
            ),
        ),
    )
    return DashboardSpec(
        uid=UID,
        title="inferwatch / Service overview",
        description="Is the service healthy right now: traffic, errors, latency, SLO, alerts.",
        variables=(
            p.DATASOURCE,
            p.job_var(f"{HTTP}_count"),
            p.instance_var(f"{HTTP}_count"),
            p.label_var("route", "http_route", f"{HTTP}_count", "Route"),
        ),
        rows=((_bottleneck(),), stats, traffic, latency, alerts, failures, streamed),
    )
