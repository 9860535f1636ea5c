"""A standalone exporter in the style of node_exporter: host, GPU, Redis and PostgreSQL
collectors, each reporting its own scrape duration and success, so one broken collector
never blanks the others. Run it with ``inferwatch exporter``.

A collector is a module named in ``config.COLLECTOR_MODULES`` with a ``build(config)`` and a
``METRICS`` tuple of :class:`~inferwatch.exporters.descriptors.Descriptor`: every family its
collector may emit, declared up front as node_exporter declares its descriptors. The metric
catalogue lists them, and the tests check that a collector emits exactly what it declares.
"""

from inferwatch.exporters.collector import Collector, CollectorError, CollectorRunner
from inferwatch.exporters.config import ConfigError, ExporterConfig, build_config
from inferwatch.exporters.redact import redact_text, redact_url
from inferwatch.exporters.server import Exporter, start_exporter

__all__ = [
    "Collector",
    "CollectorError",
    "CollectorRunner",
    "ConfigError",
    "Exporter",
    "ExporterConfig",
    "build_config",
    "redact_text",
    "redact_url",
    "start_exporter",
]
