"""inferwatch: Prometheus/Grafana observability for AI model-serving backends.

The library a service imports is ``config``, ``metrics``, ``exposition``, ``http``,
``tracing``, ``ai``, ``pools`` and ``exporters``; it never imports the tooling (``alerts``,
``alertmanager``, ``generation``, ``catalogue``, ``dashboards``, ``deploy``, ``stack``,
``demo``, ``reports``, ``alertsink``, ``cli``). ``docs/architecture.md`` draws the rooms and
their one-way imports.
"""

from inferwatch.exposition import MetricsAuth, metrics_app, start_metrics_server
from inferwatch.http import instrument_app

__version__ = "0.1.0"

__all__ = ["MetricsAuth", "__version__", "instrument_app", "metrics_app", "start_metrics_server"]
