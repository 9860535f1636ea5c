"""``instrument_app``: the one line that instruments a FastAPI or Starlette application."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.exposition.asgi import MetricsApp
from inferwatch.exposition.auth import MetricsAuth
from inferwatch.http.instruments import http_metrics
from inferwatch.http.middleware import HttpSettings, InferwatchMiddleware
from inferwatch.metrics import buckets, multiprocess

log = logging.getLogger("inferwatch")

DEFAULT_METRICS_PATH = "/metrics"
HEALTH_PATHS = ("/health", "/healthz", "/livez", "/readyz", "/ping")
_MARK = "_inferwatch_instrumented"


def instrument_app(
    app: Any,
    *,
    registry: CollectorRegistry = REGISTRY,
    metrics_path: str | None = DEFAULT_METRICS_PATH,
    metrics_auth: MetricsAuth | None = None,
    exclude_paths: Iterable[str] = HEALTH_PATHS,
    duration_buckets: Sequence[float] = buckets.DURATION_SECONDS,
    size_buckets: Sequence[float] = buckets.SIZE_BYTES,
    body_sizes: bool = False,
    tracing: bool = False,
    tracer_provider: Any = None,
) -> Any:
    """Record HTTP and WebSocket metrics for ``app`` and serve them at ``metrics_path``.

    Call it once, before the app starts serving. ``metrics_path=None`` serves nothing (use
    :func:`inferwatch.start_metrics_server` for a separate port, or mount
    :func:`inferwatch.metrics_app` yourself). ``exclude_paths`` are exact request paths left
    uninstrumented; the metrics path is always excluded. ``body_sizes=True`` also records
    request and response body sizes per (method, route, status): 32 series each, beside
    the request duration's 12 (docs/series-budget.md). ``tracing=True`` (needs the
    ``otel`` extra) creates spans through opentelemetry-instrumentation-fastapi and attaches
    each request's trace id to its latency bucket as an exemplar.
    """
    if getattr(app.state, _MARK, False):
        log.warning("inferwatch: %r is already instrumented; ignoring the second call", app)
        return app
    if metrics_path is not None and not metrics_path.startswith("/"):
        raise ValueError(f"metrics_path must start with '/', got {metrics_path!r}")
    if isinstance(exclude_paths, str):
        raise TypeError("exclude_paths must be a collection of paths, not a single string")
    excluded = set(exclude_paths)
    bad = sorted(p for p in excluded if not isinstance(p, str) or not p.startswith("/"))
    if bad:
        raise ValueError(f"exclude_paths must be absolute paths starting with '/': {bad!r}")
    if metrics_path is not None:
        excluded.add(metrics_path)

    metrics = http_metrics(registry, duration_buckets, size_buckets, body_sizes=body_sizes)
    exemplar = None
    if tracing:
        from inferwatch.tracing.otel import instrument_tracing, trace_exemplar

        instrument_tracing(app, tracer_provider=tracer_provider, excluded_paths=excluded)
        if not multiprocess.enabled():  # multiprocess files cannot carry exemplars
            exemplar = trace_exemplar

    try:
        app.add_middleware(
            InferwatchMiddleware,
            metrics=metrics,
            settings=HttpSettings(
                exclude_paths=frozenset(excluded), exemplar=exemplar, body_sizes=body_sizes
            ),
        )
    except RuntimeError as exc:
        raise RuntimeError(
            "instrument_app() must be called before the application starts serving "
            f"(Starlette said: {exc})"
        ) from None
    if metrics_path is not None:
        from starlette.routing import Route

        app.router.routes.append(
            Route(
                metrics_path,
                MetricsApp(registry, auth=metrics_auth),
                methods=["GET", "HEAD"],
                include_in_schema=False,
            )
        )
    if multiprocess.enabled():
        multiprocess.compact()  # a restarted worker cleans up after the one it replaces
    setattr(app.state, _MARK, True)
    return app
