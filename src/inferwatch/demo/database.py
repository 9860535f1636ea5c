"""The generations table: one row per generation, which the job API also reads.

SQLite in a file by default (embedded, nothing to run), PostgreSQL when a URL is given. The
engine is SQLAlchemy's asyncio engine (aiosqlite, psycopg 3): waiting for a pooled
connection then happens on the event loop, where a timed-out or cancelled request stops
waiting, instead of tying up a thread per waiting request. The pool is small on purpose, so
the ``pool_exhaustion`` fault has something to exhaust.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prometheus_client.registry import CollectorRegistry
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.schema import CreateIndex, CreateTable

from inferwatch.config import BACKEND_SCHEMES
from inferwatch.demo.jobs import Job
from inferwatch.pools import instrument_sqlalchemy

log = logging.getLogger("inferwatch.demo")

POOL_NAME = "demo-db"
DEFAULT_POOL_SIZE = 5
# A generation request that waited a second for a connection has waited long enough; it
# also keeps an exhausted pool's timeouts steady enough for alert windows of a few seconds.
DEFAULT_POOL_TIMEOUT = 1.0
PRUNE_EVERY = 100  # inserts between deletions of the oldest rows
SQLITE_FILE = "demo.sqlite3"

metadata = MetaData()
generations = Table(
    "demo_generations",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("model", String(64), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("duration_seconds", Float, nullable=False),
    Column("created_at", Float, nullable=False, index=True),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("error", String(500)),
    Column("result_bytes", Integer),
)


def engine_url(postgres_url: str | None, state_dir: Path) -> str:
    """The SQLAlchemy URL: PostgreSQL through psycopg 3, else a SQLite file in ``state_dir``."""
    if not postgres_url:
        return f"sqlite+aiosqlite:///{state_dir / SQLITE_FILE}"
    scheme, sep, rest = postgres_url.partition("://")
    # SQLAlchemy's own spelling of the driver besides the schemes every command accepts.
    if not sep or scheme not in (*BACKEND_SCHEMES["postgres"], "postgresql+psycopg"):
        raise ValueError("the PostgreSQL URL must start with postgresql:// or postgres://")
    return f"postgresql+psycopg://{rest}"


class Database:
    def __init__(
        self,
        url: str,
        *,
        registry: CollectorRegistry | None,
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        max_rows: int = 1000,
    ) -> None:
        sqlite = url.startswith("sqlite")
        self.pool_size = pool_size
        self.max_rows = max_rows
        self.engine: AsyncEngine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            pool_pre_ping=not sqlite,  # a restarted server must not fail the next request
            # sqlite3's busy timeout: several workers write to one file.
            connect_args={"timeout": 10} if sqlite else {"connect_timeout": 5},
        )
        if sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_wal)
        self.pool = instrument_sqlalchemy(self.engine, pool_name=POOL_NAME, registry=registry)
        self._held: list[AsyncConnection] = []
        self._inserts = 0

    async def create_tables(self) -> None:
        # IF NOT EXISTS: every worker of a multi-worker server runs this at start.
        async with self.engine.begin() as conn:
            await conn.execute(CreateTable(generations, if_not_exists=True))
            for index in generations.indexes:
                await conn.execute(CreateIndex(index, if_not_exists=True))

    async def close(self) -> None:
        await self.release_connections()
        await self.engine.dispose()

    # -- rows -------------------------------------------------------------------------------
    async def insert(self, job: Job) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(generations).values(**_row(job)))
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 0:
            await self._prune()

    async def update(self, job_id: str, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(generations).where(generations.c.job_id == job_id).values(**values)
            )

    async def get(self, job_id: str) -> Job | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(generations).where(generations.c.job_id == job_id))
            ).first()
        return None if row is None else Job.model_validate(dict(row._mapping))

    async def _prune(self) -> None:
        """Keep the newest ``max_rows`` rows, so a long-running demo stays small."""
        async with self.engine.begin() as conn:
            cutoff = (
                await conn.execute(
                    select(generations.c.created_at)
                    .order_by(generations.c.created_at.desc())
                    .offset(self.max_rows - 1)
                    .limit(1)
                )
            ).scalar()
            if cutoff is not None:
                await conn.execute(delete(generations).where(generations.c.created_at < cutoff))

    # -- the pool_exhaustion fault ----------------------------------------------------------
    async def hold_connections(self) -> None:
        """Check out every free connection and keep it. Only free ones: waiting for a busy
        one would time out and count as the demo's own pool timeout."""
        pool = self.engine.sync_engine.pool
        while len(self._held) < self.pool_size and pool.checkedout() < self.pool_size:
            self._held.append(await self.engine.connect())

    async def release_connections(self) -> None:
        held, self._held = self._held, []
        for conn in held:
            await conn.close()

    @property
    def holding(self) -> int:
        return len(self._held)


def _row(job: Job) -> dict[str, Any]:
    return job.model_dump(include={c.name for c in generations.columns})


def _sqlite_wal(dbapi_connection: Any, record: Any) -> None:
    # Write-ahead logging lets readers and a writer (other workers) work at the same time.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
