"""The exporter's postgres collector against a real PostgreSQL: connections by state against
max_connections, failing fast while the server is down and recovering when it returns."""

from __future__ import annotations

import time

import psycopg
from pytest_postgresql.executors import PostgreSQLExecutor

from inferwatch.exporters import ExporterConfig, start_exporter
from inferwatch.exporters.postgres import OTHER, STATES
from tests.support import Metrics, scrape, wait_until
from tests.support.backends import postgres_url, stopped
from tests.support.server import LOOPBACK


def exporter(url: str):  # type: ignore[no-untyped-def]
    config = ExporterConfig(
        host=LOOPBACK,
        port=0,
        collectors=("host", "postgres"),
        postgres_url=url,
        cache_ttl=0,
        collector_timeout=4.0,
    )
    return start_exporter(config)


def states(m: Metrics) -> dict[str, float]:
    return {s.labels["state"]: s.value for s in m.samples("inferwatch_postgres_connections")}


def test_connections_by_state(postgres_server: PostgreSQLExecutor) -> None:
    url = postgres_url(postgres_server)
    ex = exporter(url)
    idle = [psycopg.connect(url) for _ in range(3)]
    in_tx = psycopg.connect(url)
    in_tx.execute("SELECT 1")  # leaves it idle in transaction
    try:
        baseline = states(scrape(ex.url))
        assert set(baseline) == {*STATES.values(), OTHER}  # bounded, and always all present
        m = wait_until(
            lambda: (m := scrape(ex.url)) and states(m)["idle_in_transaction"] >= 1 and m,
            10.0,
        )
        got = states(m)
        assert got["idle"] >= 3
        assert got["active"] >= 1  # the exporter's own query
        assert m.value("inferwatch_postgres_max_connections") == 40
        assert m.value("inferwatch_postgres_up") == 1
        for conn in idle:
            conn.close()
        in_tx.close()
        wait_until(lambda: states(scrape(ex.url))["idle"] <= got["idle"] - 3, 10.0)
    finally:
        ex.close()


def test_postgres_down_fails_fast_and_recovers(postgres_server: PostgreSQLExecutor) -> None:
    url = postgres_url(postgres_server)
    ex = exporter(url)
    try:
        assert scrape(ex.url).value("inferwatch_postgres_up") == 1
        with stopped(postgres_server, url):
            started = time.monotonic()
            m = scrape(ex.url)
            assert time.monotonic() - started < 4.0
            assert m.value("inferwatch_exporter_collector_success", collector="postgres") == 0
            assert m.value("inferwatch_exporter_collector_success", collector="host") == 1
            assert m.value("inferwatch_postgres_up") == 0
            assert not m.samples("inferwatch_postgres_connections")
        m = wait_until(
            lambda: (m := scrape(ex.url)) and m.value("inferwatch_postgres_up") == 1 and m, 15.0
        )
        assert m.value("inferwatch_exporter_collector_success", collector="postgres") == 1
        assert states(m)["active"] >= 1
    finally:
        ex.close()
