"""redis-py pools and commands (sync and asyncio; ``ConnectionPool`` and
``BlockingConnectionPool``).

redis-py has no pool events, so the pool's ``get_connection``, ``release`` and
``make_connection`` are wrapped on the instance (redis-py calls them through ``self``). Used
and idle connections are read from the pool's own lists, under the pool's lock where it has
one: redis-py moves a connection between its in-use and available collections inside one
locked block, so that read is exact. Idle counts only available connections that hold a
socket; ``pool.disconnect()`` leaves connection objects that reconnect on next use.

Command latency needs the client: pass a ``Redis`` client rather than its pool to get
``db_client_operation_duration_seconds`` by command. Pipelines are not timed per command.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from typing import Any

from prometheus_client.registry import REGISTRY, CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

from inferwatch.metrics.shared import once_per_registry, report_error
from inferwatch.pools.instruments import (
    PoolChildren,
    PoolMetrics,
    check_pool_name,
    pool_metrics,
)
from inferwatch.pools.names import RedisCommandNames

log = logging.getLogger(__name__)
COMPONENT = "pools.redis"
SYSTEM = "redis"
# redis-py's "no limit" default for max_connections
_UNLIMITED = 2**31


def _is_timeout(error: BaseException) -> bool:
    """Did acquiring a connection fail for lack of a free one (not a broken server)?"""
    if isinstance(error, MaxConnectionsError):
        return True  # non-blocking pool exhausted: a timeout of zero
    if not isinstance(error, RedisConnectionError):
        return False
    # BlockingConnectionPool raises ConnectionError("No connection available.") from the
    # queue.Empty (sync) or asyncio.TimeoutError (asyncio) of its wait.
    cause = error.__cause__ or error.__context__
    return isinstance(cause, (queue.Empty, asyncio.TimeoutError, TimeoutError))


def _connected(connection: Any) -> bool:
    if hasattr(connection, "_reader"):  # asyncio connection
        return connection._reader is not None
    return getattr(connection, "_sock", None) is not None


class RedisPool(PoolChildren):
    """The instrumentation of one redis-py pool; created by :func:`instrument_redis`."""

    def __init__(self, pool: Any, pool_name: str, metrics: PoolMetrics) -> None:
        self.pool = pool
        self.pool_name = pool_name
        super().__init__(metrics, (SYSTEM, pool_name))
        self.is_async = inspect.iscoroutinefunction(pool.get_connection)
        self._lock = threading.Lock()
        self._pending = 0
        self._taken: dict[int, float] = {}  # id(connection) -> perf_counter at checkout
        self._commands: dict[str, Any] = {}
        self.command_names: RedisCommandNames = once_per_registry(
            metrics.registry, "pools.redis_commands", RedisCommandNames
        )
        metrics.add(self)
        self._wrap_pool()
        self.refresh()

    # -- pool -------------------------------------------------------------------------------
    def _wrap_pool(self) -> None:
        pool = self.pool
        get, release, make = pool.get_connection, pool.release, pool.make_connection
        if self.is_async:

            async def get_connection(*args: Any, **kwargs: Any) -> Any:
                started = self._acquiring()
                try:
                    connection = await get(*args, **kwargs)
                except BaseException as error:
                    self._acquired(started, None, error)
                    raise
                self._acquired(started, connection, None)
                return connection

            async def release_connection(connection: Any) -> None:
                try:
                    await release(connection)
                finally:
                    self._released(connection)

        else:
            # The pool's own methods, sync here: not the coroutine functions above.
            def get_connection(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                started = self._acquiring()
                try:
                    connection = get(*args, **kwargs)
                except BaseException as error:
                    self._acquired(started, None, error)
                    raise
                self._acquired(started, connection, None)
                return connection

            def release_connection(connection: Any) -> None:  # type: ignore[misc]
                try:
                    release(connection)
                finally:
                    self._released(connection)

        def make_connection() -> Any:
            connection = make()
            try:
                self._measure_connects(connection)
            except Exception as err:
                report_error(self.metrics.registry, COMPONENT, err, log)
            return connection

        pool.get_connection = get_connection
        pool.release = release_connection
        pool.make_connection = make_connection

    def _measure_connects(self, connection: Any) -> None:
        """Time each real (re)connect of ``connection``: redis-py connects lazily."""
        connect = connection.connect
        observe = self._create.observe
        if inspect.iscoroutinefunction(connect):

            async def timed_connect(*args: Any, **kwargs: Any) -> Any:
                if _connected(connection):
                    return await connect(*args, **kwargs)
                started = time.perf_counter()
                result = await connect(*args, **kwargs)
                observe(time.perf_counter() - started)
                return result

            connection.connect = timed_connect
        else:

            def sync_connect(*args: Any, **kwargs: Any) -> Any:
                if _connected(connection):
                    return connect(*args, **kwargs)
                started = time.perf_counter()
                result = connect(*args, **kwargs)
                observe(time.perf_counter() - started)
                return result

            connection.connect = sync_connect

    def _acquiring(self) -> float:
        self._change_pending(1)
        return time.perf_counter()

    def _acquired(self, started: float, connection: Any, error: BaseException | None) -> None:
        try:
            now = time.perf_counter()
            self._wait.observe(now - started)
            if error is not None and _is_timeout(error):
                self._timeouts.inc()
            if connection is not None:
                with self._lock:
                    self._taken[id(connection)] = now
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)
        self._change_pending(-1)

    def _released(self, connection: Any) -> None:
        try:
            with self._lock:
                started = self._taken.pop(id(connection), None)
            if started is not None:
                self._use.observe(time.perf_counter() - started)
            self.refresh()
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _change_pending(self, delta: int) -> None:
        try:
            with self._lock:
                self._pending += delta
                self._pending_child.set(self._pending)
            self.refresh()
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _read_state(self) -> tuple[int, int]:
        """(used, idle) from the pool's own collections."""
        pool = self.pool
        if hasattr(pool, "_connections") and hasattr(pool, "pool"):  # sync BlockingConnectionPool
            queued = pool.pool
            with queued.mutex:  # connections move in and out of the queue under its mutex
                available = [c for c in queued.queue if c is not None]
                created = len(pool._connections)
            return created - len(available), sum(1 for c in available if _connected(c))
        lock = None if self.is_async else pool._lock
        if lock is not None:
            with lock:
                available = list(pool._available_connections)
                used = len(pool._in_use_connections)
        else:  # asyncio pools change only on their event loop, between awaits
            available = list(pool._available_connections)
            used = len(pool._in_use_connections)
        return used, sum(1 for c in available if _connected(c))

    def refresh(self) -> None:
        try:
            with self._lock:  # snapshot and set together, so updates land in order
                used, idle = self._read_state()
                self._used_child.set(used)
                self._idle_child.set(idle)
                self._pending_child.set(self._pending)
            limit = getattr(self.pool, "max_connections", None)
            self._set_max(None if limit is None or limit >= _UNLIMITED else limit)
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)

    def _sync(self) -> None:
        self.refresh()

    # -- commands ---------------------------------------------------------------------------
    def wrap_client(self, client: Any) -> None:
        execute = client.execute_command
        if inspect.iscoroutinefunction(execute):

            async def execute_command(*args: Any, **options: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await execute(*args, **options)
                finally:
                    self._observe_command(args, time.perf_counter() - started)

        else:

            def execute_command(*args: Any, **options: Any) -> Any:  # type: ignore[misc]
                started = time.perf_counter()
                try:
                    return execute(*args, **options)
                finally:
                    self._observe_command(args, time.perf_counter() - started)

        client.execute_command = execute_command

    def _observe_command(self, args: tuple[Any, ...], elapsed: float) -> None:
        try:
            name = self.command_names(args[0] if args else None)
            child = self._commands.get(name)
            if child is None:
                child = self.metrics.operation_duration.labels(SYSTEM, name, self.pool_name)
                self._commands[name] = child
            child.observe(elapsed)
        except Exception as err:
            report_error(self.metrics.registry, COMPONENT, err, log)


def instrument_redis(
    client_or_pool: Any,
    pool_name: str = "cache",
    *,
    registry: CollectorRegistry | None = REGISTRY,
) -> RedisPool:
    """Report a redis-py pool, and the commands of a client when a client is given.

    Accepts ``redis.Redis``/``redis.asyncio.Redis`` clients and their ``ConnectionPool``/
    ``BlockingConnectionPool``. Clients sharing one pool share its pool instrumentation;
    each client given is timed once.
    """
    check_pool_name(pool_name)
    metrics = pool_metrics(registry)
    pool = getattr(client_or_pool, "connection_pool", client_or_pool)
    if not hasattr(pool, "get_connection"):
        raise TypeError(f"not a redis-py client or connection pool: {type(client_or_pool)!r}")
    instrumentations = pool.__dict__.setdefault("_inferwatch_instrumentation", {})
    instrumentation: RedisPool | None = instrumentations.get(id(metrics))
    if instrumentation is None:
        instrumentation = RedisPool(pool, pool_name, metrics)
        instrumentations[id(metrics)] = instrumentation
    elif instrumentation.pool_name != pool_name:
        raise ValueError(f"pool already instrumented as {instrumentation.pool_name!r}")
    if client_or_pool is not pool:
        timed = client_or_pool.__dict__.setdefault("_inferwatch_timed", set())
        if id(metrics) not in timed:
            instrumentation.wrap_client(client_or_pool)
            timed.add(id(metrics))
    return instrumentation
