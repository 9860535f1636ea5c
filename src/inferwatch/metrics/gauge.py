"""Gauge: a value that goes up and down (requests in flight, open connections)."""

from __future__ import annotations

import threading
import time
from typing import Any, Literal, get_args

import prometheus_client
from prometheus_client.metrics_core import GaugeMetricFamily

from inferwatch.metrics._base import Metric
from inferwatch.metrics.mmapfile import GuardedMmapedDict, mmap_key

# How multiprocess mode combines the per-worker values (prometheus_client's names):
# "livesum" sums live workers only, so a killed worker's in-flight requests vanish with it.
MultiprocessMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum",
    "mostrecent", "livemostrecent",
]  # fmt: skip
_MODES = frozenset(get_args(MultiprocessMode))
_MOST_RECENT = frozenset({"mostrecent", "livemostrecent"})


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


class SharedGaugeChild(GaugeChild):
    """A gauge child whose value is also written to this process's multiprocess file (see
    :mod:`inferwatch.metrics.store`). In the ``mostrecent`` modes every write also stamps
    the time, which is what those modes compare across workers."""

    __slots__ = ("__weakref__", "_file", "_key", "_metric", "_slot", "_stamped")

    def __init__(self, metric: Gauge, key: tuple[str, ...], lock: threading.Lock | None) -> None:
        super().__init__(lock)
        self._metric = metric
        self._key = key
        self._stamped = metric.multiprocess_mode in _MOST_RECENT
        self._file: GuardedMmapedDict | None = None
        self._slot = 0  # 0: no place (yet); the header occupies index 0 of every file

    def inc(self, amount: float = 1.0) -> None:
        self._lock.acquire()
        try:
            self._value += amount
            self._write()
        finally:
            self._lock.release()

    def dec(self, amount: float = 1.0) -> None:
        self._lock.acquire()
        try:
            self._value -= amount
            self._write()
        finally:
            self._lock.release()

    def set(self, value: float) -> None:
        value = float(value)
        self._lock.acquire()  # in order with inc/dec: the file must end with the last write
        try:
            self._value = value
            self._write()
        finally:
            self._lock.release()

    def _write(self) -> None:
        slot = self._slot
        if not slot:
            self._metric._store.write_late(self)  # type: ignore[union-attr]
            return
        view: Any = self._file.view  # type: ignore[union-attr]
        view[slot] = self._value
        if self._stamped:
            view[slot + 1] = time.time()

    def _store_where(self) -> tuple[str, list[str]]:
        return f"gauge_{self._metric.multiprocess_mode}", self._metric._mmap_keys(self._key)

    def _store_placed(self, file: GuardedMmapedDict, slots: list[int], load: bool) -> None:
        view: Any = file.view
        slot = slots[0]
        if load:
            self._value = view[slot]
        else:
            view[slot] = self._value
            if self._stamped:
                view[slot + 1] = time.time()
        self._file, self._slot = file, slot

    def _store_forked(self) -> None:
        self._value = 0.0
        self._file, self._slot = None, 0


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
        if multiprocess_mode not in _MODES:
            raise ValueError(f"gauge {name!r}: unknown multiprocess mode {multiprocess_mode!r}")
        self.multiprocess_mode = multiprocess_mode
        super().__init__(name, documentation, *args, **kwargs)

    def _local_child(self) -> GaugeChild:
        return GaugeChild(self._child_lock)

    def _shared_child(self, key: tuple[str, ...]) -> GaugeChild:
        return SharedGaugeChild(self, key, self._child_lock)

    def _mmap_keys(self, key: tuple[str, ...]) -> list[str]:
        return [mmap_key(self.name, self.name, self.labelnames, key, self.documentation)]

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
