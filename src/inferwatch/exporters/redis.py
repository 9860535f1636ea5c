"""Redis server metrics from ``INFO``: keyspace hits and misses, clients, memory, evictions.

One short-timeout client is kept across scrapes (the runner's cache keeps scrapes from
reaching the server more than once per TTL). When Redis is down the collector yields only
``inferwatch_redis_up 0`` and fails at once: no retries, a connect timeout well under the
collector timeout, and the error text scrubbed of credentials before the runner logs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric

from inferwatch.exporters.collector import CollectorError
from inferwatch.exporters.config import ExporterConfig
from inferwatch.exporters.descriptors import Descriptor
from inferwatch.exporters.redact import redact_text

UP = Descriptor(
    "inferwatch_redis_up", "gauge", "1 when the Redis server answered INFO, 0 otherwise."
)
# INFO field -> the metric it becomes; a field the server does not report is left out.
FIELDS: tuple[tuple[str, Descriptor], ...] = (
    ("keyspace_hits", Descriptor("inferwatch_redis_keyspace_hits_total", "counter",
     "Successful key lookups since the server started (or CONFIG RESETSTAT).")),
    ("keyspace_misses", Descriptor("inferwatch_redis_keyspace_misses_total", "counter",
     "Failed key lookups since the server started (or CONFIG RESETSTAT).")),
    ("connected_clients", Descriptor("inferwatch_redis_connected_clients", "gauge",
     "Client connections, replicas excluded.")),
    ("blocked_clients", Descriptor("inferwatch_redis_blocked_clients", "gauge",
     "Clients waiting in a blocking call (BLPOP, XREAD, WAIT, ...).")),
    ("used_memory", Descriptor("inferwatch_redis_memory_used_bytes", "gauge",
     "Memory Redis has allocated.")),
    ("maxmemory", Descriptor("inferwatch_redis_memory_max_bytes", "gauge",
     "The maxmemory setting (0: no limit).")),
    ("evicted_keys", Descriptor("inferwatch_redis_evicted_keys_total", "counter",
     "Keys evicted because of the maxmemory limit.")),
    ("rejected_connections", Descriptor("inferwatch_redis_rejected_connections_total", "counter",
     "Connections rejected because of the maxclients limit.")),
    ("total_commands_processed", Descriptor("inferwatch_redis_commands_processed_total",
     "counter", "Commands processed by the server.")),
)  # fmt: skip
METRICS = (UP, *(descriptor for _, descriptor in FIELDS))


def up_family(value: float) -> Metric:
    return UP.family(value)


class RedisCollector:
    name = "redis"

    def __init__(self, url: str, *, timeout: float, secrets: Sequence[str] = ()) -> None:
        self._url = url
        self._timeout = timeout
        self._secrets = tuple(secrets)
        self._client: Any = None

    def __repr__(self) -> str:  # never the URL
        return "RedisCollector()"

    def _connect(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),  # fail fast: the next scrape is the retry
            health_check_interval=0,
            max_connections=2,
            client_name="inferwatch-exporter",
        )

    def collect(self) -> Iterator[Metric]:
        try:
            if self._client is None:
                self._client = self._connect()
            info = self._client.info()
        except Exception as exc:
            self.close()  # start from a fresh pool next time
            yield up_family(0)
            message = redact_text(f"{type(exc).__name__}: {exc}", self._secrets)
            raise CollectorError(f"redis: {message}") from None
        yield up_family(1)
        for field, descriptor in FIELDS:
            value = info.get(field)
            if isinstance(value, (int, float)):
                yield descriptor.family(float(value))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # closing a broken connection must not fail the scrape
            with contextlib.suppress(Exception):
                client.close()


def build(config: ExporterConfig) -> RedisCollector:
    if not config.redis_url:
        raise ValueError("the redis collector needs redis_url")
    # Well inside the collector timeout, so a dead server is a quick failure, not a timeout.
    timeout = max(0.1, min(2.0, config.collector_timeout / 2))
    return RedisCollector(config.redis_url, timeout=timeout, secrets=config.secrets)
