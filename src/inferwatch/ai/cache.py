"""Application cache metrics: :func:`instrumented_cache` (an LRU cache with optional TTL for
expensive model calls) and :class:`CacheMetrics` (counts a cache you already have).

Only counters are exported; the hit ratio is computed in PromQL, where it can be aggregated::

    sum by (cache) (rate(inferwatch_cache_gets_total{result="hit"}[5m]))
      / sum by (cache) (rate(inferwatch_cache_gets_total[5m]))
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, cast

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai import buckets
from inferwatch.ai._shared import RegistryState, Span, state_for
from inferwatch.metrics import Counter, Gauge, Histogram

F = TypeVar("F", bound=Callable[..., Any])
V = TypeVar("V")

DEFAULT_MAX_CACHES = 50
HIT, MISS = "hit", "miss"
SIZE, TTL, MANUAL = "size", "ttl", "manual"  # eviction reasons


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # what a backend returns for "not there" (None is a valid value)
_UNUSABLE: Any = _Missing()  # the backend failed on this key: compute, and do not store

EvictionListener = Callable[[str, int], None]


class CacheBackend(Protocol):
    """Where an :class:`InstrumentedCache` keeps its values.

    A backend reports the evictions it decides itself (``size``, ``ttl``) by calling
    ``on_evict(reason, count)``, which the cache sets; a backend that cannot see them (a
    server-side TTL) simply never calls it. ``size()`` may return None when unknown; the
    cache calls it after every store and eviction, on the request path, so it must cost the
    same whatever the size (a count kept as entries come and go, never a scan).

    A backend whose entries every worker process sees (Redis) has ``shared = True``: its
    size is then reported as ``inferwatch_cache_shared_entries``, the count most recently
    read by any worker, where summing the workers' equal readings would count each entry
    once per worker. Without the attribute a backend is per process, like
    :class:`MemoryBackend`, and its sizes add up in ``inferwatch_cache_entries``.
    """

    on_evict: EvictionListener | None

    def get(self, key: Hashable) -> Any: ...  # MISSING when absent or expired
    def set(self, key: Hashable, value: Any) -> None: ...
    def delete(self, key: Hashable) -> bool: ...
    def clear(self) -> int: ...
    def size(self) -> int | None: ...


class MemoryBackend:
    """In-process LRU with a maximum size and an optional time to live.

    Expired entries are dropped when read, when they reach the LRU end, or by
    :meth:`purge_expired`; ``clock`` is injectable so tests need not sleep.
    """

    def __init__(
        self,
        max_size: int = 1024,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be positive seconds or None, got {ttl}")
        self.max_size = max_size
        self.ttl = ttl
        self.shared = False  # each process has its own
        self.on_evict: EvictionListener | None = None
        self._clock = clock
        self._data: OrderedDict[Hashable, tuple[Any, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return MISSING
            value, expires = item
            expired = expires is not None and self._clock() >= expires
            if expired:
                del self._data[key]
            else:
                self._data.move_to_end(key)
        if expired:
            self._notify(TTL, 1)
            return MISSING
        return value

    def set(self, key: Hashable, value: Any) -> None:
        now = self._clock()
        expires = now + self.ttl if self.ttl is not None else None
        evicted = {SIZE: 0, TTL: 0}
        with self._lock:
            self._data[key] = (value, expires)
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                _, (_, old_expires) = self._data.popitem(last=False)
                evicted[TTL if old_expires is not None and now >= old_expires else SIZE] += 1
        for reason, count in evicted.items():
            if count:
                self._notify(reason, count)

    def delete(self, key: Hashable) -> bool:
        with self._lock:
            return self._data.pop(key, MISSING) is not MISSING

    def clear(self) -> int:
        with self._lock:
            count = len(self._data)
            self._data.clear()
        return count

    def size(self) -> int:
        return len(self._data)

    def purge_expired(self) -> int:
        """Drop every expired entry now (reported as ``ttl`` evictions)."""
        now = self._clock()
        with self._lock:
            dead = [k for k, (_, exp) in self._data.items() if exp is not None and now >= exp]
            for key in dead:
                del self._data[key]
        if dead:
            self._notify(TTL, len(dead))
        return len(dead)

    def _notify(self, reason: str, count: int) -> None:
        # Called outside the lock: the listener updates metrics and reads size().
        if self.on_evict is not None:
            self.on_evict(reason, count)


class CacheSet:
    """The cache metrics of one registry."""

    def __init__(self, registry: CollectorRegistry | None, load_buckets: Sequence[float]) -> None:
        r = registry
        self.gets = Counter(
            "inferwatch_cache_gets_total",
            "Cache lookups by result (hit or miss).",
            ("cache", "result"), registry=r,
        )  # fmt: skip
        self.puts = Counter(
            "inferwatch_cache_puts_total",
            "Values stored in the cache.",
            ("cache",), registry=r,
        )  # fmt: skip
        self.evictions = Counter(
            "inferwatch_cache_evictions_total",
            "Entries removed from the cache, by reason (size, ttl or manual).",
            ("cache", "reason"), registry=r,
        )  # fmt: skip
        self.entries = Gauge(
            "inferwatch_cache_entries",
            "Entries currently in an in-process cache (summed over worker processes).",
            ("cache",), registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        # Every worker reads the same count from a shared backend: the latest reading is
        # the figure, kept when the worker that read it exits (the entries do not).
        self.shared_entries = Gauge(
            "inferwatch_cache_shared_entries",
            "Entries currently in a cache kept in a shared backend such as Redis, as most "
            "recently counted by any worker process (never summed over them).",
            ("cache",), registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.load_duration = Histogram(
            "inferwatch_cache_load_duration_seconds",
            "The cost of a miss: time to compute a value that was not cached, whether or "
            "not computing it succeeded.",
            ("cache",), buckets=load_buckets, registry=r, unit="seconds",
        )  # fmt: skip


def cache_set(
    registry: CollectorRegistry | None, load_buckets: Sequence[float] = buckets.CACHE_LOAD_SECONDS
) -> CacheSet:
    """The registry's one set of cache metrics, created on first use."""
    return state_for(registry).metric_set(
        "cache", tuple(load_buckets), lambda r: CacheSet(r, load_buckets)
    )


class CacheMetrics:
    """Counts one named cache; use it directly to instrument a cache you already have.

    ``allowed_caches``/``max_caches`` (default 50) bound the ``cache`` label of the registry.
    """

    def __init__(
        self,
        name: str,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        allowed_caches: Iterable[str] | None = None,
        max_caches: int | None = None,
        load_buckets: Sequence[float] = buckets.CACHE_LOAD_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._state: RegistryState = state_for(registry)
        self._metrics = cache_set(registry, load_buckets)
        self.name = name
        self._label = self._state.bound("cache", allowed_caches, max_caches, DEFAULT_MAX_CACHES)(
            name
        )
        self._reason = self._state.bound("reason")
        self._clock = clock
        self._size = 0
        self._size_lock = threading.Lock()

    def hit(self, count: int = 1) -> None:
        self._guard("ai.cache.get", lambda: self._metrics.gets.labels(self._label, HIT).inc(count))

    def miss(self, count: int = 1) -> None:
        self._guard("ai.cache.get", lambda: self._metrics.gets.labels(self._label, MISS).inc(count))

    def put(self, count: int = 1) -> None:
        self._guard("ai.cache.put", lambda: self._metrics.puts.labels(self._label).inc(count))

    def evicted(self, reason: str = MANUAL, count: int = 1) -> None:
        self._guard(
            "ai.cache.evict",
            lambda: self._metrics.evictions.labels(self._label, self._reason(reason)).inc(count),
        )

    def set_size(self, entries: int, *, shared: bool = False) -> None:
        """Report how many entries the cache holds now; ``shared``: counted in a backend
        every worker process sees (see :class:`CacheBackend`), not in this process."""

        def apply() -> None:
            if shared:
                self._metrics.shared_entries.labels(self._label).set(entries)
                return
            # Applied as a difference so that caches sharing a name (or `_OTHER`) add up.
            with self._size_lock:
                self._metrics.entries.labels(self._label).inc(entries - self._size)
                self._size = entries

        self._guard("ai.cache.size", apply)

    def observe_load(self, seconds: float) -> None:
        """Record the cost of one miss."""
        self._guard(
            "ai.cache.load",
            lambda: self._metrics.load_duration.labels(self._label).observe(seconds),
        )

    def loading(self) -> CacheLoad:
        """Time computing a missing value: ``with metrics.loading(): value = compute()``."""
        return CacheLoad(self)

    def _guard(self, component: str, record: Callable[[], None]) -> None:
        try:
            record()
        except Exception as exc:
            self._state.error(component, exc)


class CacheLoad(Span):
    def __init__(self, metrics: CacheMetrics) -> None:
        self._metrics = metrics
        self._start: float | None = None

    def _begin(self) -> None:
        try:
            self._start = self._metrics._clock()
        except Exception as exc:
            self._metrics._state.error("ai.cache.load", exc)

    def _end(self, exc: BaseException | None) -> None:
        try:
            if self._start is not None:
                self._metrics.observe_load(self._metrics._clock() - self._start)
        except Exception as err:
            self._metrics._state.error("ai.cache.load", err)


class InstrumentedCache:
    """A cache that counts itself. ``backend`` defaults to a :class:`MemoryBackend` of
    ``max_size`` entries and ``ttl`` seconds; ``clock`` drives both TTL and load timing."""

    def __init__(
        self,
        name: str,
        *,
        max_size: int = 1024,
        ttl: float | None = None,
        backend: CacheBackend | None = None,
        registry: CollectorRegistry | None = REGISTRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = CacheMetrics(name, registry, clock=clock)
        self.backend: CacheBackend = (
            backend if backend is not None else MemoryBackend(max_size, ttl, clock)
        )
        self.backend.on_evict = self._on_evict
        self._shared = getattr(self.backend, "shared", False) is True
        self._size_lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        value = self._lookup(key)
        return default if value is MISSING or value is _UNUSABLE else value

    def put(self, key: Hashable, value: Any) -> None:
        self._store(key, value)

    def invalidate(self, key: Hashable) -> bool:
        """Remove one entry (a ``manual`` eviction); False if it was not there."""
        removed = self.backend.delete(key)
        if removed:
            self._on_evict(MANUAL, 1)
        return removed

    def clear(self) -> int:
        """Remove every entry (``manual`` evictions); returns how many there were."""
        count = self.backend.clear()
        if count:
            self._on_evict(MANUAL, count)
        return count

    def get_or_load(self, key: Hashable, loader: Callable[[], V]) -> V:
        """The cached value for ``key``, or ``loader()`` stored under it."""
        found = self._lookup(key)
        if found is not MISSING and found is not _UNUSABLE:
            return cast(V, found)
        with self.metrics.loading():
            value = loader()
        if found is MISSING:
            self._store(key, value)
        return value

    async def aget_or_load(self, key: Hashable, loader: Callable[[], Awaitable[V]]) -> V:
        """:meth:`get_or_load` for an async loader."""
        found = self._lookup(key)
        if found is not MISSING and found is not _UNUSABLE:
            return cast(V, found)
        async with self.metrics.loading():
            value = await loader()
        if found is MISSING:
            self._store(key, value)
        return value

    def __len__(self) -> int:
        return self.backend.size() or 0

    def _lookup(self, key: Hashable) -> Any:
        try:
            value = self.backend.get(key)
        except Exception as exc:  # an unhashable key, a backend down: compute instead
            self.metrics._state.error("ai.cache.backend", exc)
            value = _UNUSABLE
        if value is MISSING or value is _UNUSABLE:
            self.metrics.miss()
        else:
            self.metrics.hit()
        return value

    def _store(self, key: Hashable, value: Any) -> None:
        try:
            self.backend.set(key, value)
        except Exception as exc:
            self.metrics._state.error("ai.cache.backend", exc)
            return
        self.metrics.put()
        self._sync_size()

    def _on_evict(self, reason: str, count: int) -> None:
        self.metrics.evicted(reason, count)
        self._sync_size()

    def _sync_size(self) -> None:
        # Read and report under one lock: the last report then reflects every finished write.
        try:
            with self._size_lock:
                size = self.backend.size()
                if size is not None:
                    self.metrics.set_size(size, shared=self._shared)
        except Exception as exc:
            self.metrics._state.error("ai.cache.size", exc)


_KWARGS = object()  # separates positional from keyword arguments in a key


def _default_key(*args: Any, **kwargs: Any) -> Hashable:
    if not kwargs:
        return args
    return (*args, _KWARGS, *sorted(kwargs.items()))


def instrumented_cache(
    name: str,
    *,
    max_size: int = 1024,
    ttl: float | None = None,
    key: Callable[..., Hashable] | None = None,
    backend: CacheBackend | None = None,
    registry: CollectorRegistry | None = REGISTRY,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[F], F]:
    """Cache a sync or async function's results by its arguments, and count the cache.

    ``key(*args, **kwargs)`` builds the cache key (default: the arguments themselves). The
    cache is reachable as ``fn.cache`` (an :class:`InstrumentedCache`). Failures are not
    cached; concurrent misses of one key each compute it.
    """
    make_key = key or _default_key

    def decorate(fn: F) -> F:
        cache = InstrumentedCache(
            name, max_size=max_size, ttl=ttl, backend=backend, registry=registry, clock=clock
        )

        def key_of(args: Any, kwargs: Any) -> Any:
            try:
                return make_key(*args, **kwargs)
            except Exception as exc:  # a broken key function: run uncached
                cache.metrics._state.error("ai.cache.key", exc)
                return MISSING

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key_of(args, kwargs)
                if k is MISSING:
                    return await fn(*args, **kwargs)
                return await cache.aget_or_load(k, lambda: fn(*args, **kwargs))

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key_of(args, kwargs)
                if k is MISSING:
                    return fn(*args, **kwargs)
                return cache.get_or_load(k, lambda: fn(*args, **kwargs))

            wrapper = sync_wrapper
        wrapper.cache = cache
        return cast(F, wrapper)

    return decorate
