"""HTTP and WebSocket instrumentation for ASGI applications."""

from inferwatch.http.instrument import instrument_app
from inferwatch.http.instruments import HttpMetrics, http_metrics
from inferwatch.http.middleware import InferwatchMiddleware

__all__ = ["HttpMetrics", "InferwatchMiddleware", "http_metrics", "instrument_app"]
