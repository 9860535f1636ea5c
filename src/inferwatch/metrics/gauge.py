"""Gauge: a value that goes up and down (requests in flight, open connections)."""

from __future__ import annotations

import threading
from typing import Any, Literal

import prometheus_client
from prometheus_client.metrics_core import GaugeMetricFamily

from inferwatch.metrics._base import Metric

# How multiprocess mode combines the per-worker values (prometheus_client's names):
# "livesum" sums live workers only, so a killed worker's in-flight requests vanish with it.
MultiprocessMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum",
    "mostrecent", "livemostrecent",
]  # fmt: skip


class GaugeChild:
    __slots__ = ("_lock", "_value")

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self._lock = lock or threading.Lock()
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._lock.acquire()  # acquire/try/finally: half the cost of `with` on 3.11+
        try:
            self._value += amount
        finally:
            self._lock.release()

    def dec(self, amount: float = 1.0) -> None:
        self._lock.acquire()  # acquire/try/finally: half the cost of `with` on 3.11+
        try:
            self._value -= amount
        finally:
            self._lock.release()

    def set(self, value: float) -> None:
        self._value = float(value)

    def get(self) -> float:
        return self._value


class Gauge(Metric[GaugeChild]):
    kind = "gauge"

    def __init__(
        self,
        name: str,
        documentation: str,
        *args: Any,
        multiprocess_mode: MultiprocessMode = "livesum",
        **kwargs: Any,
    ) -> None:
        self.multiprocess_mode = multiprocess_mode
        super().__init__(name, documentation, *args, **kwargs)

    def _local_child(self) -> GaugeChild:
        return GaugeChild(self._child_lock)

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.name, self.documentation, labels=self.labelnames, unit=self.unit
        )

    def _add_sample(self, family: Any, labelvalues: list[str], child: GaugeChild) -> None:
        family.add_metric(labelvalues, child._value)

    def _multiprocess_metric(self) -> prometheus_client.Gauge:
        return prometheus_client.Gauge(
            self.name,
            self.documentation,
            self.labelnames,
            registry=None,
            multiprocess_mode=self.multiprocess_mode,
        )
