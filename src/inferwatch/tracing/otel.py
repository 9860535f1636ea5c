"""OpenTelemetry tracing (``otel`` extra) and trace-id exemplars for the latency histogram."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # pragma: no cover - exercised only without the extra
    trace = None  # type: ignore[assignment]

log = logging.getLogger("inferwatch")

NO_PROVIDER_WARNING = (
    "inferwatch: tracing=True, but OpenTelemetry has no TracerProvider set, so spans are "
    "dropped and no exemplars are recorded; set one before serving, e.g. "
    "opentelemetry.trace.set_tracer_provider(TracerProvider()) from opentelemetry-sdk with a "
    "span processor, or pass instrument_app(..., tracer_provider=...)"
)

# One warning per process, however many apps are instrumented: the cause is process-wide.
_warned = False
_warned_lock = threading.Lock()


def _require_otel() -> None:
    if trace is None:
        raise ImportError("tracing needs the otel extra: pip install 'inferwatch[otel]'") from None


def instrument_tracing(
    app: Any, *, tracer_provider: Any = None, excluded_paths: Iterable[str] = ()
) -> None:
    """Create a server span per request via opentelemetry-instrumentation-fastapi."""
    _require_otel()
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:
        raise ImportError("tracing needs the otel extra: pip install 'inferwatch[otel]'") from None
    # The OTel middleware sits outside ours, so its span is current while we record the
    # latency and the exemplar can name the trace.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        excluded_urls=",".join(f"^{p}$" for p in sorted(excluded_paths)) or None,
    )
    # A started app refuses middleware; instrument_app reports that with its own message.
    if getattr(app, "middleware_stack", None) is None:
        app.add_middleware(_ProviderCheck, tracer_provider=tracer_provider)


def is_noop_provider(provider: Any) -> bool:
    """Whether spans from ``provider`` go nowhere: the API's proxy (nothing set) or no-op."""
    return isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def warn_if_no_provider(tracer_provider: Any = None) -> bool:
    """Log :data:`NO_PROVIDER_WARNING` once per process if spans would go nowhere.

    Returns whether spans go nowhere. Without ``tracer_provider`` the global one counts.
    """
    global _warned
    if not is_noop_provider(tracer_provider or trace.get_tracer_provider()):
        return False
    with _warned_lock:
        if not _warned:
            _warned = True
            log.warning(NO_PROVIDER_WARNING)
    return True


class _ProviderCheck:
    """Checks the tracer provider at the first request, not at instrument time.

    The API's proxy provider forwards to one set later, so a provider set after
    instrument_app (at import or in the lifespan) still records spans: only at the first
    request is "no provider" certain. After that check the layer only passes through.
    """

    def __init__(self, app: Any, tracer_provider: Any = None) -> None:
        self.app = app
        self.tracer_provider = tracer_provider
        self.pending = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.pending and scope["type"] in ("http", "websocket"):
            self.pending = False
            warn_if_no_provider(self.tracer_provider)
        await self.app(scope, receive, send)


def trace_exemplar() -> dict[str, str] | None:
    """``{"trace_id": ...}`` for the current sampled span, if any."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return {"trace_id": format(span_context.trace_id, "032x")}
