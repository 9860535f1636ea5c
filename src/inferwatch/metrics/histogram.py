"""Histogram: counts of observations in cumulative buckets, plus their sum."""

from __future__ import annotations

import itertools
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import prometheus_client
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from inferwatch.metrics._base import Metric
from inferwatch.metrics.mmapfile import GuardedMmapedDict, mmap_key


def validate_buckets(buckets: Sequence[float], *, what: str = "buckets") -> tuple[float, ...]:
    """Return the bucket bounds with +Inf appended; reject unsorted, duplicate or NaN bounds."""
    try:
        bounds = [float(b) for b in buckets]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers, got {list(buckets)!r}") from exc
    if not bounds:
        raise ValueError(f"{what} must not be empty")
    if any(math.isnan(b) for b in bounds):
        raise ValueError(f"{what} must not contain NaN")
    if any(b2 <= b1 for b1, b2 in itertools.pairwise(bounds)):
        raise ValueError(f"{what} must be strictly increasing, got {list(buckets)!r}")
    if bounds[-1] != math.inf:
        bounds.append(math.inf)
    return tuple(bounds)


class HistogramChild:
    __slots__ = ("_bounds", "_counts", "_exemplars", "_lock", "_sum")

    def __init__(self, bounds: tuple[float, ...], lock: threading.Lock | None = None) -> None:
        self._bounds = bounds
        self._counts = [0] * len(bounds)  # per bucket, not cumulative
        self._sum = 0.0
        self._lock = lock or threading.Lock()
        self._exemplars: list[Exemplar | None] | None = None

    def observe(self, value: float, exemplar: dict[str, str] | None = None) -> None:
        if value != value:  # NaN would poison the sum forever; it carries no information
            return
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le = "<=").
        index = bisect_left(self._bounds, value)
        self._lock.acquire()  # acquire/try/finally: half the cost of `with` on 3.11+
        try:
            self._counts[index] += 1
            self._sum += value
        finally:
            self._lock.release()
        if exemplar is not None:
            self._set_exemplar(index, value, exemplar)

    def observe_unlocked(self, value: float) -> None:
        """``observe`` for a caller already holding this child's (shared) lock."""
        if value == value:
            self._counts[bisect_left(self._bounds, value)] += 1
            self._sum += value

    def _set_exemplar(self, index: int, value: float, exemplar: dict[str, str]) -> None:
        if self._exemplars is None:
            self._exemplars = [None] * len(self._bounds)
        self._exemplars[index] = Exemplar(exemplar, value, time.time())

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self._counts), self._sum


class SharedHistogramChild(HistogramChild):
    """A histogram child whose bucket counts and sum are also written to this process's
    multiprocess file (see :mod:`inferwatch.metrics.store`): two stores into the mapping per
    observation, the bucket's count and the sum (the count is the sum of the buckets).
    The files carry no exemplars: ``exemplar`` is ignored."""

    __slots__ = ("__weakref__", "_file", "_key", "_metric", "_slots")

    def __init__(
        self, metric: Histogram, key: tuple[str, ...], lock: threading.Lock | None
    ) -> None:
        super().__init__(metric.buckets, lock)
        self._metric = metric
        self._key = key
        self._file: GuardedMmapedDict | None = None
        # One index per bucket, then the sum's; None: no place (yet).
        self._slots: list[int] | None = None

    def observe(self, value: float, exemplar: dict[str, str] | None = None) -> None:
        self._lock.acquire()
        try:
            self.observe_unlocked(value)
        finally:
            self._lock.release()

    def observe_unlocked(self, value: float) -> None:
        if value == value:
            index = bisect_left(self._bounds, value)
            counts = self._counts
            counts[index] += 1
            self._sum += value
            slots = self._slots
            if slots is not None:
                view: Any = self._file.view  # type: ignore[union-attr]
                view[slots[index]] = counts[index]
                view[slots[-1]] = self._sum
            else:
                self._metric._store.write_late(self)  # type: ignore[union-attr]

    def _store_where(self) -> tuple[str, list[str]]:
        return "histogram", self._metric._mmap_keys(self._key)

    def _store_placed(self, file: GuardedMmapedDict, slots: list[int], load: bool) -> None:
        view: Any = file.view
        counts = self._counts
        if load:
            for i, slot in enumerate(slots[:-1]):
                counts[i] = int(view[slot])
            self._sum = view[slots[-1]]
        else:
            for i, slot in enumerate(slots[:-1]):
                view[slot] = counts[i]
            view[slots[-1]] = self._sum
        self._file, self._slots = file, slots

    def _store_forked(self) -> None:
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._file, self._slots = None, None


class Histogram(Metric[HistogramChild]):
    kind = "histogram"
    _reserved_labels = frozenset({"le"})

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        **kwargs: Any,
    ) -> None:
        self.buckets = validate_buckets(buckets, what=f"buckets of {name}")
        self._bucket_names = [floatToGoString(b) for b in self.buckets]
        super().__init__(name, documentation, labelnames, **kwargs)

    def _local_child(self) -> HistogramChild:
        return HistogramChild(self.buckets, self._child_lock)

    def _shared_child(self, key: tuple[str, ...]) -> HistogramChild:
        return SharedHistogramChild(self, key, self._child_lock)

    def _mmap_keys(self, key: tuple[str, ...]) -> list[str]:
        """The bucket keys in bucket order, then the sum's (prometheus_client's keys)."""
        name, doc, names = self.name, self.documentation, self.labelnames
        bucket_names = (*names, "le")
        keys = [
            mmap_key(name, name + "_bucket", bucket_names, (*key, le), doc)
            for le in self._bucket_names
        ]
        keys.append(mmap_key(name, name + "_sum", names, key, doc))
        return keys

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            self.name, self.documentation, labels=self.labelnames, unit=self.unit
        )

    def _add_sample(self, family: Any, labelvalues: list[str], child: HistogramChild) -> None:
        counts, total = child.snapshot()
        exemplars = child._exemplars
        buckets: list[Any] = []
        cumulative = 0
        for i, name in enumerate(self._bucket_names):
            cumulative += counts[i]
            exemplar = exemplars[i] if exemplars is not None else None
            buckets.append((name, cumulative, exemplar) if exemplar else (name, cumulative))
        family.add_metric(labelvalues, buckets, total)

    def _multiprocess_metric(self) -> prometheus_client.Histogram:
        return prometheus_client.Histogram(
            self.name,
            self.documentation,
            self.labelnames,
            registry=None,
            buckets=self.buckets,
        )
