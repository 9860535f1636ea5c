"""Metrics that exist once per registry, whoever asks for them first.

Several parts of inferwatch (the HTTP middleware, the AI-workload facades) create their
metrics lazily and may be set up more than once per registry; building each set once per
registry here is what keeps a second set-up from raising "Duplicated timeseries".
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client.registry import CollectorRegistry

from inferwatch.metrics.counter import Counter

T = TypeVar("T")

_sets: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Any]] = weakref.WeakKeyDictionary()
_lock = threading.RLock()
_logged: set[tuple[int, str]] = set()


def once_per_registry(registry: CollectorRegistry | None, key: str, build: Callable[[], T]) -> T:
    """``build()`` the first time ``key`` is asked for on ``registry``; the same object after.
    ``registry=None`` (unregistered metrics) shares nothing."""
    if registry is None:
        return build()
    with _lock:
        per_registry = _sets.setdefault(registry, {})
        if key not in per_registry:
            per_registry[key] = build()
        return per_registry[key]


def instrumentation_errors(registry: CollectorRegistry | None) -> Counter:
    return once_per_registry(
        registry,
        "instrumentation_errors",
        lambda: Counter(
            "inferwatch_instrumentation_errors_total",
            "Errors inside inferwatch's own instrumentation; they never fail a request.",
            ("component",),
            registry=registry,
        ),
    )


def report_error(
    registry: CollectorRegistry | None, component: str, exc: BaseException, log: logging.Logger
) -> None:
    """Count an error in inferwatch's own bookkeeping and log it once per component.
    Never raises: it is called from paths that must not fail the user's work."""
    try:
        instrumentation_errors(registry).labels(component).inc()
        key = (id(registry), component)
        if key not in _logged:
            _logged.add(key)
            log.warning("inferwatch instrumentation error in %s: %r", component, exc)
    except Exception:
        pass
