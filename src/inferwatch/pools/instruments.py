"""Connection-pool and database-client metrics, named after the OpenTelemetry conventions.

OTel's ``db.client.connection.*`` instruments and ``db.client.operation.duration`` are
rendered the Prometheus way (dots to underscores, unit suffix). One family serves every pool,
SQL or Redis; ``db_system_name`` tells them apart and ``db_client_connection_pool_name`` is a
name the user chose (never a URL: URLs carry passwords).

The read-time gauges (used/idle, max, pending) are set by each pool adapter from its own
exact bookkeeping whenever the pool changes, and refreshed again at collect time. Setting
them on change keeps multiprocess mode (per-worker values summed by ``livesum``) correct;
refreshing at collect time makes a single-process scrape exact even after state changes the
adapter cannot see (``redis`` pools reset after a fork, say).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client.registry import CollectorRegistry

from inferwatch.metrics import Counter, Gauge, Histogram
from inferwatch.metrics.shared import once_per_registry

SYSTEM = "db_system_name"
POOL = "db_client_connection_pool_name"
STATE = "db_client_connection_state"
OPERATION = "db_operation_name"

# OTel's advised boundaries for db.client.operation.duration, plus finer low end: Redis
# commands take tens of microseconds.
OPERATION_SECONDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Waiting for a connection: immediate (sub-ms) to a pool timeout of tens of seconds.
WAIT_SECONDS = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Opening a connection: a local socket (sub-ms) to a TLS handshake across regions.
CREATE_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# Holding a connection: one command (sub-ms) to a long transaction or a pub/sub listener.
USE_SECONDS = (
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
)  # fmt: skip

# Pool names are free text from the user but end up in every series: refuse anything that
# looks like a connection URL or carries credentials, so a URL can never be passed by mistake.
_URL_LIKE = re.compile(r"://|@|password", re.IGNORECASE)


def check_pool_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("pool_name must be a non-empty string")
    if _URL_LIKE.search(name) or len(name) > 64:
        raise ValueError(
            "pool_name must be a short name such as 'primary' or 'cache', never a URL "
            "(URLs carry passwords, and the name is exposed in every series)"
        )
    return name


class PoolSource(Protocol):
    """An instrumented pool: sets its own gauge children from its bookkeeping."""

    key: tuple[str, str]

    def refresh(self) -> None: ...


class PoolChildren:
    """The per-pool children both adapters write, and what they do with them alike."""

    def __init__(self, metrics: PoolMetrics, key: tuple[str, str]) -> None:
        self.key = key
        self.metrics = metrics
        self._used_child = metrics.connections.labels(*key, "used")
        self._idle_child = metrics.connections.labels(*key, "idle")
        self._pending_child = metrics.pending.labels(*key)
        self._timeouts = metrics.timeouts.labels(*key)
        self._create = metrics.create_time.labels(*key)
        self._wait = metrics.wait_time.labels(*key)
        self._use = metrics.use_time.labels(*key)

    def _set_max(self, limit: int | None) -> None:
        """The pool's limit, or no series at all for an unbounded pool (never a fake 0)."""
        if limit is None:
            self.metrics.max.remove(*self.key)
        else:
            self.metrics.max.labels(*self.key).set(limit)

    def _sync(self) -> None:
        raise NotImplementedError

    def figures(self) -> dict[str, int]:
        """used, idle and pending now (what the gauges show), for tests and debugging."""
        self._sync()
        return {
            "used": int(self._used_child.get()),
            "idle": int(self._idle_child.get()),
            "pending": int(self._pending_child.get()),
        }


class _LiveGauge(Gauge):
    """A gauge whose pools re-read their state just before it is collected."""

    def __init__(self, *args: Any, refresh: Callable[[], None], **kwargs: Any) -> None:
        self._refresh = refresh
        super().__init__(*args, **kwargs)

    def collect(self) -> Any:
        self._refresh()
        return super().collect()


class PoolMetrics:
    """Every pool and operation metric, created once per registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self._sources: dict[tuple[str, str], weakref.ref[Any]] = {}
        self._lock = threading.Lock()
        self.connections = _LiveGauge(
            "db_client_connections_usage",
            "Connections of the pool by state: used (checked out) or idle (open, in the pool). "
            "OpenTelemetry's db.client.connections.usage; its newer name, "
            "db.client.connection.count, would end in _count, which Prometheus reserves.",
            (SYSTEM, POOL, STATE), registry=r, refresh=self.refresh, multiprocess_mode="livesum",
        )  # fmt: skip
        self.max = _LiveGauge(
            "db_client_connection_max",
            "Most open connections the pool allows (SQLAlchemy QueuePool: pool_size + "
            "max_overflow; redis-py: max_connections). Absent for unbounded pools.",
            (SYSTEM, POOL), registry=r, refresh=self.refresh, multiprocess_mode="livesum",
        )  # fmt: skip
        self.pending = _LiveGauge(
            "db_client_connection_pending_requests",
            "Requests for a connection from the pool that are waiting for one right now.",
            (SYSTEM, POOL), registry=r, refresh=self.refresh, multiprocess_mode="livesum",
        )  # fmt: skip
        self.timeouts = Counter(
            "db_client_connection_timeouts_total",
            "Connection requests that gave up: the pool timeout passed (or, for a "
            "non-blocking redis-py pool, the pool was exhausted) before a connection was free.",
            (SYSTEM, POOL), registry=r,
        )  # fmt: skip
        self.create_time = Histogram(
            "db_client_connection_create_time_seconds",
            "Time it took to open a new connection (including reconnects).",
            (SYSTEM, POOL), buckets=CREATE_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self.wait_time = Histogram(
            "db_client_connection_wait_time_seconds",
            "Time it took to obtain an open connection from the pool, waiting and "
            "connecting included.",
            (SYSTEM, POOL), buckets=WAIT_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self.use_time = Histogram(
            "db_client_connection_use_time_seconds",
            "Time between taking a connection from the pool and giving it back.",
            (SYSTEM, POOL), buckets=USE_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self.operation_duration = Histogram(
            "db_client_operation_duration_seconds",
            "Duration of database client operations: Redis commands by command name, SQL "
            "statements by their first keyword (bounded; anything else is _OTHER).",
            (SYSTEM, OPERATION, POOL), buckets=OPERATION_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self.registry = registry

    def add(self, source: PoolSource) -> None:
        """Remember ``source`` for collect-time refreshes; one live pool per system and name."""
        with self._lock:
            existing = self._sources.get(source.key)
            if existing is not None and existing() is not None and existing() is not source:
                system, name = source.key
                raise ValueError(
                    f"a {system} pool named {name!r} is already instrumented in this registry; "
                    "give each pool its own pool_name"
                )
            self._sources[source.key] = weakref.ref(source)

    def discard(self, source: PoolSource) -> None:
        with self._lock:
            if (ref := self._sources.get(source.key)) is not None and ref() is source:
                del self._sources[source.key]

    def refresh(self) -> None:
        with self._lock:
            sources = [ref() for ref in self._sources.values()]
        for source in sources:
            if source is not None:
                source.refresh()


def pool_metrics(registry: CollectorRegistry | None) -> PoolMetrics:
    """The registry's one set of pool metrics, created on first use."""
    return once_per_registry(registry, "pools", lambda: PoolMetrics(registry))
