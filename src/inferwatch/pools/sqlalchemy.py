"""SQLAlchemy pools (sync ``Engine`` and ``AsyncEngine``, SQLAlchemy 2.0 and 2.1).

Connection figures come from this module's own bookkeeping of pool events, keyed by
connection record, rather than from ``QueuePool.checkedin()``/``checkedout()``:

* the ``checkin`` event fires *before* the record is back in the pool's queue, so reading
  the queue there sees a connection that is neither checked out nor idle;
* ``overflow()`` starts at ``-pool_size`` and ``checkedout()`` counts connection slots
  reserved while a new connection is still being opened;
* ``Engine.dispose()`` swaps in a new pool, while connections checked out of the old one
  are still in use and return to the old pool, not the engine's.

Each record is "used" from its ``checkout`` to its ``checkin``/``detach`` and open from
``connect`` to ``close``; records that return to a pool the engine no longer uses are
dropped. Waiting, pending requests and timeouts need a hook *before* a connection is found,
which SQLAlchemy has no event for: the pool's class is swapped for a subclass whose
``connect()`` measures the call. ``Pool.recreate()`` builds ``self.__class__``, so the pool
``dispose()`` creates is measured too, with no window in which checkouts go unseen.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from prometheus_client.registry import REGISTRY, CollectorRegistry
from sqlalchemy import event, exc
from sqlalchemy.pool import Pool, QueuePool, StaticPool

from inferwatch.metrics.shared import report_error
from inferwatch.pools.instruments import (
    PoolChildren,
    PoolMetrics,
    check_pool_name,
    pool_metrics,
)
from inferwatch.pools.names import sql_operation

log = logging.getLogger(__name__)
COMPONENT = "pools.sqlalchemy"
_STARTS = "inferwatch.operation_starts"  # key in Connection.info: a stack per connection

# SQLAlchemy dialect names -> OTel db.system.name values.
_SYSTEMS = {"mssql": "microsoft.sql_server", "oracle": "oracle.db"}

_instrumented: weakref.WeakKeyDictionary[Any, dict[int, SqlAlchemyPool]] = (
    weakref.WeakKeyDictionary()
)
_guard = threading.Lock()


def system_name(dialect_name: str) -> str:
    return _SYSTEMS.get(dialect_name, dialect_name)


def pool_max(pool: Pool) -> int | None:
    """Most connections ``pool`` opens at once, or None when it has no limit."""
    if isinstance(pool, QueuePool):
        overflow = pool._max_overflow  # -1 (unlimited) when pool_size is 0
        return None if overflow < 0 else pool.size() + overflow
    if isinstance(pool, StaticPool):
        return 1
    return None  # NullPool, SingletonThreadPool (one per thread), AssertionPool


def _record_pool(record: Any) -> Any:
    # The pool a connection record belongs to; SQLAlchemy keeps it in a private slot.
    return getattr(record, "_ConnectionRecord__pool", None)


class SqlAlchemyPool(PoolChildren):
    """The instrumentation of one engine; created by :func:`instrument_sqlalchemy`."""

    def __init__(self, engine: Any, pool_name: str, metrics: PoolMetrics) -> None:
        # Weak: the engine's event listeners hold this object, which must not keep it alive.
        self._engine = weakref.ref(engine)
        self.system = system_name(engine.dialect.name)
        self.pool_name = pool_name
        super().__init__(metrics, (self.system, pool_name))
        self._operations: dict[str, Any] = {}
        self._lock = threading.Lock()
        # record -> checkout time (perf_counter) when used, None when idle
        self._open: dict[Any, float | None] = {}
        self._pending = 0
        # Connections the pool already had when it was instrumented: known only by number.
        pool = engine.pool
        self._seed_used = pool.checkedout() if isinstance(pool, QueuePool) else 0
        self._seed_idle = pool.checkedin() if isinstance(pool, QueuePool) else 0
        metrics.add(self)
        self._listen()
        _measure_connect(pool, self)
        self.refresh()

    @property
    def engine(self) -> Any:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the instrumented engine is gone")
        return engine

    # -- events ---------------------------------------------------------------------------
    def _listen(self) -> None:
        e = self.engine
        event.listen(e, "connect", self._on_connect)
        event.listen(e, "checkout", self._on_checkout)
        event.listen(e, "checkin", self._on_checkin)
        event.listen(e, "close", self._on_close)
        event.listen(e, "detach", self._on_detach)
        event.listen(e, "engine_disposed", self._on_disposed)
        event.listen(e, "before_cursor_execute", self._before_execute)
        event.listen(e, "after_cursor_execute", self._after_execute)
        event.listen(e, "handle_error", self._on_error)

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        try:
            # starttime is taken (wall clock) just before the DBAPI connect call
            started = getattr(record, "starttime", 0)
            if started:
                self._create.observe(max(0.0, time.time() - started))
            with self._lock:
                self._open[record] = None
            self._update()
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        try:
            with self._lock:
                if record not in self._open and self._seed_idle > 0:
                    self._seed_idle -= 1  # a connection opened before instrumentation
                if self._open.get(record) is None:  # pre-ping retries fire twice
                    self._open[record] = time.perf_counter()
            self._update()
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        try:
            now = time.perf_counter()
            with self._lock:
                started = self._open.get(record)
                if record not in self._open and self._seed_used > 0:
                    self._seed_used -= 1  # checked out before instrumentation
                # Fires before the record is back in the queue; it is idle from here on,
                # unless it has no connection (invalidated) or goes back to a pool the
                # engine has replaced (dispose()), where it no longer counts.
                if dbapi_connection is None or _record_pool(record) is not self.engine.pool:
                    self._open.pop(record, None)
                else:
                    self._open[record] = None
            if started is not None:
                self._use.observe(now - started)
            self._update()
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _on_close(self, dbapi_connection: Any, record: Any) -> None:
        try:
            with self._lock:
                if self._open.pop(record, 0) == 0 and self._seed_idle > 0:
                    self._seed_idle -= 1
            self._update()
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _on_detach(self, dbapi_connection: Any, record: Any) -> None:
        # The DBAPI connection leaves the pool for good; the record stays, unconnected.
        self._on_close(dbapi_connection, record)

    def _on_disposed(self, engine: Any) -> None:
        try:
            with self._lock:
                # dispose(close=False) drops the old pool's idle connections without
                # closing them (no close events): they are no longer this engine's.
                current = engine.pool
                for record, started in list(self._open.items()):
                    if started is None and _record_pool(record) is not current:
                        del self._open[record]
                self._seed_idle = 0
            self._update()
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _before_execute(self, conn: Any, cursor: Any, statement: Any, *args: Any) -> None:
        try:
            conn.info.setdefault(_STARTS, []).append(time.perf_counter())
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _after_execute(self, conn: Any, cursor: Any, statement: Any, *args: Any) -> None:
        self._finish(conn, statement)

    def _on_error(self, context: Any) -> None:
        # A failed statement is timed too; errors outside a statement find no start time.
        try:
            conn = context.connection
            if conn is not None:
                self._finish(conn, context.statement)
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _finish(self, conn: Any, statement: Any) -> None:
        try:
            starts = conn.info.get(_STARTS)
            if not starts:
                return
            elapsed = time.perf_counter() - starts.pop()
            operation = sql_operation(statement)
            child = self._operations.get(operation)
            if child is None:
                child = self.metrics.operation_duration.labels(
                    self.system, operation, self.pool_name
                )
                self._operations[operation] = child
            child.observe(elapsed)
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    # -- waiting (called by the measured pool class) ----------------------------------------
    def connect(self, pool: Pool, connect: Any) -> Any:
        self._change_pending(1)
        started = time.perf_counter()
        try:
            return connect()
        except exc.TimeoutError:
            self._timeouts.inc()
            raise
        finally:
            self._wait.observe(time.perf_counter() - started)
            self._change_pending(-1)

    def _change_pending(self, delta: int) -> None:
        try:
            with self._lock:
                self._pending += delta
                self._pending_child.set(self._pending)
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    # -- gauges -----------------------------------------------------------------------------
    def _update(self) -> None:
        with self._lock:
            used = self._seed_used + sum(1 for s in self._open.values() if s is not None)
            idle = self._seed_idle + sum(1 for s in self._open.values() if s is None)
            # Set under the lock so concurrent updates land in the order they were counted.
            self._used_child.set(used)
            self._idle_child.set(idle)
            self._pending_child.set(self._pending)

    def refresh(self) -> None:
        try:
            engine = self._engine()
            if engine is None:  # garbage-collected: its series go with it
                self.metrics.discard(self)
                for state in ("used", "idle"):
                    self.metrics.connections.remove(*self.key, state)
                self.metrics.pending.remove(*self.key)
                self.metrics.max.remove(*self.key)
                return
            self._update()
            self._set_max(pool_max(engine.pool))
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _sync(self) -> None:
        self._update()


def _measure_connect(pool: Pool, instrumentation: SqlAlchemyPool) -> None:
    """Swap ``pool``'s class for a subclass whose ``connect()`` reports to us (see top)."""
    base = type(pool)
    ref = weakref.ref(instrumentation)

    class MeasuredPool(base):  # type: ignore[misc,valid-type]
        def connect(self) -> Any:
            target = ref()
            if target is None:
                return super().connect()
            return target.connect(self, super().connect)

    MeasuredPool.__name__ = base.__name__
    MeasuredPool.__qualname__ = base.__qualname__
    MeasuredPool.__module__ = base.__module__
    pool.__class__ = MeasuredPool


def instrument_sqlalchemy(
    engine: Any,
    pool_name: str = "primary",
    *,
    registry: CollectorRegistry | None = REGISTRY,
) -> SqlAlchemyPool:
    """Report ``engine``'s pool (an ``Engine`` or ``AsyncEngine``) and its statements.

    Instrument right after ``create_engine``; connections opened before are counted, but
    only by number. Instrumenting the same engine into the same registry again returns the
    first instrumentation.
    """
    check_pool_name(pool_name)
    sync_engine = getattr(engine, "sync_engine", engine)
    metrics = pool_metrics(registry)
    with _guard:
        per_engine = _instrumented.setdefault(sync_engine, {})
        existing = per_engine.get(id(metrics))
        if existing is not None:
            if existing.pool_name != pool_name:
                raise ValueError(
                    f"engine already instrumented as {existing.pool_name!r} in this registry"
                )
            return existing
        instrumentation = SqlAlchemyPool(sync_engine, pool_name, metrics)
        per_engine[id(metrics)] = instrumentation
        return instrumentation
