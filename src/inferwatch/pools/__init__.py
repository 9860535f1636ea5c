"""Connection pools and database clients: SQLAlchemy engines and redis-py pools, with the
OpenTelemetry ``db.client.connection.*`` and ``db.client.operation.duration`` metrics.

The adapters import SQLAlchemy or redis-py only when used, so neither is required to import
this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inferwatch.pools.instruments import PoolMetrics, pool_metrics

if TYPE_CHECKING:
    from inferwatch.pools.redis import RedisPool
    from inferwatch.pools.sqlalchemy import SqlAlchemyPool


def instrument_sqlalchemy(engine: Any, pool_name: str = "primary", **kwargs: Any) -> SqlAlchemyPool:
    """See :func:`inferwatch.pools.sqlalchemy.instrument_sqlalchemy`."""
    from inferwatch.pools.sqlalchemy import instrument_sqlalchemy as instrument

    return instrument(engine, pool_name, **kwargs)


def instrument_redis(client_or_pool: Any, pool_name: str = "cache", **kwargs: Any) -> RedisPool:
    """See :func:`inferwatch.pools.redis.instrument_redis`."""
    from inferwatch.pools.redis import instrument_redis as instrument

    return instrument(client_or_pool, pool_name, **kwargs)


__all__ = ["PoolMetrics", "instrument_redis", "instrument_sqlalchemy", "pool_metrics"]
