"""inferwatch: Prometheus/Grafana observability for AI model-serving backends."""

from inferwatch.exposition import MetricsAuth, metrics_app, start_metrics_server
from inferwatch.http import instrument_app

__version__ = "0.1.0"

__all__ = ["MetricsAuth", "__version__", "instrument_app", "metrics_app", "start_metrics_server"]
