"""redis-py pool and command metrics against a real Redis: sync and asyncio,
ConnectionPool and BlockingConnectionPool."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from pytest_redis.executor import RedisExecutor

from inferwatch.pools import instrument_redis
from tests.support import Metrics, wait_until
from tests.support.backends import redis_url

LABELS = {"db_system_name": "redis", "db_client_connection_pool_name": "cache"}


def figures(registry: CollectorRegistry) -> dict[str, float]:
    m = Metrics(generate_latest(registry).decode())
    state = "db_client_connection_state"
    return {
        "used": m.value("db_client_connections_usage", **{state: "used"}, **LABELS),
        "idle": m.value("db_client_connections_usage", **{state: "idle"}, **LABELS),
        "max": m.value("db_client_connection_max", **LABELS),
        "pending": m.value("db_client_connection_pending_requests", **LABELS),
        "timeouts": m.value("db_client_connection_timeouts_total", **LABELS),
        "waits": m.value("db_client_connection_wait_time_seconds_count", **LABELS),
        "uses": m.value("db_client_connection_use_time_seconds_count", **LABELS),
        "creates": m.value("db_client_connection_create_time_seconds_count", **LABELS),
    }


def expect(registry: CollectorRegistry, **want: float) -> None:
    seen: list[dict[str, float]] = []

    def check() -> bool:
        seen[:] = [figures(registry)]
        return all(seen[0][k] == v for k, v in want.items())

    wait_until(check, 10.0, message=lambda: f"{want}; last seen {seen}")


def ops(registry: CollectorRegistry) -> dict[str, float]:
    m = Metrics(generate_latest(registry).decode())
    return {
        s.labels["db_operation_name"]: s.value
        for s in m.samples("db_client_operation_duration_seconds_count", **LABELS)
    }


@pytest.mark.parametrize("blocking", [False, True], ids=["ConnectionPool", "Blocking"])
def test_sync_pool_exact_under_concurrency(redis_server: RedisExecutor, blocking: bool) -> None:
    cls = redis.BlockingConnectionPool if blocking else redis.ConnectionPool
    kwargs: dict[str, Any] = {"timeout": 0.3} if blocking else {}
    pool = cls.from_url(redis_url(redis_server), max_connections=5, **kwargs)
    registry = CollectorRegistry()
    instrument_redis(pool, "cache", registry=registry)
    expect(registry, used=0, idle=0, max=5, pending=0)
    release = threading.Event()

    def hold() -> None:
        connection = pool.get_connection()
        try:
            release.wait(30)
        finally:
            pool.release(connection)

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(5)]
    for t in threads:
        t.start()
    expect(registry, used=5, idle=0, pending=0, creates=5)
    # A sixth request: the blocking pool waits `timeout` then gives up, the plain pool fails
    # at once; either way exactly one timeout is counted.
    with pytest.raises(redis.ConnectionError):
        pool.get_connection()
    expect(registry, timeouts=1, pending=0, used=5)
    release.set()
    for t in threads:
        t.join(10)
    expect(registry, used=0, idle=5, uses=5, waits=6, timeouts=1)
    pool.disconnect()
    expect(registry, used=0, idle=0)  # connection objects left, but no sockets


def test_blocking_pool_counts_waiters(redis_server: RedisExecutor) -> None:
    pool = redis.BlockingConnectionPool.from_url(
        redis_url(redis_server), max_connections=1, timeout=20
    )
    registry = CollectorRegistry()
    instrument_redis(pool, "cache", registry=registry)
    held = pool.get_connection()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.get_connection()), daemon=True)
    waiter.start()
    expect(registry, pending=1, used=1)
    pool.release(held)
    waiter.join(10)
    expect(registry, pending=0, used=1, timeouts=0)
    pool.release(got[0])
    expect(registry, used=0, idle=1)


def test_command_latency_counts_exactly(redis_server: RedisExecutor) -> None:
    client = redis.Redis.from_url(redis_url(redis_server), max_connections=4)
    registry = CollectorRegistry()
    instrument_redis(client, "cache", registry=registry)
    assert instrument_redis(client, "cache", registry=registry)  # idempotent: no double timing
    for i in range(7):
        client.set(f"k{i}", "v")
    for i in range(4):
        client.get(f"k{i}")
    client.incr("counter")
    client.execute_command("CLIENT SETNAME", "x")
    with pytest.raises(redis.ResponseError):
        client.execute_command("NOSUCHCOMMAND")  # failed commands are timed too
    got = ops(registry)
    assert got.pop("SET") == 7 and got.pop("GET") == 4
    assert got.pop("INCRBY") == 1  # redis-py sends INCR as INCRBY
    assert got.pop("CLIENT") == 1 and got.pop("NOSUCHCOMMAND") == 1
    assert got == {}
    # Connection bookkeeping sees every command's checkout.
    assert figures(registry)["uses"] == 14


def test_async_pools(redis_server: RedisExecutor) -> None:
    async def main() -> None:
        for cls in (aioredis.ConnectionPool, aioredis.BlockingConnectionPool):
            blocking = cls is aioredis.BlockingConnectionPool
            kwargs: dict[str, Any] = {"timeout": 0.2} if blocking else {}
            pool = cls.from_url(redis_url(redis_server), max_connections=3, **kwargs)
            client = aioredis.Redis(connection_pool=pool)
            registry = CollectorRegistry()
            instrument_redis(client, "cache", registry=registry)
            held = [await pool.get_connection() for _ in range(3)]
            got = figures(registry)
            assert (got["used"], got["idle"], got["max"]) == (3, 0, 3)
            with pytest.raises(redis.ConnectionError):
                await pool.get_connection()
            assert figures(registry)["timeouts"] == 1
            for c in held:
                await pool.release(c)
            got = figures(registry)
            assert (got["used"], got["idle"], got["pending"]) == (0, 3, 0)
            limit = asyncio.Semaphore(3)  # the plain pool fails beyond max_connections

            async def limited(command: Any, limit: asyncio.Semaphore = limit) -> Any:
                async with limit:
                    return await command

            await asyncio.gather(*(limited(client.set(f"a{i}", i)) for i in range(10)))
            await asyncio.gather(*(limited(client.get(f"a{i}")) for i in range(6)))
            assert ops(registry) == {"SET": 10, "GET": 6}
            got = figures(registry)
            assert got["used"] == 0 and 1 <= got["idle"] <= 3
            await client.aclose()

    asyncio.run(main())


def test_async_blocking_pool_counts_waiters(redis_server: RedisExecutor) -> None:
    async def main() -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url(redis_server), max_connections=1, timeout=20
        )
        registry = CollectorRegistry()
        instrument_redis(pool, "cache", registry=registry)
        held = await pool.get_connection()
        waiter = asyncio.create_task(pool.get_connection())
        for _ in range(500):
            if figures(registry)["pending"] == 1:
                break
            await asyncio.sleep(0.01)
        assert figures(registry)["pending"] == 1
        await pool.release(held)
        second = await asyncio.wait_for(waiter, 10)
        got = figures(registry)
        assert (got["pending"], got["used"], got["timeouts"]) == (0, 1, 0)
        await pool.release(second)
        await pool.aclose()

    asyncio.run(main())
