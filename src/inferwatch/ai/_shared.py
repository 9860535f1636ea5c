"""What every AI metric facade on one registry shares: its metric sets, its label bounds and
the reporting of inferwatch's own errors.

Facades (``ModelMetrics``, ``InferenceMetrics``, caches) are cheap and may be created many
times; the metrics behind them exist once per registry, as the HTTP metrics do, so creating a
second facade never raises "Duplicated timeseries".
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from prometheus_client.registry import CollectorRegistry

from inferwatch.ai.labels import BoundedLabel
from inferwatch.metrics.shared import once_per_registry, report_error

T = TypeVar("T")
S = TypeVar("S", bound="Span")
log = logging.getLogger("inferwatch.ai")

# Caps for free-form labels that have no option of their own (stage, unit, reason, ...).
DEFAULT_CAP = 32


class RegistryState:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        # Weak: this state is a value of the WeakKeyDictionary keyed by the registry that
        # once_per_registry keeps.
        self._registry = weakref.ref(registry) if registry is not None else None
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[Any, Any]] = {}
        self._bounds: dict[str, tuple[BoundedLabel, bool]] = {}

    def metric_set(self, kind: str, config: Any, build: Callable[[Any], T]) -> T:
        """The registry's one ``kind`` metric set, built on first use with ``config``."""
        with self._lock:
            found = self._sets.get(kind)
            if found is None:
                metrics = build(self.registry())
                self._sets[kind] = (config, metrics)
                return metrics
            if found[0] != config:
                raise ValueError(
                    f"this registry already holds inferwatch's {kind} metrics with other "
                    "buckets; use the same buckets everywhere or give each its own registry"
                )
            metrics = found[1]  # built by `build` for this kind, so a T
            return metrics

    def registry(self) -> CollectorRegistry | None:
        return self._registry() if self._registry is not None else None

    def bound(
        self,
        label: str,
        allowed: Iterable[str] | None = None,
        max_values: int | None = None,
        default_max: int = DEFAULT_CAP,
    ) -> BoundedLabel:
        """The registry's one bound for ``label``: every metric carrying the label must fold
        the same values into ``_OTHER``, or series would not join across metrics."""
        explicit = allowed is not None or max_values is not None
        with self._lock:
            found = self._bounds.get(label)
            if found is None:
                bound = BoundedLabel(
                    label, allowed=allowed, max_values=max_values if explicit else default_max
                )
                self._bounds[label] = (bound, explicit)
                return bound
            bound, was_explicit = found
            if not explicit:
                return bound
            if not was_explicit and not bound.used:
                # A default bound nobody has used yet gives way to an explicit one, so the
                # order in which facades are created does not matter.
                bound.reconfigure(allowed=allowed, max_values=max_values)
                self._bounds[label] = (bound, True)
                return bound
            if BoundedLabel.validate(label, allowed, max_values) != bound.config:
                raise ValueError(
                    f"the {label} label of this registry is already bounded differently "
                    f"(allowed={sorted(bound.allowed) if bound.allowed else None}, "
                    f"max={bound.max_values}); pass the same bound to every facade"
                )
            return bound

    def error(self, component: str, exc: BaseException) -> None:
        """Count and log (once per component) an error in inferwatch's own bookkeeping."""
        report_error(self.registry(), component, exc, log)


def state_for(registry: CollectorRegistry | None) -> RegistryState:
    """The registry's one AI state, kept as the HTTP metrics are (unregistered metrics,
    ``registry=None``, share nothing: each facade gets its own)."""
    return once_per_registry(registry, "ai", lambda: RegistryState(registry))


class ByLabel(Generic[T]):
    """What is built once per label of a bound (a metric's children for that label), found
    by the raw value in one dict lookup.

    Entries are keyed by the labels the bound gives, and a raw value is looked up as it is
    first: every key is a label the bound maps to itself (an admitted or allowed value, or
    the overflow value), so a raw value equal to a key has that key for its label, and an
    admitted name, the common case, costs no call of the bound. Anything else (a value to
    fold, a number, an unhashable value) goes through the bound. So this holds at most one
    entry per label the bound can give, whatever the callers pass, and no client can grow
    it with names of its choosing.
    """

    __slots__ = ("_bound", "_build", "_entries")

    def __init__(self, bound: Callable[[object], str], build: Callable[[str], T]) -> None:
        self._bound = bound
        self._build = build
        self._entries: dict[str, T] = {}

    def __call__(self, raw: object) -> T:
        try:
            found: T | None = self._entries.get(raw)  # type: ignore[call-overload]
        except TypeError:  # unhashable: only its label can be a key
            found = None
        if found is None:
            label = self._bound(raw)
            found = self._entries.get(label)
            if found is None:
                # setdefault: two threads building the same label keep one entry
                found = self._entries.setdefault(label, self._build(label))
        return found


class Span:
    """A timed block usable as ``with`` and ``async with``; subclasses record in ``_begin`` and
    ``_end`` and must never raise from them (user exceptions pass through unchanged)."""

    __slots__ = ()

    def _begin(self) -> None:
        raise NotImplementedError

    def _end(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    def __enter__(self: S) -> S:
        self._begin()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._end(exc)

    async def __aenter__(self: S) -> S:
        self._begin()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._end(exc)


def wrap_callable(fn: Callable[..., Any], span: Callable[[], Span]) -> Callable[..., Any]:
    """``fn`` (sync or async) run inside a fresh ``span()`` per call."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            async with span():
                return await fn(*args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with span():
            return fn(*args, **kwargs)

    return wrapper
