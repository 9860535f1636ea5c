"""Serving /metrics: mounted on the app or on a port of its own."""

from inferwatch.exposition.asgi import MetricsApp, metrics_app
from inferwatch.exposition.auth import MetricsAuth
from inferwatch.exposition.limits import ServerLimits
from inferwatch.exposition.render import render
from inferwatch.exposition.server import MetricsServer, start_metrics_server

__all__ = [
    "MetricsApp",
    "MetricsAuth",
    "MetricsServer",
    "ServerLimits",
    "metrics_app",
    "render",
    "start_metrics_server",
]
