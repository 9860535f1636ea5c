"""OpenTelemetry tracing (``otel`` extra) and trace-id exemplars for the latency histogram."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # pragma: no cover - exercised only without the extra
    trace = None  # type: ignore[assignment]


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


def trace_exemplar() -> dict[str, str] | None:
    """``{"trace_id": ...}`` for the current sampled span, if any."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return {"trace_id": format(span_context.trace_id, "032x")}
