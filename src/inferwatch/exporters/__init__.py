"""A standalone exporter in the style of node_exporter: host, GPU and (later) backend
collectors, each reporting its own scrape duration and success, so one broken collector
never blanks the others. Run it with ``inferwatch exporter``.
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
