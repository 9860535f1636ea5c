"""Counter: a value that only goes up (requests served, bytes sent, errors seen)."""

from __future__ import annotations

import threading
from typing import Any

import prometheus_client
from prometheus_client.metrics_core import CounterMetricFamily

from inferwatch.metrics._base import Metric
from inferwatch.metrics.mmapfile import GuardedMmapedDict, mmap_key


class CounterChild:
    __slots__ = ("_lock", "_value")

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self._lock = lock or threading.Lock()
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counters only go up; got inc({amount})")
        self._lock.acquire()  # acquire/try/finally: half the cost of `with` on 3.11+
        try:
            self._value += amount
        finally:
            self._lock.release()

    def get(self) -> float:
        return self._value


class SharedCounterChild(CounterChild):
    """A counter child whose value is also written to this process's multiprocess file
    (see :mod:`inferwatch.metrics.store`): one store into the mapping per write."""

    __slots__ = ("__weakref__", "_file", "_key", "_metric", "_slot")

    def __init__(self, metric: Counter, key: tuple[str, ...], lock: threading.Lock | None) -> None:
        super().__init__(lock)
        self._metric = metric
        self._key = key
        self._file: GuardedMmapedDict | None = None
        self._slot = 0  # 0: no place (yet); the header occupies index 0 of every file

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counters only go up; got inc({amount})")
        self._lock.acquire()
        try:
            self._value += amount
            if self._slot:
                self._file.view[self._slot] = self._value  # type: ignore[union-attr,index]
            else:
                self._metric._store.write_late(self)  # type: ignore[union-attr]
        finally:
            self._lock.release()

    def _store_where(self) -> tuple[str, list[str]]:
        return "counter", self._metric._mmap_keys(self._key)

    def _store_placed(self, file: GuardedMmapedDict, slots: list[int], load: bool) -> None:
        view: Any = file.view
        if load:
            self._value = view[slots[0]]
        else:
            view[slots[0]] = self._value
        self._file, self._slot = file, slots[0]

    def _store_forked(self) -> None:
        self._value = 0.0
        self._file, self._slot = None, 0


class Counter(Metric[CounterChild]):
    kind = "counter"

    def __init__(self, name: str, documentation: str, *args: Any, **kwargs: Any) -> None:
        # Like prometheus_client, accept the name with or without `_total`.
        super().__init__(name.removesuffix("_total"), documentation, *args, **kwargs)

    def _local_child(self) -> CounterChild:
        return CounterChild(self._child_lock)

    def _shared_child(self, key: tuple[str, ...]) -> CounterChild:
        return SharedCounterChild(self, key, self._child_lock)

    def _mmap_keys(self, key: tuple[str, ...]) -> list[str]:
        return [mmap_key(self.name, self.name + "_total", self.labelnames, key, self.documentation)]

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            self.name, self.documentation, labels=self.labelnames, unit=self.unit
        )

    def _add_sample(self, family: Any, labelvalues: list[str], child: CounterChild) -> None:
        family.add_metric(labelvalues, child._value)

    def _multiprocess_metric(self) -> prometheus_client.Counter:
        return prometheus_client.Counter(
            self.name, self.documentation, self.labelnames, registry=None
        )
