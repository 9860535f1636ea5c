"""Streaming: WebSocket connections, handshake success, setup time and message throughput."""

from __future__ import annotations

from inferwatch.alerts.thresholds import Thresholds
from inferwatch.dashboards import panels as p
from inferwatch.dashboards.model import DashboardSpec, Query
from inferwatch.dashboards.thresholds import steps

UID = "inferwatch-streaming"
ATTEMPTS = "websocket_server_connection_attempts_total"
SUCCESS = "job_route:websocket_server_connection_success:ratio_rate5m"
RAW = (p.JOB, p.INSTANCE, p.ROUTE)


def build(t: Thresholds) -> DashboardSpec:
    success_steps = steps(t, "websocket_success")
    stats = (
        p.stat(
            "Open connections",
            "WebSocket connections open right now.",
            "short",
            Query(f"sum(websocket_server_active_connections{p.sel(*RAW)})"),
            width=6,
        ),
        p.stat(
            "Handshake success",
            "Share of handshakes accepted over 5 minutes (worst route); amber below the "
            "WebSocketLowSuccessRate level.",
            "percentunit",
            Query(f"min({SUCCESS}{p.sel(p.JOB, p.ROUTE)})"),
            steps=success_steps,
            width=6,
        ),
        p.stat(
            "Setup time P95",
            "P95 time from the connect request to the application accepting it.",
            "s",
            Query(
                p.quantile("0.95", "websocket_server_connection_setup_duration_seconds", (), *RAW)
            ),
            width=6,
        ),
        p.stat(
            "Messages per second",
            "WebSocket messages per second, both directions.",
            "short",
            Query(f"sum(rate(websocket_server_messages_total{p.sel(*RAW)}[{p.RATE}]))"),
            width=6,
        ),
    )
    handshakes = (
        p.timeseries(
            "Handshake success rate by route",
            "Accepted share of handshakes per route (5m, recorded: what "
            "WebSocketLowSuccessRate reads); dashed line at its level.",
            "percentunit",
            Query(f"min by (http_route) ({SUCCESS}{p.sel(p.JOB, p.ROUTE)})", "{{http_route}}"),
            steps=success_steps,
            max=1,
        ),
        p.timeseries(
            "Handshakes by outcome",
            "Handshakes per second: accepted, rejected (closed or denied before accept) or "
            "failed (the application raised before accepting).",
            "cps",
            Query(p.sum_rate(ATTEMPTS, ("outcome",), *RAW), "{{outcome}}"),
        ),
    )
    setup = (
        p.timeseries(
            "Handshakes not accepted by route",
            "Rejected and failed handshakes per second, by route and outcome.",
            "cps",
            Query(
                p.sum_rate(ATTEMPTS, ("http_route", "outcome"), *RAW, 'outcome!="accepted"'),
                "{{http_route}} {{outcome}}",
            ),
            needs=p.fault("websocket_failure_rate", 0.5),
        ),
        p.timeseries(
            "Connection setup time",
            "P50, P95 and P99 time from the connect request to accept, per route.",
            "s",
            *p.quantile_queries(
                "websocket_server_connection_setup_duration_seconds",
                ("http_route",),
                "{{http_route}}",
                *RAW,
                which=("p50", "p95", "p99"),
            ),
        ),
    )
    throughput = (
        p.timeseries(
            "Messages per second by direction",
            "Messages received from and sent to clients, per second.",
            "short",
            Query(
                p.sum_rate("websocket_server_messages_total", ("http_route", "direction"), *RAW),
                "{{http_route}} {{direction}}",
            ),
            width=8,
        ),
        p.timeseries(
            "Connections closed by code",
            "Accepted connections ending per second, by close code and which side closed.",
            "cps",
            Query(
                p.sum_rate(
                    "websocket_server_connections_closed_total", ("close_code", "closed_by"), *RAW
                ),
                "{{close_code}} by {{closed_by}}",
            ),
            width=8,
        ),
        p.timeseries(
            "Session duration",
            "P50 and P95 lifetime of accepted connections.",
            "s",
            *p.quantile_queries(
                "websocket_server_session_duration_seconds",
                ("http_route",),
                "{{http_route}}",
                *RAW,
                which=("p50", "p95"),
            ),
            width=8,
        ),
    )
    return DashboardSpec(
        uid=UID,
        title="inferwatch / Streaming",
        description="Are streaming clients getting connected and served over WebSockets?",
        variables=(
            p.DATASOURCE,
            p.job_var(ATTEMPTS),
            p.instance_var(ATTEMPTS),
            p.label_var("route", "http_route", ATTEMPTS, "Route"),
        ),
        rows=(stats, handshakes, setup, throughput),
    )
