"""Metric types as plain classes, and multiprocess support."""

from inferwatch.metrics.counter import Counter, CounterChild
from inferwatch.metrics.gauge import Gauge, GaugeChild
from inferwatch.metrics.histogram import Histogram, HistogramChild, validate_buckets

__all__ = [
    "Counter",
    "CounterChild",
    "Gauge",
    "GaugeChild",
    "Histogram",
    "HistogramChild",
    "validate_buckets",
]
