"""Real Redis and PostgreSQL servers for the tests, started by pytest-redis and
pytest-postgresql on free loopback ports, once per test session.

Both servers require a password (the distinctive :data:`REDIS_PASSWORD` and
:data:`POSTGRES_PASSWORD`), so every test that connects also proves that credentials in URLs
stay out of metrics and logs. Tests that stop a server (fault tests) use the executor's
``stopped()`` context manager, which restarts it on the same port.

PostgreSQL's pg_ctl goes through ``pg_ctl_as_postgres`` next to this file, which hands it
to the library's own runner of PostgreSQL's programs (``inferwatch.stack.postgres``, which
the local stack uses too): as the ``postgres`` user when the tests run as root (initdb and
postgres refuse root).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from pytest_postgresql import factories as pg_factories
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_redis import factories as redis_factories
from pytest_redis.executor import RedisExecutor

from .polling import wait_until

REDIS_PASSWORD = "rds-Zq7-unmistakable-0x5EC2E7"
POSTGRES_PASSWORD = "pg-Kw3-unmistakable-0x5EC2E7"
PG_CTL = str(Path(__file__).with_name("pg_ctl_as_postgres"))
# The interpreter that script runs the library with: this one, whose environment has it.
os.environ.setdefault("INFERWATCH_TEST_PYTHON", sys.executable)

# port=None: any free port, chosen by port-for.
redis_server = redis_factories.redis_proc(port=None, password=REDIS_PASSWORD)
postgres_server = pg_factories.postgresql_proc(
    executable=PG_CTL,
    host="127.0.0.1",
    port=None,
    password=POSTGRES_PASSWORD,
    # Small and quiet: the tests need a handful of connections, not a tuned server.
    postgres_options="-c max_connections=40 -c shared_buffers=16MB -c fsync=off",
)


def redis_url(server: RedisExecutor, *, db: int = 0, password: str = REDIS_PASSWORD) -> str:
    return f"redis://:{quote(password, safe='')}@{server.host}:{server.port}/{db}"


def postgres_url(
    server: PostgreSQLExecutor,
    *,
    driver: str = "postgresql",
    dbname: str = "postgres",
    password: str = POSTGRES_PASSWORD,
) -> str:
    user = quote(server.user, safe="")
    secret = quote(password, safe="")
    return f"{driver}://{user}:{secret}@{server.host}:{server.port}/{dbname}"


def _answers(check: Callable[[], object]) -> bool:
    try:
        check()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def stopped(server: RedisExecutor | PostgreSQLExecutor, url: str) -> Iterator[None]:
    """Stop ``server`` for the ``with`` block, then restart it on the same port and wait
    (with a deadline) until it answers queries, not merely accepts TCP connections."""
    with server.stopped():
        yield
    if isinstance(server, RedisExecutor):
        import redis

        check: Callable[[], object] = lambda: redis.Redis.from_url(url).ping()  # noqa: E731
    else:
        import psycopg

        check = lambda: psycopg.connect(url, connect_timeout=2).close()  # noqa: E731
    wait_until(lambda: _answers(check), 30.0, interval=0.05, message="server to come back")
