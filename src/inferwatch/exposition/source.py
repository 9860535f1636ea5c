"""Which registry a scrape reads."""

from __future__ import annotations

from prometheus_client.registry import Collector

from inferwatch.metrics import multiprocess
from inferwatch.metrics.process import WorkersProcessCollector


def scrape_registry(registry: Collector) -> Collector:
    """In multiprocess mode each worker holds only its own values, so a scrape must read the
    shared directory instead of the in-process registry; it also gets the process metrics of
    every live worker, summed, which prometheus_client has none of in that mode."""
    path = multiprocess.directory()
    if path is None or not multiprocess.enabled():
        return registry
    merged = multiprocess.exposition_registry()
    WorkersProcessCollector(path, merged)
    return merged
