"""Passwords in database and Redis URLs appear in no metric, label, page or log line: the
app registry with pools instrumented, the standalone exporter (in process and as a command,
with working and with failing backends), and every log record along the way; and a password
with unencoded `@` and `:` in it, which no part of may show anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_redis.executor import RedisExecutor
from sqlalchemy import create_engine, text

from inferwatch.exporters import ExporterConfig, start_exporter
from inferwatch.pools import instrument_redis, instrument_sqlalchemy
from tests.support import free_port, serve, wait_until
from tests.support.backends import POSTGRES_PASSWORD, REDIS_PASSWORD, postgres_url, redis_url
from tests.support.server import LOOPBACK, inferwatch_command

WRONG_PASSWORD = "wrong-Pw9-unmistakable-0xBADC0DE"
SECRETS = (REDIS_PASSWORD, POSTGRES_PASSWORD, WRONG_PASSWORD)


def assert_clean(where: str, text_: str) -> None:
    assert text_, f"{where}: nothing captured, so nothing was checked"
    for secret in SECRETS:
        assert secret not in text_, f"{where} shows a password"


def exporter_pages(url: str) -> str:
    pages = [httpx.get(url + path, timeout=10).text for path in ("/metrics", "/")]
    return "\n".join(pages)


def test_no_password_anywhere(
    redis_server: RedisExecutor,
    postgres_server: PostgreSQLExecutor,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    good_redis, good_pg = redis_url(redis_server), postgres_url(postgres_server)
    bad_redis = redis_url(redis_server, password=WRONG_PASSWORD)
    bad_pg = postgres_url(postgres_server, password=WRONG_PASSWORD)

    # 1. the application's registry with both kinds of pool instrumented
    registry = CollectorRegistry()
    engine = create_engine(postgres_url(postgres_server, driver="postgresql+psycopg"))
    instrument_sqlalchemy(engine, "primary", registry=registry)
    client = redis.Redis.from_url(good_redis)
    instrument_redis(client, "cache", registry=registry)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    client.set("k", "v")
    broken = redis.Redis.from_url(bad_redis)
    instrument_redis(broken, "broken", registry=registry)
    with pytest.raises(redis.AuthenticationError):
        broken.get("k")
    app_text = generate_latest(registry).decode()
    assert 'db_client_connection_pool_name="primary"' in app_text
    assert 'db_system_name="redis"' in app_text
    assert_clean("app /metrics", app_text)
    engine.dispose()

    # 2. the exporter in process: working, then failing backends (errors are logged)
    pages = []
    for r_url, p_url in ((good_redis, good_pg), (bad_redis, bad_pg)):
        config = ExporterConfig(
            host=LOOPBACK, port=0, redis_url=r_url, postgres_url=p_url, cache_ttl=0
        )
        assert_clean("config repr/describe", repr(config) + str(config.describe()))
        ex = start_exporter(config)
        try:
            pages.append(exporter_pages(ex.url))
        finally:
            ex.close()
    assert 'inferwatch_exporter_collector_success{collector="redis"} 1.0' in pages[0]
    assert 'inferwatch_exporter_collector_success{collector="redis"} 0.0' in pages[1]
    assert 'inferwatch_exporter_collector_success{collector="postgres"} 0.0' in pages[1]
    assert_clean("exporter pages", "\n".join(pages))
    assert "collector redis failed" in caplog.text
    assert "collector postgres failed" in caplog.text
    assert_clean("log records", caplog.text)

    # 3. the `inferwatch exporter` command, flags carrying the passwords, logging to stderr
    port = free_port()
    command = [
        *inferwatch_command(), "exporter", "--host", LOOPBACK, "--port", str(port),
        "--redis-url", bad_redis, "--postgres-url", bad_pg, "--cache-ttl", "0",
    ]  # fmt: skip
    log_path = tmp_path / "exporter.log"
    with serve(command, port=port, log_path=log_path, ready_path="/") as server:
        assert_clean("exporter command pages", exporter_pages(server.url))
        wait_until(lambda: "collector postgres failed" in server.log(), 10.0)
        wait_until(lambda: "collector redis failed" in server.log(), 10.0)
    assert_clean("exporter command log", log_path.read_text())


# A password with every character that ends a userinfo early for some parser, each piece
# distinctive enough to search for on its own.
AT_PASSWORD = "Kw3-first@Zq7-second:x9-third@Lm4-fourth"
AT_PIECES = (AT_PASSWORD, "Kw3-first", "Zq7-second", "x9-third", "Lm4-fourth")


def test_unencoded_at_in_a_postgres_password_shows_nowhere(tmp_path: Path) -> None:
    """The exporter given `postgresql://user:pass@with@ats@host/db` from a file, the host
    refusing connections: no piece of the password in its log, its pages or any process's
    command line, and it tries the host a URL parser reads (the part after the last `@`)."""
    refused = free_port()  # nothing listens there
    url_file = tmp_path / "postgres-url"
    url_file.write_text(f"postgresql://inferwatch:{AT_PASSWORD}@127.0.0.1:{refused}/app\n")
    url_file.chmod(0o600)
    port = free_port()
    command = [
        *inferwatch_command(), "exporter", "--host", LOOPBACK, "--port", str(port),
        "--collectors", "host,postgres", "--postgres-url-file", str(url_file),
        "--cache-ttl", "0",
    ]  # fmt: skip
    log_path = tmp_path / "exporter.log"
    with serve(command, port=port, log_path=log_path, ready_path="/") as server:
        pages = exporter_pages(server.url)
        wait_until(lambda: "collector postgres failed" in server.log(), 10.0)
        command_lines = [
            " ".join(p.info["cmdline"] or ()) for p in psutil.process_iter(["cmdline"])
        ]
        assert str(url_file) in " ".join(command_lines)  # the exporter's own is among them
    log = log_path.read_text()
    for where, text_ in (("log", log), ("pages", pages), ("command lines", command_lines)):
        for piece in AT_PIECES:
            assert piece not in str(text_), f"{piece!r} shows in the exporter's {where}"
    assert 'inferwatch_exporter_collector_success{collector="postgres"} 0.0' in pages
    assert "inferwatch_postgres_up 0.0" in pages
    assert f'connection to server at "127.0.0.1", port {refused} failed' in log
