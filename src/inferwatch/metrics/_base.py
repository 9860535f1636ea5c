"""What every inferwatch metric type shares: name checks, the label-to-child cache, registration.

inferwatch keeps its own small metric classes instead of prometheus_client's because the
request middleware observes five or six values per request and prometheus_client's
``labels()`` and ``Histogram.observe`` (a linear bucket scan under two locks) cost several
microseconds each. The classes here register as ordinary prometheus_client collectors, so
any registry, exposition helper or multiprocess collector works with them unchanged.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.metrics import multiprocess

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

ChildT = TypeVar("ChildT")


class Metric(Generic[ChildT]):
    """A named metric with a fixed set of label names and one child per label-value tuple."""

    kind: str = ""
    _reserved_labels: frozenset[str] = frozenset()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry | None = REGISTRY,
        unit: str = "",
        lock: threading.Lock | None = None,
    ) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}: must match {_METRIC_NAME.pattern}")
        if not documentation:
            raise ValueError(f"metric {name!r} needs a help text")
        labelnames = tuple(labelnames)
        for label in labelnames:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"metric {name!r}: invalid label name {label!r}")
            if label in self._reserved_labels:
                raise ValueError(f"metric {name!r}: label {label!r} is reserved for {self.kind}s")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"metric {name!r}: duplicate label names in {labelnames}")
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.unit = unit
        self._lock = threading.Lock()
        # Children normally get a lock each; metrics that are always written together
        # (one request's histograms) can share one so a writer takes it once.
        self._child_lock = lock
        self._children: dict[tuple[str, ...], ChildT] = {}
        # In multiprocess mode values live in prometheus_client's per-process mmap files,
        # which the multiprocess collector merges at scrape time; this object then only
        # hands out children and collects nothing itself.
        self._shared = self._multiprocess_metric() if multiprocess.enabled() else None
        if registry is not None:
            registry.register(self)

    # -- children ---------------------------------------------------------------------------
    def labels(self, *values: Any) -> ChildT:
        """Return the child for these label values (positional, in ``labelnames`` order)."""
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(
                    f"metric {self.name!r} expects {len(self.labelnames)} label values "
                    f"{self.labelnames}, got {len(key)}"
                )
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = self._new_child(key)
                    self._children[key] = child
        return child

    def remove(self, *values: Any) -> None:
        """Drop one child, e.g. when the thing it described is gone."""
        key = tuple(str(v) for v in values)
        with self._lock:
            self._children.pop(key, None)
        if self._shared is not None and key:
            with contextlib.suppress(KeyError):
                self._shared.remove(*key)

    def clear(self) -> None:
        with self._lock:
            self._children.clear()
        if self._shared is not None and self.labelnames:
            self._shared.clear()

    def _new_child(self, key: tuple[str, ...]) -> ChildT:
        if self._shared is not None:
            return self._shared.labels(*key) if key else self._shared
        return self._local_child()

    # -- collector protocol -----------------------------------------------------------------
    def describe(self) -> Iterable[Any]:
        return [self._family()]

    def collect(self) -> Iterable[Any]:
        if self._shared is not None:
            return []
        family = self._family()
        with self._lock:
            children = list(self._children.items())
        for key, child in children:
            self._add_sample(family, list(key), child)
        return [family]

    # -- per type ---------------------------------------------------------------------------
    def _local_child(self) -> ChildT:
        raise NotImplementedError

    def _family(self) -> Any:
        raise NotImplementedError

    def _add_sample(self, family: Any, labelvalues: list[str], child: ChildT) -> None:
        raise NotImplementedError

    def _multiprocess_metric(self) -> Any:
        raise NotImplementedError
