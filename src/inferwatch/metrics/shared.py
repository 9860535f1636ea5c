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

from prometheus_client.mmap_dict import mmap_key
from prometheus_client.registry import CollectorRegistry

from inferwatch.metrics import mmapfile, multiprocess, store
from inferwatch.metrics.counter import Counter

T = TypeVar("T")

_sets: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Any]] = weakref.WeakKeyDictionary()
_lock = threading.RLock()
# Components whose error was logged, for unregistered metrics (registry=None); a registry's
# own set is kept once per registry, with the rest of what belongs to it.
_logged_unregistered: set[str] = set()

INSTRUMENTATION_ERRORS = "inferwatch_instrumentation_errors"
INSTRUMENTATION_ERRORS_HELP = (
    "Errors inside inferwatch's own instrumentation; they never fail a request."
)
# Writes to the multiprocess directory dropped because it is full.
DROPPED_WRITES = "multiprocess.write"


def once_per_registry(registry: CollectorRegistry | None, key: str, build: Callable[[], T]) -> T:
    """``build()`` the first time ``key`` is asked for on ``registry``; the same object after.
    ``registry=None`` (unregistered metrics) shares nothing."""
    if registry is None:
        return build()
    with _lock:
        per_registry = _sets.setdefault(registry, {})
        if key not in per_registry:
            per_registry[key] = build()
        found: T = per_registry[key]  # the store holds every key's own type
        return found


def instrumentation_errors(registry: CollectorRegistry | None) -> Counter:
    return once_per_registry(
        registry,
        "instrumentation_errors",
        lambda: Counter(
            INSTRUMENTATION_ERRORS, INSTRUMENTATION_ERRORS_HELP, ("component",), registry=registry
        ),
    )


def guard_multiprocess_files() -> None:
    """In multiprocess mode, install this process's value store (see
    :mod:`inferwatch.metrics.store`), make a full directory drop writes instead of killing
    the process (see :mod:`inferwatch.metrics.mmapfile`), and count them as
    ``inferwatch_instrumentation_errors_total{component="multiprocess.write"}``.

    Runs when inferwatch is imported, so that it covers the application's own
    prometheus_client metrics too, and creates that series right away: its place in this
    process's counter file is taken while there is still room, so counting never needs any.
    """
    directory = multiprocess.directory()
    if directory is None or not multiprocess.configured():
        return
    mmapfile.install(
        mmap_key(
            INSTRUMENTATION_ERRORS,
            INSTRUMENTATION_ERRORS + "_total",
            ["component"],
            [DROPPED_WRITES],
            INSTRUMENTATION_ERRORS_HELP,
        )
    )
    store.install(directory)
    instrumentation_errors(None).labels(DROPPED_WRITES)


def report_error(
    registry: CollectorRegistry | None, component: str, exc: BaseException, log: logging.Logger
) -> None:
    """Count an error in inferwatch's own bookkeeping and log it once per component.
    Never raises: it is called from paths that must not fail the user's work."""
    try:
        instrumentation_errors(registry).labels(component).inc()
        logged: set[str] = (
            _logged_unregistered
            if registry is None
            else once_per_registry(registry, "logged_errors", set)
        )
        if component not in logged:
            logged.add(component)
            log.warning("inferwatch instrumentation error in %s: %r", component, exc)
    except Exception:
        pass
