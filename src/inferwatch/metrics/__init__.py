"""Metric types as plain classes, and multiprocess support."""

from inferwatch.metrics.counter import Counter, CounterChild
from inferwatch.metrics.gauge import Gauge, GaugeChild
from inferwatch.metrics.histogram import Histogram, HistogramChild, validate_buckets
from inferwatch.metrics.shared import guard_multiprocess_files

guard_multiprocess_files()

__all__ = [
    "Counter",
    "CounterChild",
    "Gauge",
    "GaugeChild",
    "Histogram",
    "HistogramChild",
    "validate_buckets",
]
