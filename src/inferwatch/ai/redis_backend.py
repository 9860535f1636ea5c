"""A :class:`~inferwatch.ai.CacheBackend` in Redis, shared by every worker and replica.

Values are stored as JSON by default (never pickle: whoever can write to the Redis server
must not be able to run code in the service). A cache must never take the service down, so
a failed read is a miss, reported through ``inferwatch_instrumentation_errors_total``; a
failed write raises :class:`CacheUnavailable`, which :class:`~inferwatch.ai.InstrumentedCache`
reports without counting a put. Give the client short socket timeouts: the calls block.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Hashable
from typing import Any

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai.cache import MISSING, EvictionListener
from inferwatch.exporters.redact import redact_text
from inferwatch.metrics.shared import report_error

log = logging.getLogger("inferwatch.ai")
COMPONENT = "ai.cache.redis"
_GLOB = re.compile(r"([*?\[\]\\])")


class CacheUnavailable(Exception):
    """Redis refused or failed a write; the message carries no credentials."""


class RedisBackend:
    """Values under ``prefix`` in the Redis database of ``client`` (a sync ``redis.Redis``).

    ``ttl`` (seconds) expires entries server-side (``SET ... EX``/``PX``); those expiries are
    invisible to the client, so ``on_evict`` is never called for them. ``size()`` counts the
    keys under ``prefix`` with ``SCAN`` (None when ``count_keys`` is off or Redis fails):
    fine for a cache of thousands of keys, too slow for millions.
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
        self.ttl = ttl
        self.count_keys = count_keys
        self.on_evict: EvictionListener | None = None
        self._registry = registry
        self._dumps = dumps
        self._loads = loads
        self._pattern = _GLOB.sub(r"\\\1", prefix) + "*"

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
        expiry: dict[str, int] = {}
        if self.ttl is not None:
            # EX takes whole seconds; PX keeps a fractional TTL exact.
            ttl = self.ttl
            expiry = {"ex": int(ttl)} if float(ttl).is_integer() else {"px": round(ttl * 1000)}
        try:
            self.client.set(self.key(key), self._dumps(value), **expiry)
        except Exception as exc:
            raise CacheUnavailable(self._describe(exc)) from None

    def delete(self, key: Hashable) -> bool:
        try:
            return bool(self.client.delete(self.key(key)))
        except Exception as exc:
            self._report(exc)
            return False

    def clear(self) -> int:
        """Delete every key under the prefix; returns how many there were."""
        removed = 0
        try:
            batch: list[Any] = []
            for name in self.client.scan_iter(match=self._pattern, count=500):
                batch.append(name)
                if len(batch) == 500:
                    removed += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                removed += int(self.client.unlink(*batch))
        except Exception as exc:
            self._report(exc)
        return removed

    def size(self) -> int | None:
        if not self.count_keys:
            return None
        try:
            return sum(1 for _ in self.client.scan_iter(match=self._pattern, count=500))
        except Exception as exc:
            self._report(exc)
            return None

    def _describe(self, exc: BaseException) -> str:
        secrets = []
        kwargs = getattr(getattr(self.client, "connection_pool", None), "connection_kwargs", {})
        if kwargs.get("password"):
            secrets.append(str(kwargs["password"]))
        return f"{type(exc).__name__}: {redact_text(str(exc), secrets)}"

    def _report(self, exc: BaseException) -> None:
        report_error(self._registry, COMPONENT, CacheUnavailable(self._describe(exc)), log)
