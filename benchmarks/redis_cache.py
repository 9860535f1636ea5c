"""Cost of a miss of the Redis-backed cache (look-up, store, size update) by how many keys the
cache already holds, next to what one ``SCAN`` count of the prefix (how ``size()`` used to
work, on every store) costs at the same sizes.

A ``redis-server`` on a free loopback port, one database per size, filled with a pipeline
and counted once with ``RedisBackend.reindex()`` (its time is reported too: it is the one
call that still scans). Each round takes a batch of ``--calls`` misses on every size in turn,
the order rotated every round; a miss is ``InstrumentedCache.get_or_load`` of a new key with a
trivial loader, timed in wall-clock time (the time is mostly the round trips to the server).
The keys a batch stored are deleted after it, untimed, so every size stays what it says.

    .venv/bin/python benchmarks/redis_cache.py [--rounds N] [--calls N] [--sizes 0,10000,50000]
        [--markdown]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import redis
from exporter_scrape import Redis, p90, quartiles
from prometheus_client import CollectorRegistry

from inferwatch.ai import InstrumentedCache, RedisBackend

DEFAULT_ROUNDS = 15
DEFAULT_CALLS = 200
DEFAULT_SIZES = (0, 10_000, 50_000)
SCANS_PER_ROUND = 1  # a scan of 50,000 keys takes a quarter of a second


@dataclass
class Level:
    keys: int
    backend: RedisBackend
    cache: InstrumentedCache
    reindex_seconds: float = 0.0
    misses: list[float] = field(default_factory=list)  # seconds per miss
    scans: list[float] = field(default_factory=list)  # seconds per SCAN count


def fill(server: Redis, db: int, keys: int) -> Level:
    client = redis.Redis.from_url(server.url.rsplit("/", 1)[0] + f"/{db}")
    client.flushdb()
    registry = CollectorRegistry()  # the metrics are updated as in a service
    backend = RedisBackend(client, registry=registry)
    with client.pipeline(transaction=False) as pipe:
        for i in range(keys):
            pipe.set(backend.key(f"prompt-{i}"), '"conditioning"')
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
    started = time.perf_counter()
    counted = backend.reindex()
    cache = InstrumentedCache(f"size-{keys}", backend=backend, registry=registry)
    level = Level(keys, backend, cache)
    level.reindex_seconds = time.perf_counter() - started
    if counted != keys:
        raise RuntimeError(f"database {db}: counted {counted} keys, filled {keys}")
    return level


def misses(level: Level, calls: int, round_: int) -> None:
    names = [f"new-{round_}-{i}" for i in range(calls)]
    for name in names:
        started = time.perf_counter()
        level.cache.get_or_load(name, lambda: "audio")
        level.misses.append(time.perf_counter() - started)
    for name in names:  # untimed: keep the cache at its size
        level.backend.delete(name)


def scan_count(level: Level) -> None:
    client, pattern = level.backend.client, level.backend.prefix + "*"
    started = time.perf_counter()
    sum(1 for _ in client.scan_iter(match=pattern, count=500))
    level.scans.append(time.perf_counter() - started)


def run(levels: Sequence[Level], rounds: int, calls: int) -> None:
    for level in levels:  # warm-up: connections made, scripts cached by the server
        misses(level, 20, -1)
        level.misses.clear()
    for round_ in range(rounds):
        shift = round_ % len(levels)
        for level in [*levels[shift:], *levels[:shift]]:
            misses(level, calls, round_)
            for _ in range(SCANS_PER_ROUND):
                scan_count(level)
        print(f"round {round_ + 1}/{rounds}", file=sys.stderr)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f}"


def markdown(levels: Sequence[Level], args: argparse.Namespace) -> str:
    base = statistics.median(levels[0].misses)
    lines = [
        f"`.venv/bin/python benchmarks/redis_cache.py --rounds {args.rounds} "
        f"--calls {args.calls} --sizes {','.join(str(lv.keys) for lv in levels)}`",
        "",
        "| keys in the cache | miss + store median µs | p90 µs | IQR µs | vs empty "
        "| one SCAN count, median ms (the old `size()`, once per store) | `reindex()` ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        q1, med, q3 = quartiles(lv.misses)
        lines.append(
            f"| {lv.keys:,} | {us(med)} | {us(p90(lv.misses))} | {us(q1)} .. {us(q3)} | "
            f"{med / base:.2f}x | {statistics.median(lv.scans) * 1e3:.1f} | "
            f"{lv.reindex_seconds * 1e3:.0f} |"
        )
    info = levels[0].backend.client.info("server")
    lines += [
        "",
        f"{len(levels[0].misses)} misses per size. A miss is one `GET`, one `EVAL` that writes "
        "the key and its index entry, one `EVAL` that reads the size. Redis "
        f"{info['redis_version']}, redis-py {metadata.version('redis')}, Python "
        f"{platform.python_version()}, {platform.machine()}.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="misses per batch")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(v) for v in text.split(",")],
        default=list(DEFAULT_SIZES),
        help="comma-separated cache sizes, the first the reference (default 0,10000,50000)",
    )
    parser.add_argument("--markdown", action="store_true", help="only the table on stdout")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        server = Redis(Path(directory))
        server.start()
        try:
            levels = [fill(server, db, keys) for db, keys in enumerate(args.sizes)]
            run(levels, args.rounds, args.calls)
            print(markdown(levels, args))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
