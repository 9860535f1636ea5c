"""The exporter's redis collector against a real Redis: INFO figures, the cache sparing the
server, failing fast while Redis is down and recovering when it returns."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
import redis
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_redis.executor import RedisExecutor

from inferwatch.exporters import ExporterConfig, start_exporter
from tests.support import Metrics, scrape, wait_until
from tests.support.backends import postgres_url, redis_url, stopped
from tests.support.server import LOOPBACK


def exporter(url: str, **settings: object):  # type: ignore[no-untyped-def]
    config = ExporterConfig(
        host=LOOPBACK, port=0, collectors=("host", "redis"), redis_url=url, **settings
    )
    return start_exporter(config)


def info_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_info", {}).get("calls", 0))


def test_redis_info_figures(redis_server: RedisExecutor) -> None:
    url = redis_url(redis_server)
    client = redis.Redis.from_url(url)
    client.config_resetstat()
    client.set("present", "1")
    for _ in range(3):
        client.get("present")
    for _ in range(2):
        client.get("absent")
    ex = exporter(url, cache_ttl=0)
    try:
        m = scrape(ex.url)
        assert m.value("inferwatch_exporter_collector_success", collector="redis") == 1
        assert m.value("inferwatch_redis_up") == 1
        assert m.value("inferwatch_redis_keyspace_hits_total") == 3
        assert m.value("inferwatch_redis_keyspace_misses_total") == 2
        assert m.value("inferwatch_redis_connected_clients") >= 2  # ours and the exporter's
        assert m.value("inferwatch_redis_memory_used_bytes") > 0
        for name in (
            "inferwatch_redis_blocked_clients",
            "inferwatch_redis_memory_max_bytes",
            "inferwatch_redis_evicted_keys_total",
            "inferwatch_redis_rejected_connections_total",
            "inferwatch_redis_commands_processed_total",
        ):
            assert m.samples(name), name
    finally:
        ex.close()


def test_cache_spares_the_server(redis_server: RedisExecutor) -> None:
    url = redis_url(redis_server)
    client = redis.Redis.from_url(url)
    ex = exporter(url, cache_ttl=60)
    try:
        before = info_calls(client)
        for _ in range(10):
            assert scrape(ex.url).value("inferwatch_redis_up") == 1
        # one INFO for ten scrapes, plus the INFO that reads the count
        assert info_calls(client) - before == 2
    finally:
        ex.close()


def test_redis_down_fails_fast_and_recovers(redis_server: RedisExecutor) -> None:
    url = redis_url(redis_server)
    ex = exporter(url, cache_ttl=0, collector_timeout=3.0)
    try:
        assert scrape(ex.url).value("inferwatch_redis_up") == 1
        with stopped(redis_server, url):
            started = time.monotonic()
            m = scrape(ex.url)
            assert time.monotonic() - started < 3.0  # within the collector timeout
            assert m.value("inferwatch_exporter_collector_success", collector="redis") == 0
            assert m.value("inferwatch_exporter_collector_success", collector="host") == 1
            assert m.value("inferwatch_exporter_collector_timeouts_total", collector="redis") == 0
            assert m.value("inferwatch_redis_up") == 0
            assert not m.samples("inferwatch_redis_keyspace_hits_total")
        redis.Redis.from_url(url).get("present")
        m = wait_for(ex.url, lambda m: m.value("inferwatch_redis_up") == 1)
        assert m.value("inferwatch_exporter_collector_success", collector="redis") == 1
        assert m.samples("inferwatch_redis_keyspace_hits_total")
    finally:
        ex.close()


def wait_for(url: str, predicate) -> Metrics:  # type: ignore[no-untyped-def]
    return wait_until(lambda: (m := scrape(url)) and predicate(m) and m, 15.0, interval=0.05)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH")
def test_promtool_accepts_the_exporter_output(
    redis_server: RedisExecutor, postgres_server: PostgreSQLExecutor
) -> None:
    config = ExporterConfig(
        host=LOOPBACK,
        port=0,
        collectors=("host", "redis", "postgres"),
        redis_url=redis_url(redis_server),
        postgres_url=postgres_url(postgres_server),
    )
    ex = start_exporter(config)
    try:
        body = httpx.get(ex.url + "/metrics", timeout=10).text
        m = Metrics(body)
        for collector in ("redis", "postgres"):
            assert m.value("inferwatch_exporter_collector_success", collector=collector) == 1
        result = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, text=True
        )
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    finally:
        ex.close()
