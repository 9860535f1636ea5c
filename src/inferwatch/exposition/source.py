"""Which registry a scrape reads."""

from __future__ import annotations

from prometheus_client.registry import Collector

from inferwatch.metrics import multiprocess


def scrape_registry(registry: Collector) -> Collector:
    """In multiprocess mode each worker holds only its own values, so a scrape must read the
    shared directory instead of the in-process registry."""
    return multiprocess.exposition_registry() if multiprocess.enabled() else registry
