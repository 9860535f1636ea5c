"""The HTTP and WebSocket metrics, named after the OpenTelemetry HTTP semantic conventions.

OTel's ``http.server.request.duration`` with attributes ``http.request.method``,
``http.route``, ``http.response.status_code`` and ``error.type`` is rendered the way
Prometheus renders OTLP metrics: ``http_server_request_duration_seconds{http_request_method,
http_route, http_response_status_code, error_type}``. Dashboards written for OTel-instrumented
services therefore work on inferwatch's metrics and back.

``error_type`` is empty for a request that succeeded (Prometheus stores an empty label as no
label, as OTel leaves the attribute out), so successes keep one series per status. For a
failed one it is the exception's class (bounded, see the middleware), or the status code of a
5xx response or of a client that left (499).

What a service exposes is kept lean, as OTel's conventions do (docs/series-budget.md has the
figures): by default one request-duration histogram per (method, route, status, error type)
and one in-flight gauge per method. The body-size histograms are opt-in
(``instrument_app(app, body_sizes=True)``). Time to first byte and background time get a
series only for the (method, route) pairs that streamed or kept working after the response,
so routes that never do have none.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from prometheus_client.registry import CollectorRegistry

from inferwatch.metrics import Counter, Gauge, Histogram, buckets
from inferwatch.metrics.shared import once_per_registry

METHOD = "http_request_method"
ROUTE = "http_route"
STATUS = "http_response_status_code"
ERROR_TYPE = "error_type"


class HttpMetrics:
    """Every metric the middleware writes, created once per registry."""

    def __init__(
        self,
        registry: CollectorRegistry | None,
        duration_buckets: Sequence[float] = buckets.DURATION_SECONDS,
        size_buckets: Sequence[float] = buckets.SIZE_BYTES,
        *,
        body_sizes: bool = False,
    ) -> None:
        self.duration_buckets = tuple(duration_buckets)
        self.size_buckets = tuple(size_buckets)
        self.registry = registry
        r = registry
        # One lock for everything a request writes at its end, so the middleware takes it
        # once per request instead of once per histogram.
        self.request_lock = lock = threading.Lock()
        self.request_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, from the first byte received to the last "
            "byte of the response body, or until the request failed or its client left "
            "(background tasks excluded). error_type says how a failed request failed "
            "(exception class, 5xx status, 499 for a client that left); empty for successes.",
            (METHOD, ROUTE, STATUS, ERROR_TYPE), buckets=duration_buckets, registry=r,
            unit="seconds", lock=lock,
        )  # fmt: skip
        self.active_requests = Gauge(
            "http_server_active_requests",
            "Number of HTTP requests whose response is not complete yet (work after the "
            "response, such as background tasks, is not counted).",
            (METHOD,), registry=r, multiprocess_mode="livesum", lock=lock,
        )  # fmt: skip
        # Opt-in, created by record_body_sizes(): 32 series per (method, route, status).
        self.request_body_size: Histogram | None = None
        self.response_body_size: Histogram | None = None
        self.time_to_first_byte = Histogram(
            "http_server_time_to_first_byte_seconds",
            "For streamed responses (more than one body chunk): time from the request to "
            "the first non-empty body chunk.",
            (METHOD, ROUTE), buckets=duration_buckets, registry=r, unit="seconds", lock=lock,
        )  # fmt: skip
        self.background_duration = Histogram(
            "http_server_background_duration_seconds",
            "Time the application kept working after the response was complete "
            "(background tasks, dependency teardown); not part of the request duration.",
            (METHOD, ROUTE), buckets=duration_buckets, registry=r, unit="seconds", lock=lock,
        )  # fmt: skip
        self.exceptions = Counter(
            "http_server_exceptions_total",
            "Unhandled exceptions raised by the application while serving a request, by "
            "exception type (bounded; rare types beyond the cap are counted as _OTHER).",
            (METHOD, ROUTE, ERROR_TYPE), registry=r,
        )  # fmt: skip
        self.ws_attempts = Counter(
            "websocket_server_connection_attempts_total",
            "WebSocket handshakes by outcome: accepted, rejected (closed or denied before "
            "accept) or failed (the application raised before accepting).",
            (ROUTE, "outcome"), registry=r,
        )  # fmt: skip
        self.ws_active = Gauge(
            "websocket_server_active_connections",
            "WebSocket connections currently open.",
            (ROUTE,), registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.ws_closed = Counter(
            "websocket_server_connections_closed_total",
            "Accepted WebSocket connections that ended, by close code and which side closed.",
            (ROUTE, "close_code", "closed_by"), registry=r,
        )  # fmt: skip
        self.ws_setup = Histogram(
            "websocket_server_connection_setup_duration_seconds",
            "Time from the WebSocket connect request to the application accepting it.",
            (ROUTE,), buckets=buckets.SETUP_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self.ws_session = Histogram(
            "websocket_server_session_duration_seconds",
            "Lifetime of accepted WebSocket connections.",
            (ROUTE,), buckets=buckets.SESSION_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self.ws_messages = Counter(
            "websocket_server_messages_total",
            "WebSocket messages by direction (received from or sent to the client).",
            (ROUTE, "direction"), registry=r,
        )  # fmt: skip
        self._define_lock = threading.Lock()
        if body_sizes:
            self.record_body_sizes()

    def record_body_sizes(self) -> None:
        """Create the body-size histograms (once; later calls do nothing).

        They are opt-in, as in OpenTelemetry's HTTP conventions: with the status among their
        labels each costs as many series as the request duration, which for most services
        is more than the sizes are worth.
        """
        with self._define_lock:
            if self.response_body_size is not None:
                return
            r, lock = self.registry, self.request_lock
            self.request_body_size = Histogram(
                "http_server_request_body_size_bytes",
                "Size of HTTP request bodies read by the application.",
                (METHOD, ROUTE, STATUS), buckets=self.size_buckets, registry=r, unit="bytes",
                lock=lock,
            )  # fmt: skip
            self.response_body_size = Histogram(
                "http_server_response_body_size_bytes",
                "Size of HTTP response bodies sent.",
                (METHOD, ROUTE, STATUS), buckets=self.size_buckets, registry=r, unit="bytes",
                lock=lock,
            )  # fmt: skip


def http_metrics(
    registry: CollectorRegistry | None,
    duration_buckets: Sequence[float] = buckets.DURATION_SECONDS,
    size_buckets: Sequence[float] = buckets.SIZE_BYTES,
    *,
    body_sizes: bool = False,
) -> HttpMetrics:
    """The registry's one set of HTTP metrics, created on first use; ``body_sizes=True``
    adds the body-size histograms to it if they are not there yet.

    Starlette rebuilds its middleware stack (and so our middleware) whenever it likes;
    sharing one set per registry is what keeps that from raising "Duplicated timeseries".
    """
    metrics = once_per_registry(
        registry, "http", lambda: HttpMetrics(registry, duration_buckets, size_buckets)
    )
    if (tuple(duration_buckets), tuple(size_buckets)) != (
        metrics.duration_buckets,
        metrics.size_buckets,
    ):
        raise ValueError(
            "this registry already holds inferwatch's HTTP metrics with other buckets; "
            "use the same buckets for every app instrumented into one registry, or give "
            "each app its own registry"
        )
    if body_sizes:
        metrics.record_body_sizes()
    return metrics
