"""Helpers shared by the test modules: real servers, /metrics scrapes, polling."""

from .metrics import (
    Exact,
    Metrics,
    bucket,
    registry_samples,
    samples,
    scrape,
    value,
    wait_for_metrics,
)
from .polling import wait_until
from .server import Server, StartDemo, demo_command, free_port, serve

__all__ = [
    "Exact",
    "Metrics",
    "Server",
    "StartDemo",
    "bucket",
    "demo_command",
    "free_port",
    "registry_samples",
    "samples",
    "scrape",
    "serve",
    "value",
    "wait_for_metrics",
    "wait_until",
]
