"""The demo on real backends: PostgreSQL for its table, Redis for its cache, both behind
passwords that must never reach /metrics or the demo's log; a Redis that is down; and the
Redis cache backend on its own."""

from __future__ import annotations

import uuid

import httpx
import redis
from prometheus_client.registry import CollectorRegistry
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_redis.executor import RedisExecutor

from inferwatch.ai import MISSING, InstrumentedCache, RedisBackend
from tests.support import Server, StartDemo, free_port, registry_samples, value, wait_for_metrics
from tests.support.backends import POSTGRES_PASSWORD, REDIS_PASSWORD, postgres_url, redis_url
from tests.support.promtool import needs_promtool, promtool_problems

AUDIO = "/v1/audio/generate"
COUNT = "http_server_request_duration_seconds_count"
GETS = "inferwatch_cache_gets_total"
CACHE = {"cache": "demo-conditioning"}
PG = {"db_system_name": "postgresql", "db_client_connection_pool_name": "demo-db"}
REDIS = {"db_system_name": "redis", "db_client_connection_pool_name": "demo-cache"}
ERRORS = "inferwatch_instrumentation_errors_total"
OPERATIONS = "db_client_operation_duration_seconds_count"


def generate(server: Server, prompt: str) -> int:
    body = {"prompt": prompt, "duration_seconds": 1.0}
    return httpx.post(f"{server.url}{AUDIO}", json=body, timeout=10.0).status_code


def assert_no_secrets(server: Server, text: str) -> None:
    for secret in (REDIS_PASSWORD, POSTGRES_PASSWORD):
        assert secret not in text
        assert secret not in server.log()


def test_postgres_and_redis_backends(
    start_demo: StartDemo, redis_server: RedisExecutor, postgres_server: PostgreSQLExecutor
) -> None:
    server = start_demo(
        "--redis-url", redis_url(redis_server), "--postgres-url", postgres_url(postgres_server)
    )
    prompt = f"tides {uuid.uuid4().hex}"  # the Redis server outlives this test: a fresh key
    assert [generate(server, prompt) for _ in range(2)] == [200, 200]
    m = wait_for_metrics(server.url, lambda m: m.value(GETS, **CACHE) == 2, show=GETS)
    assert m.value(GETS, result="miss", **CACHE) == 1
    assert m.value(GETS, result="hit", **CACHE) == 1
    assert m.value(OPERATIONS, db_operation_name="GET", **REDIS) == 2
    assert m.value(OPERATIONS, db_operation_name="EVAL", **REDIS) == 2  # store, then size
    assert m.value("db_client_connection_max", **REDIS) == 8
    assert m.value("db_client_connection_max", **PG) == 5
    assert m.value(OPERATIONS, db_operation_name="INSERT", **PG) == 2
    assert m.value(OPERATIONS, db_operation_name="UPDATE", **PG) == 2
    assert m.label_values("db_client_connections_usage", "db_system_name") == {
        "postgresql",
        "redis",
    }
    assert m.samples(ERRORS) == []

    job = httpx.post(
        f"{server.url}/v1/jobs", json={"kind": "audio", "prompt": prompt, "duration_seconds": 2}
    )
    assert job.status_code == 202
    wait_for_metrics(server.url, lambda m: m.value(COUNT, http_route="/v1/jobs") == 1)
    status = httpx.get(server.url + job.json()["status_url"]).json()
    assert (status["status"], status["model"]) == ("done", "speech-small")

    log = server.log()
    host = f"{postgres_server.host}:{postgres_server.port}"
    assert f"database postgresql://{host}/postgres" in log
    assert f"cache redis://{redis_server.host}:{redis_server.port}/0" in log
    assert_no_secrets(server, httpx.get(f"{server.url}/metrics").text)


def test_postgres_pool_exhaustion(
    start_demo: StartDemo, postgres_server: PostgreSQLExecutor
) -> None:
    server = start_demo(
        "--postgres-url",
        postgres_url(postgres_server),
        "--db-pool-size",
        "2",
        "--db-pool-timeout",
        "0.2",
    )
    response = httpx.put(f"{server.url}/admin/faults", json={"pool_exhaustion": True})
    assert response.status_code == 200
    assert generate(server, "x") == 503
    timeouts = "db_client_connection_timeouts_total"
    m = wait_for_metrics(server.url, lambda m: m.value(timeouts, **PG) == 1, show=timeouts)
    assert m.value("db_client_connections_usage", db_client_connection_state="used", **PG) == 2
    httpx.delete(f"{server.url}/admin/faults")
    assert generate(server, "x") == 200
    assert_no_secrets(server, m.text)


def test_unreachable_redis_is_a_miss_not_a_failure(start_demo: StartDemo) -> None:
    nowhere = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    server = start_demo("--redis-url", nowhere)
    assert [generate(server, "surf") for _ in range(3)] == [200, 200, 200]
    m = wait_for_metrics(server.url, lambda m: m.value(GETS, **CACHE) == 3, show=ERRORS)
    assert m.value(GETS, result="miss", **CACHE) == 3
    assert m.value("inferwatch_cache_puts_total", **CACHE) is None  # nothing was stored
    assert m.value(ERRORS, component="ai.cache.redis") == 3  # each failed read
    assert m.value(ERRORS, component="ai.cache.backend") == 3  # each failed write
    assert_no_secrets(server, m.text)


@needs_promtool
def test_backend_scrape_passes_promtool(
    start_demo: StartDemo, redis_server: RedisExecutor, postgres_server: PostgreSQLExecutor
) -> None:
    server = start_demo(
        "--redis-url", redis_url(redis_server), "--postgres-url", postgres_url(postgres_server)
    )
    assert generate(server, "promtool") == 200
    m = wait_for_metrics(server.url, lambda m: m.value(COUNT) == 1, show=COUNT)
    assert promtool_problems(m.text) == []


def test_redis_backend_on_a_real_server(redis_server: RedisExecutor) -> None:
    client = redis.Redis.from_url(redis_url(redis_server, db=7))
    client.flushdb()
    client.set("unrelated", "kept")  # outside the prefix: never counted nor cleared
    registry = CollectorRegistry()
    backend = RedisBackend(client, prefix="t[1]:", ttl=0.5, registry=registry)
    cache = InstrumentedCache("redis-test", backend=backend, registry=registry)
    assert cache.get("a") is None
    cache.put("a", [1, 2.5, "x"])
    cache.put(("tuple", 1), {"k": None})
    assert cache.get("a") == [1, 2.5, "x"]
    assert cache.get(("tuple", 1)) == {"k": None}
    assert 0 < client.pttl("t[1]:a") <= 500  # a fractional TTL is set in milliseconds
    assert len(cache) == 2
    got = registry_samples(registry)
    assert value(got, "inferwatch_cache_gets_total", cache="redis-test", result="hit") == 2
    assert value(got, "inferwatch_cache_gets_total", cache="redis-test", result="miss") == 1
    assert value(got, "inferwatch_cache_shared_entries", cache="redis-test") == 2

    client.set("t[1]:broken", b"\xff not json")
    assert backend.get("broken") is MISSING  # undecodable: a reported miss
    assert cache.clear() == 3
    assert client.get("unrelated") == b"kept"
    got = registry_samples(registry)
    assert value(got, ERRORS, component="ai.cache.redis") == 1
    assert value(got, "inferwatch_cache_evictions_total", cache="redis-test", reason="manual") == 3
    client.close()
