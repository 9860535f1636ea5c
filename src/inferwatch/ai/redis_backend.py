"""A :class:`~inferwatch.ai.CacheBackend` in Redis, shared by every worker and replica.

Values are stored as JSON by default (never pickle: whoever can write to the Redis server
must not be able to run code in the service). A cache must never take the service down, so
a failed read is a miss, reported through ``inferwatch_instrumentation_errors_total``; a
failed write raises :class:`CacheUnavailable`, which :class:`~inferwatch.ai.InstrumentedCache`
reports without counting a put. Give the client short socket timeouts: the calls block.

How the size is kept
--------------------
``size()`` runs after every store, on the request path, so it must not grow with the cache
(a ``SCAN`` of the prefix took 254 ms at 50,000 keys). The backend keeps an index instead: a
sorted set (:attr:`RedisBackend.index_key`) with one member per key, scored with the key's
expiry time in milliseconds on the Redis server's clock (``+inf`` without a TTL).

- Every write, delete and clear changes the key and the index in one Lua script, so
  concurrent writers in any number of processes never see them disagree, and a process
  that dies mid-call leaves both or neither.
- TTL expiry: Redis expires keys silently, but the member's score is the key's expiry, so
  ``size()`` (``ZCOUNT`` of the scores not yet past, on the server's clock) stops counting
  a key in the millisecond Redis stops returning it. Each write also drops at most
  :data:`PRUNE_PER_WRITE` members already past, so the index does not grow with dead keys
  while no write ever pays for more than that.
- Writes that bypass this backend (a plain ``SET`` under the prefix, keys deleted by hand or
  evicted by a ``maxmemory`` policy) are not seen: run :meth:`RedisBackend.reindex` (a
  ``SCAN``, off the request path) to count them again. Under ``allkeys-*`` eviction
  policies Redis may evict the index itself; prefer ``volatile-*`` (the index has no TTL)
  or a TTL on the cache.

Every call is O(log n). The scripts need Redis 5 or later (``TIME`` inside a script with
effects replication). For Redis Cluster, put a hash tag in the prefix (``{cache}:``): the
index then lives in the slot of the keys.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai.cache import MISSING, EvictionListener
from inferwatch.exporters.redact import redact_text
from inferwatch.metrics.shared import report_error

log = logging.getLogger("inferwatch.ai")
COMPONENT = "ai.cache.redis"
_GLOB = re.compile(r"([*?\[\]\\])")
PRUNE_PER_WRITE = 64  # expired index members each write removes, at most
_BATCH = 500  # keys per SCAN page and per script call in clear() and reindex()

# The server's clock in milliseconds: every score and every "now" comes from the one clock
# that also expires the keys, whatever the clocks of the workers say.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS: key, index. ARGV: value, TTL in milliseconds ('' for none).
_STORE = (
    _NOW
    + """
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], 'inf', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now, 'LIMIT', 0, ARGV[3])
if #dead > 0 then redis.call('ZREM', KEYS[2], unpack(dead)) end
"""
)
# KEYS: index. A key lives while now <= its expiry (Redis expires it once now > expiry).
_SIZE = _NOW + "return redis.call('ZCOUNT', KEYS[1], now, '+inf')"
# KEYS: index, then the keys to delete; returns how many of them existed.
_DELETE = """
local removed = redis.call('UNLINK', unpack(KEYS, 2))
redis.call('ZREM', KEYS[1], unpack(KEYS, 2))
return removed
"""
# KEYS: index, then keys whose membership is to match what Redis holds now.
_REINDEX = (
    _NOW
    + """
for i = 2, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl == -2 then redis.call('ZREM', KEYS[1], KEYS[i])
  elseif ttl == -1 then redis.call('ZADD', KEYS[1], 'inf', KEYS[i])
  else redis.call('ZADD', KEYS[1], now + ttl, KEYS[i]) end
end
"""
)


class CacheUnavailable(Exception):
    """Redis refused or failed a write; the message carries no credentials."""


def _index_key_for(prefix: str) -> str:
    """The index's name: ``prefix`` with its last character replaced by ``#`` (``!`` when
    that already is ``#``), so that no cache key, which always starts with ``prefix``, can
    be it, and ``clear()`` never matches it: ``inferwatch:cache:`` -> ``inferwatch:cache#index``.
    """
    return f"{prefix[:-1]}{'!' if prefix.endswith('#') else '#'}index"


class RedisBackend:
    """Values under ``prefix`` in the Redis database of ``client`` (a sync ``redis.Redis``).

    ``ttl`` (seconds, millisecond resolution) expires entries server-side (``SET ... PX``);
    those expiries are invisible to the client, so ``on_evict`` is never called for them.
    ``size()`` is the exact number of live keys written through this backend, kept in an
    index as the module docstring explains (None when ``count_keys`` is off or Redis fails;
    ``count_keys=False`` also skips the index, for a plain ``SET`` per write).
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "inferwatch:cache:",
        ttl: float | None = None,
        count_keys: bool = True,
        registry: CollectorRegistry | None = REGISTRY,
        dumps: Callable[[Any], str | bytes] = json.dumps,
        loads: Callable[[str | bytes], Any] = json.loads,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty: clear() deletes every key under it")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be positive seconds or None, got {ttl!r}")
        self.client = client
        self.prefix = prefix
        self.index_key = _index_key_for(prefix)
        self.ttl = ttl
        self.count_keys = count_keys
        self.shared = True  # every worker and replica sees the same keys
        self.on_evict: EvictionListener | None = None
        self._registry = registry
        self._dumps = dumps
        self._loads = loads
        self._pattern = _GLOB.sub(r"\\\1", prefix) + "*"
        # PX takes whole milliseconds, at least one.
        self._ttl_ms = "" if ttl is None else str(max(1, round(ttl * 1000)))

    def key(self, key: Hashable) -> str:
        """The Redis key for a cache key: strings as they are, anything else by ``repr``
        (stable for strings, numbers and tuples of them)."""
        return self.prefix + (key if isinstance(key, str) else repr(key))

    def get(self, key: Hashable) -> Any:
        try:
            raw = self.client.get(self.key(key))
            return MISSING if raw is None else self._loads(raw)
        except Exception as exc:  # Redis down, timeout, or a value we cannot decode
            self._report(exc)
            return MISSING

    def set(self, key: Hashable, value: Any) -> None:
        try:
            name, raw = self.key(key), self._dumps(value)
            if self.count_keys:
                self._eval(_STORE, [name, self.index_key], raw, self._ttl_ms, PRUNE_PER_WRITE)
            elif self.ttl is None:
                self.client.set(name, raw)
            else:
                self.client.set(name, raw, px=int(self._ttl_ms))
        except Exception as exc:
            raise CacheUnavailable(self._describe(exc)) from None

    def delete(self, key: Hashable) -> bool:
        try:
            return self._remove([self.key(key)]) == 1
        except Exception as exc:
            self._report(exc)
            return False

    def clear(self) -> int:
        """Delete every key under the prefix, written through this backend or not, and empty
        the index; returns how many keys there were. A ``SCAN`` of the prefix and of the
        index: slow on a large cache, and never called on the request path. Keys written
        while it runs may stay (counted)."""
        removed = 0
        try:
            for batch in self._pages(self._everything()):
                removed += self._remove(batch)
        except Exception as exc:
            self._report(exc)
        return removed

    def size(self) -> int | None:
        if not self.count_keys:
            return None
        try:
            return int(self._eval(_SIZE, [self.index_key]))
        except Exception as exc:
            self._report(exc)
            return None

    def reindex(self) -> int | None:
        """Make the index match the keys Redis holds under the prefix now, and return the
        size: counts keys written around this backend, forgets keys deleted or evicted
        around it. A ``SCAN`` of the prefix and of the index (what ``size()`` used to cost on
        every store): for a maintenance job or an operator, never the request path."""
        if not self.count_keys:
            return None
        try:
            for batch in self._pages(self._everything()):
                self._eval(_REINDEX, [self.index_key, *batch])
        except Exception as exc:
            self._report(exc)
            return None
        return self.size()

    def _everything(self) -> Iterator[Any]:
        """Every key under the prefix, then every member of the index (which may name keys
        already gone); a key may come twice."""
        yield from self.client.scan_iter(match=self._pattern, count=_BATCH)
        if self.count_keys:
            for member, _ in self.client.zscan_iter(self.index_key, count=_BATCH):
                yield member

    def _remove(self, names: list[Any]) -> int:
        if not self.count_keys:
            return int(self.client.unlink(*names))
        return int(self._eval(_DELETE, [self.index_key, *names]))

    def _eval(self, script: str, keys: list[Any], *args: Any) -> Any:
        # EVAL rather than EVALSHA: no NOSCRIPT round trip after a restart or a failover,
        # and the same one command per call whatever the server has cached.
        return self.client.eval(script, len(keys), *keys, *args)

    @staticmethod
    def _pages(names: Iterable[Any]) -> Iterable[list[Any]]:
        batch: list[Any] = []
        for name in names:
            batch.append(name)
            if len(batch) == _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _describe(self, exc: BaseException) -> str:
        secrets = []
        kwargs = getattr(getattr(self.client, "connection_pool", None), "connection_kwargs", {})
        if kwargs.get("password"):
            secrets.append(str(kwargs["password"]))
        return f"{type(exc).__name__}: {redact_text(str(exc), secrets)}"

    def _report(self, exc: BaseException) -> None:
        report_error(self._registry, COMPONENT, CacheUnavailable(self._describe(exc)), log)
