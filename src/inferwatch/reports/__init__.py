"""Performance reports over a Prometheus time window: figures, bottleneck analysis,
production-readiness checks and threshold calibration (``inferwatch report``)."""

from __future__ import annotations

from inferwatch.reports.collect import collect
from inferwatch.reports.query import Window

__all__ = ["Window", "collect"]
