"""Cache metrics: the instrumented cache (sync/async, LRU, TTL) and the adapter; the Redis
backend's size on a real server (cost flat in the cache size, exact under TTL expiry and
racing writers)."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from pytest_redis.executor import RedisExecutor

from inferwatch.ai import OTHER, CacheMetrics, InstrumentedCache, RedisBackend, instrumented_cache
from inferwatch.ai.redis_backend import PRUNE_PER_WRITE
from inferwatch.http.instruments import http_metrics
from inferwatch.metrics.counter import CounterChild
from inferwatch.metrics.gauge import GaugeChild
from inferwatch.metrics.histogram import HistogramChild
from tests.support import Exact, registry_samples, value, wait_until
from tests.support.backends import redis_url

Scrape = Exact
GETS = "inferwatch_cache_gets_total"
PUTS = "inferwatch_cache_puts_total"
EVICTIONS = "inferwatch_cache_evictions_total"
ENTRIES = "inferwatch_cache_entries"
SHARED_ENTRIES = "inferwatch_cache_shared_entries"  # a Redis cache's: never summed
LOAD = "inferwatch_cache_load_duration_seconds"
ERRORS = "inferwatch_instrumentation_errors_total"


def scrape(registry: CollectorRegistry) -> Scrape:
    return registry_samples(registry)


def counts(registry: CollectorRegistry, cache: str) -> dict[str, float | None]:
    got = scrape(registry)
    shared = value(got, SHARED_ENTRIES, cache=cache)
    return {
        "hit": value(got, GETS, cache=cache, result="hit"),
        "miss": value(got, GETS, cache=cache, result="miss"),
        "puts": value(got, PUTS, cache=cache),
        "size": value(got, EVICTIONS, cache=cache, reason="size"),
        "ttl": value(got, EVICTIONS, cache=cache, reason="ttl"),
        "manual": value(got, EVICTIONS, cache=cache, reason="manual"),
        "entries": value(got, ENTRIES, cache=cache) if shared is None else shared,
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_sync_decorator_counts_hits_misses_puts_and_miss_cost() -> None:
    reg, clock = CollectorRegistry(), FakeClock()
    calls: list[tuple[Any, ...]] = []

    @instrumented_cache("embeddings", registry=reg, clock=clock)
    def embed(text: str, *, dim: int = 4) -> tuple[str, int]:
        calls.append((text, dim))
        clock.advance(0.3)
        return text, dim

    results = [embed("a"), embed("a"), embed("b"), embed("a", dim=8), embed("a", dim=8)]
    assert results == [("a", 4), ("a", 4), ("b", 4), ("a", 8), ("a", 8)]
    assert calls == [("a", 4), ("b", 4), ("a", 8)]
    assert embed.__name__ == "embed"
    assert counts(reg, "embeddings") == {
        "hit": 2, "miss": 3, "puts": 3, "size": None, "ttl": None, "manual": None, "entries": 3,
    }  # fmt: skip
    got = scrape(reg)
    assert value(got, f"{LOAD}_count", cache="embeddings") == 3
    assert value(got, f"{LOAD}_bucket", le="0.25", cache="embeddings") == 0
    assert value(got, f"{LOAD}_bucket", le="0.5", cache="embeddings") == 3
    assert value(got, f"{LOAD}_sum", cache="embeddings") == pytest.approx(0.9)


def test_async_decorator_and_none_values() -> None:
    reg = CollectorRegistry()
    calls = 0

    @instrumented_cache("voices", registry=reg)
    async def voice(name: str) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return None  # None is a value like any other

    async def main() -> None:
        for name in ("x", "x", "y", "x"):
            assert await voice(name) is None

    asyncio.run(main())
    assert calls == 2
    c = counts(reg, "voices")
    assert (c["hit"], c["miss"], c["puts"], c["entries"]) == (2, 2, 2, 2)


def test_lru_size_eviction_keeps_recently_used() -> None:
    reg = CollectorRegistry()

    @instrumented_cache("prompts", max_size=2, registry=reg)
    def f(x: int) -> int:
        return x * 10

    f(1), f(2), f(1)  # 1 is now the most recently used
    f(3)  # evicts 2
    assert counts(reg, "prompts")["size"] == 1
    f(1)  # still cached
    f(2)  # evicted: a miss, evicts 3
    c = counts(reg, "prompts")
    assert (c["hit"], c["miss"], c["puts"], c["size"], c["entries"]) == (2, 4, 4, 2, 2)


def test_ttl_expiry_driven_by_the_clock() -> None:
    reg, clock = CollectorRegistry(), FakeClock()
    computed: list[int] = []

    @instrumented_cache("tts-audio", ttl=10, max_size=3, registry=reg, clock=clock)
    def f(x: int) -> int:
        computed.append(x)
        return x

    f(1)
    clock.advance(9.99)
    f(1)  # hit
    clock.advance(0.01)  # exactly the TTL: expired
    f(1)  # miss: evicted for ttl, computed again
    c = counts(reg, "tts-audio")
    assert (c["hit"], c["miss"], c["ttl"], c["entries"]) == (1, 2, 1, 1)
    assert computed == [1, 1]

    f(2), f(3)
    clock.advance(10)
    cache = f.cache  # type: ignore[attr-defined]
    assert cache.backend.purge_expired() == 3
    c = counts(reg, "tts-audio")
    assert (c["ttl"], c["entries"]) == (4, 0)

    # An expired entry pushed out by size counts as a ttl eviction, a live one as size.
    f(4)
    clock.advance(5)
    f(5), f(6)
    clock.advance(5)  # 4 has expired, 5 and 6 have not
    f(7)
    f(8)
    c = counts(reg, "tts-audio")
    assert (c["ttl"], c["size"], c["entries"]) == (5, 1, 3)


def test_manual_evictions_and_direct_use() -> None:
    reg = CollectorRegistry()
    cache = InstrumentedCache("features", registry=reg)
    assert cache.get("k", default="none") == "none"
    cache.put("k", 1)
    cache.put("j", 2)
    cache.put("i", 3)
    assert cache.get("k") == 1
    assert cache.invalidate("k") is True
    assert cache.invalidate("k") is False
    assert cache.get_or_load("j", lambda: 99) == 2
    assert cache.get_or_load("z", lambda: 26) == 26
    assert len(cache) == 3
    assert cache.clear() == 3
    assert counts(reg, "features") == {
        "hit": 2, "miss": 2, "puts": 4, "size": None, "ttl": None, "manual": 4, "entries": 0,
    }  # fmt: skip


def test_loader_failures_propagate_and_are_not_cached() -> None:
    reg = CollectorRegistry()
    attempts = 0
    error = RuntimeError("model crashed")

    @instrumented_cache("flaky", registry=reg)
    def f(x: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise error
        return x

    with pytest.raises(RuntimeError) as raised:
        f(1)
    assert raised.value is error
    assert f(1) == 1
    assert f(1) == 1
    c = counts(reg, "flaky")
    assert (c["hit"], c["miss"], c["puts"], c["entries"]) == (1, 2, 1, 1)
    assert value(scrape(reg), f"{LOAD}_count", cache="flaky") == 2


def test_unhashable_arguments_run_uncached() -> None:
    reg = CollectorRegistry()
    http_metrics(reg)

    @instrumented_cache("lists", registry=reg)
    def total(values: list[int]) -> int:
        return sum(values)

    assert total([1, 2]) == 3
    assert total([1, 2]) == 3

    @instrumented_cache("keyed", registry=reg, key=lambda values: tuple(values))
    def total2(values: list[int]) -> int:
        return sum(values)

    assert total2([1, 2]) == 3
    assert total2([1, 2]) == 3
    got = scrape(reg)
    assert value(got, GETS, cache="lists", result="miss") == 2
    assert value(got, PUTS, cache="lists") is None
    assert value(got, ERRORS, component="ai.cache.backend") == 2
    assert value(got, GETS, cache="keyed", result="hit") == 1


def test_adapter_counts_an_existing_cache() -> None:
    reg, clock = CollectorRegistry(), FakeClock()
    existing: dict[str, int] = {}
    metrics = CacheMetrics("legacy", reg, clock=clock)

    def lookup(key: str) -> int:
        if key in existing:
            metrics.hit()
            return existing[key]
        metrics.miss()
        with metrics.loading():
            clock.advance(2.0)
            value = len(key)
        existing[key] = value
        metrics.put()
        metrics.set_size(len(existing))
        return value

    for key in ("ab", "ab", "abc", "ab"):
        lookup(key)
    existing.clear()
    metrics.evicted("manual", 2)
    metrics.set_size(0)
    metrics.hit(5)
    assert counts(reg, "legacy") == {
        "hit": 7, "miss": 2, "puts": 2, "size": None, "ttl": None, "manual": 2, "entries": 0,
    }  # fmt: skip
    got = scrape(reg)
    assert value(got, f"{LOAD}_bucket", le="1.0", cache="legacy") == 0
    assert value(got, f"{LOAD}_bucket", le="2.5", cache="legacy") == 2

    # Two caches sharing a name add up rather than overwrite each other's size.
    a, b = CacheMetrics("shared", reg), CacheMetrics("shared", reg)
    a.set_size(3)
    b.set_size(4)
    a.set_size(1)
    assert value(scrape(reg), ENTRIES, cache="shared") == 5


def test_cache_names_are_bounded() -> None:
    reg = CollectorRegistry()
    first = CacheMetrics("one", reg, max_caches=2)
    CacheMetrics("two", reg)
    third = CacheMetrics("three", reg)
    first.hit()
    third.hit()
    third.set_size(2)
    got = scrape(reg)
    assert value(got, GETS, cache="one", result="hit") == 1
    assert value(got, GETS, cache=OTHER, result="hit") == 1
    assert value(got, ENTRIES, cache=OTHER) == 2
    with pytest.raises(ValueError, match="bounded differently"):
        CacheMetrics("four", reg, allowed_caches=["one"])


def test_threads_hammering_the_cache_give_exact_totals() -> None:
    reg = CollectorRegistry()
    threads, per_thread, hot_keys = 8, 500, 10
    calls = 0
    calls_lock = threading.Lock()

    @instrumented_cache("hot", max_size=10_000, registry=reg)
    def f(key: Any) -> Any:
        nonlocal calls
        with calls_lock:
            calls += 1
        return key

    for k in range(hot_keys):  # warm: every later call on these keys is a hit
        f(k)
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            assert f(n % hot_keys) == n % hot_keys
            assert f((i, n)) == (i, n)  # a key only this thread uses: a miss

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    c = counts(reg, "hot")
    misses = hot_keys + threads * per_thread
    assert c["hit"] == threads * per_thread
    assert c["miss"] == misses == c["puts"] == c["entries"] == calls


def test_size_evictions_under_threads_are_exact() -> None:
    reg = CollectorRegistry()
    threads, per_thread, max_size = 8, 300, 50

    @instrumented_cache("small", max_size=max_size, registry=reg)
    def f(key: Any) -> Any:
        return key

    def work(i: int) -> None:
        for n in range(per_thread):
            f((i, n))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    c = counts(reg, "small")
    assert c["miss"] == c["puts"] == threads * per_thread
    assert c["size"] == threads * per_thread - max_size
    assert c["entries"] == max_size


def test_broken_metrics_leave_the_cache_working(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("metrics backend down")

    for cls, method in [
        (CounterChild, "inc"),
        (GaugeChild, "inc"),
        (GaugeChild, "set"),
        (HistogramChild, "observe"),
    ]:
        monkeypatch.setattr(cls, method, boom)
    calls = 0

    @instrumented_cache("broken", max_size=1, registry=CollectorRegistry())
    def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    assert [f(1), f(1), f(2), f(1)] == [1, 1, 2, 1]
    assert calls == 3
    f.cache.clear()  # type: ignore[attr-defined]


# -- the Redis backend on a real server ---------------------------------------------------------
def redis_db(server: RedisExecutor, db: int) -> redis.Redis:
    """A client on database ``db``, emptied: the session's server outlives each test."""
    client = redis.Redis.from_url(redis_url(server, db=db))
    client.flushdb()
    return client


def miss_and_store_seconds(cache: InstrumentedCache, key: str) -> float:
    started = time.perf_counter()
    cache.get_or_load(key, lambda: {"audio": key})
    return time.perf_counter() - started


def test_redis_store_cost_does_not_grow_with_the_cache(redis_server: RedisExecutor) -> None:
    # Two databases: a SCAN walks the whole database whatever its MATCH, so an empty prefix
    # beside 50,000 keys would not be an empty cache to it.
    empty_db, full_db = redis_db(redis_server, 2), redis_db(redis_server, 3)
    reg = CollectorRegistry()
    empty = InstrumentedCache("empty", backend=RedisBackend(empty_db, registry=reg), registry=reg)
    full_backend = RedisBackend(full_db, registry=reg)
    full = InstrumentedCache("full", backend=full_backend, registry=reg)
    filled = 50_000
    with full_db.pipeline(transaction=False) as pipe:
        for i in range(filled):
            pipe.set(full_backend.key(f"prompt-{i}"), '"x"')
        pipe.execute()
    # Written around the backend, so counted once by the off-request-path rescan.
    assert full_backend.reindex() == filled

    times: dict[str, list[float]] = {"empty": [], "full": []}
    for round_ in range(20):  # alternating slices: a busy neighbour slows both alike
        for name, cache in (("empty", empty), ("full", full))[:: 1 if round_ % 2 else -1]:
            times[name] += [miss_and_store_seconds(cache, f"new-{round_}-{i}") for i in range(20)]
    ratio = statistics.median(times["full"]) / statistics.median(times["empty"])
    assert ratio < 2.0, f"a miss+store at {filled} keys costs {ratio:.1f}x one at 0 keys"

    stored = len(times["full"])
    c = counts(reg, "full")
    assert (c["miss"], c["puts"], c["entries"]) == (stored, stored, filled + stored)
    assert counts(reg, "empty")["entries"] == stored
    assert [name for name, _ in scrape(reg) if name == ERRORS] == []
    for client in (empty_db, full_db):
        client.flushdb()
        client.close()


def test_redis_size_follows_ttl_expiry(redis_server: RedisExecutor) -> None:
    client = redis_db(redis_server, 4)
    reg = CollectorRegistry()
    # Two workers sharing one prefix: one with a TTL, one without.
    short = RedisBackend(client, prefix="tts:", ttl=0.2, registry=reg)
    lasting = RedisBackend(client, prefix="tts:", registry=reg)
    for i in range(200):
        short.set(f"brief-{i}", i)
    for i in range(5):
        lasting.set(f"kept-{i}", i)
    assert short.size() == 205
    # The count drops with Redis's own expiry, no write needed.
    wait_until(lambda: short.size() == 5, timeout=10, message=lambda: f"size {short.size()}")
    assert client.get("tts:brief-0") is None
    assert client.zcard(short.index_key) == 205  # the dead members are still in the index
    lasting.set("kept-5", 5)  # each write drops at most PRUNE_PER_WRITE of them
    assert client.zcard(short.index_key) == 206 - PRUNE_PER_WRITE
    assert lasting.size() == 6
    assert short.clear() == 6
    assert (short.size(), client.zcard(short.index_key)) == (0, 0)
    client.close()


def processed(client: redis.Redis, since: int = 0) -> int:
    """Commands the server has run, since ``since``."""
    return int(client.info("stats")["total_commands_processed"]) - since


def test_redis_size_is_exact_under_racing_writers_and_deleters(
    redis_server: RedisExecutor,
) -> None:
    client = redis_db(redis_server, 5)
    backend = RedisBackend(client, prefix="race:", registry=CollectorRegistry())
    keys = ["k0", "k1"]  # two keys: writers and deleters are always on the same ones

    def race(change: Callable[[str], object], stop: threading.Event) -> None:
        # Every thread runs until the same moment, so the last changes of a key race too.
        while not stop.is_set():
            for key in keys:
                change(key)

    for round_ in range(10):
        stop = threading.Event()
        threads = [
            threading.Thread(target=race, args=(change, stop))
            for change in (lambda k: backend.set(k, 1), backend.delete) * 4
        ]
        since = processed(client)
        for thread in threads:
            thread.start()
        wait_until(lambda s=since: processed(client, s) > 1000, 60, message="1000 changes")
        stop.set()
        for thread in threads:
            thread.join()
        live = sum(1 for _ in client.scan_iter(match="race:*"))
        assert (backend.size(), client.zcard(backend.index_key)) == (live, live), round_
    client.flushdb()
    client.close()


def test_redis_reindex_counts_keys_written_around_the_backend(
    redis_server: RedisExecutor,
) -> None:
    client = redis_db(redis_server, 6)
    backend = RedisBackend(client, prefix="t[1]:", registry=CollectorRegistry())
    assert backend.index_key == "t[1]#index"  # outside the prefix: clear() never removes it
    backend.set("a", 1)
    backend.set("b", 2)
    client.set("t[1]:plain", "1")  # a peer writing with a plain SET
    client.set("t[1]:short", "1", px=60_000)
    client.delete("t[1]:a")  # deleted by hand
    assert backend.size() == 2  # what the index knows
    assert backend.reindex() == 3  # b, plain, short
    assert client.zscore(backend.index_key, "t[1]:plain") == float("inf")
    assert backend.delete("short") is True
    assert backend.delete("short") is False
    assert backend.size() == 2
    assert backend.clear() == 2
    client.close()
