"""SQLAlchemy pool and statement metrics against real PostgreSQL and SQLite, sync and async.

Also run under SQLAlchemy 2.0 by test_pools_sqlalchemy_compat.py (the venv has 2.1).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from pytest_postgresql.executors import PostgreSQLExecutor
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from inferwatch.pools import instrument_sqlalchemy
from tests.support import Metrics, wait_until
from tests.support.backends import postgres_url

POOL = {"db_client_connection_pool_name": "primary"}


def scrape(registry: CollectorRegistry) -> Metrics:
    return Metrics(generate_latest(registry).decode())


def figures(registry: CollectorRegistry, system: str) -> dict[str, float]:
    m = scrape(registry)
    labels = {**POOL, "db_system_name": system}
    return {
        "used": m.value("db_client_connections_usage", db_client_connection_state="used", **labels),
        "idle": m.value("db_client_connections_usage", db_client_connection_state="idle", **labels),
        "max": m.value("db_client_connection_max", **labels),
        "pending": m.value("db_client_connection_pending_requests", **labels),
        "timeouts": m.value("db_client_connection_timeouts_total", **labels),
        "waits": m.value("db_client_connection_wait_time_seconds_count", **labels),
        "uses": m.value("db_client_connection_use_time_seconds_count", **labels),
        "creates": m.value("db_client_connection_create_time_seconds_count", **labels),
    }


def expect(registry: CollectorRegistry, system: str, timeout: float = 10.0, **want: float) -> None:
    """Poll until the scraped figures include ``want`` (connections return asynchronously)."""
    seen: list[dict[str, float]] = []

    def check() -> bool:
        seen[:] = [figures(registry, system)]
        return all(seen[0][k] == v for k, v in want.items())

    wait_until(check, timeout, message=lambda: f"{want}; last seen {seen}")


@pytest.fixture
def pg_sync(postgres_server: PostgreSQLExecutor) -> Iterator[Any]:
    engine = create_engine(
        postgres_url(postgres_server, driver="postgresql+psycopg"),
        pool_size=3,
        max_overflow=2,
        pool_timeout=0.3,
    )
    yield engine
    engine.dispose()


class Holders:
    """Threads that each check out a connection and hold it until released."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def hold(self, n: int) -> None:
        for _ in range(n):
            thread = threading.Thread(target=self._hold, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _hold(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                self.release.wait(30)
        except BaseException as exc:
            self.errors.append(exc)

    def finish(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(30)


def test_sqlalchemy_version_is_the_one_expected() -> None:
    # The 2.0 run sets this, so a broken PYTHONPATH cannot silently test 2.1 twice.
    expected = os.environ.get("INFERWATCH_EXPECT_SQLALCHEMY", "")
    assert sqlalchemy.__version__.startswith(expected)


def test_queue_pool_exact_under_concurrency(pg_sync: Any) -> None:
    registry = CollectorRegistry()
    instrument_sqlalchemy(pg_sync, "primary", registry=registry)
    # A fresh QueuePool's overflow() is -pool_size: nothing may show as negative.
    assert pg_sync.pool.overflow() == -3
    expect(registry, "postgresql", used=0, idle=0, max=5, pending=0)

    holders = Holders(pg_sync)
    holders.hold(5)
    expect(registry, "postgresql", used=5, idle=0, max=5, pending=0, creates=5)
    waiter = Holders(pg_sync)
    waiter.hold(1)  # a sixth: waits for pool_timeout, then times out
    try:
        expect(registry, "postgresql", pending=1, used=5)
        expect(registry, "postgresql", pending=0, timeouts=1)
        waiter.finish()
        assert len(waiter.errors) == 1
        assert isinstance(waiter.errors[0], sqlalchemy.exc.TimeoutError)
    finally:
        holders.finish()
    assert holders.errors == []
    # pool_size 3 stay open, the 2 overflow connections are closed on return
    expect(registry, "postgresql", used=0, idle=3, pending=0, uses=5, waits=6, timeouts=1)


def test_a_waiter_served_by_a_release_is_not_a_timeout(postgres_server: PostgreSQLExecutor) -> None:
    engine = create_engine(
        postgres_url(postgres_server, driver="postgresql+psycopg"),
        pool_size=1,
        max_overflow=0,
        pool_timeout=20,
    )
    registry = CollectorRegistry()
    instrument_sqlalchemy(engine, "primary", registry=registry)
    try:
        holder = Holders(engine)
        holder.hold(1)
        expect(registry, "postgresql", used=1, max=1)
        waiter = Holders(engine)
        waiter.hold(1)
        expect(registry, "postgresql", pending=1)
        holder.finish()  # hands the one connection to the waiter
        expect(registry, "postgresql", pending=0, used=1, idle=0)
        waiter.finish()
        assert waiter.errors == [] and holder.errors == []
        expect(registry, "postgresql", used=0, idle=1, timeouts=0, waits=2)
    finally:
        engine.dispose()


def test_dispose_replaces_the_pool_and_figures_stay_right(pg_sync: Any) -> None:
    registry = CollectorRegistry()
    instrument_sqlalchemy(pg_sync, "primary", registry=registry)
    holders = Holders(pg_sync)
    holders.hold(2)
    expect(registry, "postgresql", used=2, idle=0)
    with pg_sync.connect() as c:  # a third, left idle in the pool
        c.execute(text("SELECT 1"))
    expect(registry, "postgresql", used=2, idle=1)
    old_pool = pg_sync.pool
    pg_sync.dispose()  # closes the idle one; the two in use belong to the old pool
    assert pg_sync.pool is not old_pool
    expect(registry, "postgresql", used=2, idle=0)
    holders.finish()
    # They went back to the discarded pool: not this engine's connections any more.
    expect(registry, "postgresql", used=0, idle=0)
    # The new pool is measured too: waits, timeouts and pending requests.
    waits_before = figures(registry, "postgresql")["waits"]
    holders = Holders(pg_sync)
    holders.hold(5)
    expect(registry, "postgresql", used=5, idle=0, max=5)
    with pytest.raises(sqlalchemy.exc.TimeoutError):
        pg_sync.connect()
    holders.finish()
    expect(registry, "postgresql", used=0, idle=3, timeouts=1, waits=waits_before + 6)


def test_instrumenting_a_pool_already_in_use(pg_sync: Any) -> None:
    # Connections opened before instrumentation are counted from the pool's own figures.
    held = pg_sync.connect()
    with pg_sync.connect() as c:
        c.execute(text("SELECT 1"))
    registry = CollectorRegistry()
    instrument_sqlalchemy(pg_sync, "primary", registry=registry)
    expect(registry, "postgresql", used=1, idle=1)
    held.close()
    expect(registry, "postgresql", used=0, idle=2)
    with pg_sync.connect() as c:
        expect(registry, "postgresql", used=1, idle=1)
    expect(registry, "postgresql", used=0, idle=2)


def test_sql_operations_are_bounded_keywords(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    registry = CollectorRegistry()
    instrument_sqlalchemy(engine, "primary", registry=registry)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (secret_column_x TEXT)"))
        for i in range(3):
            conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": f"value-{i}"})
        conn.execute(text("  /* a comment */ select * from t"))
        conn.execute(text("-- leading comment\nSELECT count(*) FROM t"))
        conn.execute(text("UPDATE t SET secret_column_x = 'y'"))
        conn.execute(text("WITH x AS (SELECT 1) SELECT * FROM x"))
        with pytest.raises(sqlalchemy.exc.OperationalError):
            conn.execute(text("SELEKT nonsense"))  # failed statements are timed too
    m = scrape(registry)
    name = "db_client_operation_duration_seconds_count"
    assert m.value(name, db_system_name="sqlite", db_operation_name="CREATE") == 1
    assert m.value(name, db_operation_name="INSERT", **POOL) == 3
    assert m.value(name, db_operation_name="SELECT") == 2
    assert m.value(name, db_operation_name="UPDATE") == 1
    assert m.value(name, db_operation_name="WITH") == 1
    assert m.value(name, db_operation_name="_OTHER") == 1
    assert m.label_values(name, "db_operation_name") <= {
        "CREATE", "INSERT", "SELECT", "UPDATE", "WITH", "_OTHER", "BEGIN", "COMMIT",
    }  # fmt: skip
    assert "secret_column_x" not in m.text and "value-1" not in m.text
    engine.dispose()


def test_instrumentation_errors_never_fail_a_query(tmp_path: Path, monkeypatch: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    registry = CollectorRegistry()
    pool = instrument_sqlalchemy(engine, "primary", registry=registry)

    def broken(*args: Any) -> None:
        raise RuntimeError("bookkeeping bug")

    monkeypatch.setattr(pool, "_update", broken)
    monkeypatch.setattr(pool, "_use", None)  # .observe raises AttributeError
    monkeypatch.setattr(pool.metrics.operation_duration, "labels", broken)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
    errors = scrape(registry).value(
        "inferwatch_instrumentation_errors_total", component="pools.sqlalchemy"
    )
    assert errors >= 3
    engine.dispose()


def test_pool_names_are_never_urls(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    for bad in ("postgresql://u:p@h/db", "user@host", "", "x" * 100):
        with pytest.raises(ValueError):
            instrument_sqlalchemy(engine, bad, registry=CollectorRegistry())
    registry = CollectorRegistry()
    first = instrument_sqlalchemy(engine, "primary", registry=registry)
    assert instrument_sqlalchemy(engine, "primary", registry=registry) is first
    other = create_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    with pytest.raises(ValueError, match="already instrumented"):
        instrument_sqlalchemy(other, "primary", registry=registry)


async def _hold_async(engine: Any, registry: CollectorRegistry, system: str, size: int) -> None:
    """``size`` tasks hold every connection of the pool, one more waits for one."""
    release = asyncio.Event()

    async def hold() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await release.wait()

    async def until(**want: float) -> None:
        for _ in range(1000):
            got = figures(registry, system)
            if all(got[k] == v for k, v in want.items()):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{want}; last seen {got}")

    tasks = [asyncio.create_task(hold()) for _ in range(size)]
    await until(used=size, idle=0, max=size, pending=0)
    extra = asyncio.create_task(hold())
    await until(pending=1, used=size)
    release.set()
    await asyncio.gather(*tasks, extra)
    await until(used=0, pending=0, uses=size + 1, waits=size + 1)
    got = figures(registry, system)
    assert 1 <= got["idle"] <= size


def test_async_engine_postgres(postgres_server: PostgreSQLExecutor) -> None:
    engine = create_async_engine(
        postgres_url(postgres_server, driver="postgresql+psycopg"), pool_size=2, max_overflow=1
    )
    registry = CollectorRegistry()
    instrument_sqlalchemy(engine, "primary", registry=registry)

    async def main() -> None:
        await _hold_async(engine, registry, "postgresql", 3)
        await engine.dispose()

    asyncio.run(main())


def test_async_engine_sqlite(tmp_path: Path) -> None:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        poolclass=sqlalchemy.pool.AsyncAdaptedQueuePool,
        pool_size=2,
        max_overflow=0,
    )
    registry = CollectorRegistry()
    instrument_sqlalchemy(engine, "primary", registry=registry)

    async def main() -> None:
        await _hold_async(engine, registry, "sqlite", 2)
        await engine.dispose()

    asyncio.run(main())
