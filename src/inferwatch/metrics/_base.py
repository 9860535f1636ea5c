"""What every inferwatch metric type shares: name checks, the label-to-child cache, registration.

inferwatch keeps its own small metric classes instead of prometheus_client's because the
request middleware observes five or six values per request and prometheus_client's
``labels()`` and ``Histogram.observe`` (a linear bucket scan under two locks) cost several
microseconds each. The classes here register as ordinary prometheus_client collectors, so
any registry, exposition helper or multiprocess collector works with them unchanged.

Label values. A value is a label's text: a ``str`` is taken as the characters it holds, a
``str`` subclass too (a ``StrEnum`` or ``(str, Enum)`` member, ``numpy.str_``), never through
its ``__str__``; anything else through ``str()`` (``200`` is ``"200"``, ``True`` is
``"True"``, so an int and a bool never share a child). :func:`label_value` is the rule.
``labels()`` with values that are already strings costs one dict lookup: the children are
keyed by tuples of exact ``str``, and a tuple of other values finds a child only if every
value compares equal to its label text, which for ``str`` subclasses (that keep ``str``'s
``==`` and hash) is the same text the rule gives, and for numbers, bools and ``None`` never
happens, so they are converted and looked up again. prometheus_client differs only for
``(str, Enum)`` members, which it labels with their ``str()`` (``Color.RED``).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.metrics import multiprocess, store

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

ChildT = TypeVar("ChildT")


def label_value(value: object) -> str:
    """The label text of ``value``: its characters for a ``str`` (subclasses included), its
    ``str()`` for anything else."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)  # an exact str of the same characters, whatever __str__ says
    return str(value)


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
        # In multiprocess mode values live in per-process mmap files, which the multiprocess
        # collector merges at scrape time; this object then only hands out children and
        # collects nothing itself. Normally the children write the files through inferwatch's
        # store; where it could not be installed, they are prometheus_client's own.
        self._store: store.ProcessStore | None = None
        self._shared: Any = None  # None: in-process values, collected from this object
        if multiprocess.enabled():
            self._store = store.active()
            self._shared = self._store or self._multiprocess_metric()
        if registry is not None:
            registry.register(self)

    # -- children ---------------------------------------------------------------------------
    def labels(self, *values: Any) -> ChildT:
        """Return the child for these label values (positional, in ``labelnames`` order).

        Values that are strings already cost one dict lookup; see the module's docstring
        for how other values become label text."""
        try:
            child = self._children.get(values)
        except TypeError:  # an unhashable value: only its str() can be a label value
            child = None
        if child is None:
            return self._labels_slow(values)
        return child

    def _labels_slow(self, values: tuple[Any, ...]) -> ChildT:
        key = tuple([label_value(v) for v in values])
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
        """Drop one child, e.g. when the thing it described is gone.

        Not in multiprocess mode, whose files cannot forget a series: the child stays, and
        the series keeps being reported with its last value (a child created anew would
        continue from the file's value anyway, with two writers for it if the old one is
        still held somewhere)."""
        if self._store is not None:
            return
        key = tuple([label_value(v) for v in values])
        with self._lock:
            self._children.pop(key, None)
        if self._shared is not None and key:
            with contextlib.suppress(KeyError):
                self._shared.remove(*key)

    def clear(self) -> None:
        """Drop every child (not in multiprocess mode; see :meth:`remove`)."""
        if self._store is not None:
            return
        with self._lock:
            self._children.clear()
        if self._shared is not None and self.labelnames:
            self._shared.clear()

    def _new_child(self, key: tuple[str, ...]) -> ChildT:
        if self._store is not None:
            child = self._shared_child(key)
            self._store.place(child)  # type: ignore[arg-type]
            return child
        if self._shared is not None:
            return self._shared.labels(*key) if key else self._shared  # type: ignore[no-any-return]
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

    def _shared_child(self, key: tuple[str, ...]) -> ChildT:
        """A child writing the multiprocess store (placed by the caller)."""
        raise NotImplementedError

    def _mmap_keys(self, key: tuple[str, ...]) -> list[str]:
        """The file keys of one child's samples, as prometheus_client writes them."""
        raise NotImplementedError

    def _family(self) -> Any:
        raise NotImplementedError

    def _add_sample(self, family: Any, labelvalues: list[str], child: ChildT) -> None:
        raise NotImplementedError

    def _multiprocess_metric(self) -> Any:
        raise NotImplementedError
