"""Cache sizes under ``uvicorn --workers 3``: a cache in Redis is one set of entries that
every worker counts, so it is reported once (the latest count), never summed; a cache in
each worker's memory is its own, and the workers' sizes add up."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import redis
from pytest_redis.executor import RedisExecutor

from tests.support import wait_until
from tests.support.backends import redis_url
from tests.support.multiworker import multiworker

APP = "tests.apps.shared_cache_app:app"
REDIS_URL_ENV = "SHARED_CACHE_REDIS_URL"  # as tests/apps/shared_cache_app.py reads it
WORKERS = 3


def test_a_shared_cache_is_counted_once_however_many_workers_store(
    tmp_path: Path, redis_server: RedisExecutor
) -> None:
    url = redis_url(redis_server, db=1)  # a database no other test uses
    redis.Redis.from_url(url).flushdb()
    with multiworker(tmp_path, WORKERS, app=APP, env={REDIS_URL_ENV: url}) as server:
        stored: Counter[int] = Counter()  # keys stored, by worker pid

        def every_worker_stored() -> bool:
            # A new connection per request: the kernel hands each to any worker.
            for _ in range(WORKERS):
                status, pid, _ = server.get(f"/put/key-{sum(stored.values())}")
                assert status == 200
                stored[pid] += 1
            return len(stored) == WORKERS and all(n >= 2 for n in stored.values())

        wait_until(every_worker_stored, 60, message=lambda: f"stores by worker: {stored}")
        keys = sum(stored.values())
        samples = server.samples()
    assert samples[("inferwatch_cache_shared_entries", frozenset({("cache", "shared")}))] == keys
    assert ("inferwatch_cache_entries", frozenset({("cache", "shared")})) not in samples
    # Each key is in the memory of the one worker that stored it: the sizes add up.
    assert samples[("inferwatch_cache_entries", frozenset({("cache", "local")}))] == keys
    assert ("inferwatch_cache_shared_entries", frozenset({("cache", "local")})) not in samples
