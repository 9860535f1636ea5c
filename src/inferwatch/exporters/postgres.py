"""PostgreSQL connection counts by state, against ``max_connections``.

Counts client backends in ``pg_stat_activity`` (the ones ``max_connections`` limits) by
state. States are a fixed set: every known state is always reported (0 when none), and
anything new is counted as ``_OTHER``, so the series are bounded and alert rules can rely on
them existing. One autocommit connection is kept across scrapes; on any error it is dropped
and the collector yields only ``inferwatch_postgres_up 0``.
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
from inferwatch.metrics.labels import OTHER

# pg_stat_activity.state values, as label values.
STATES = {
    "active": "active",
    "idle": "idle",
    "idle in transaction": "idle_in_transaction",
    "idle in transaction (aborted)": "idle_in_transaction_aborted",
    "fastpath function call": "fastpath_function_call",
    "disabled": "disabled",
}

_QUERY = """
SELECT state, count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' GROUP BY state
"""


UP = Descriptor(
    "inferwatch_postgres_up", "gauge", "1 when the PostgreSQL server answered, 0 otherwise."
)
CONNECTIONS = Descriptor(
    "inferwatch_postgres_connections",
    "gauge",
    "Client connections by state (pg_stat_activity; unknown states are _OTHER).",
    ("state",),
)
MAX_CONNECTIONS = Descriptor(
    "inferwatch_postgres_max_connections", "gauge", "The max_connections setting."
)
METRICS = (UP, CONNECTIONS, MAX_CONNECTIONS)


def up_family(value: float) -> Metric:
    return UP.family(value)


class PostgresCollector:
    name = "postgres"

    def __init__(self, url: str, *, timeout: float, secrets: Sequence[str] = ()) -> None:
        self._url = url
        self._timeout = timeout
        self._secrets = tuple(secrets)
        self._conn: Any = None

    def __repr__(self) -> str:  # never the URL
        return "PostgresCollector()"

    def _connect(self) -> Any:
        import psycopg

        millis = int(self._timeout * 1000)
        return psycopg.connect(
            self._url,
            autocommit=True,
            # libpq rounds connect_timeout up to at least 2 s
            connect_timeout=max(1, round(self._timeout)),
            application_name="inferwatch-exporter",
            options=f"-c statement_timeout={millis} -c lock_timeout={millis}",
        )

    def collect(self) -> Iterator[Metric]:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            with self._conn.cursor() as cursor:
                cursor.execute(_QUERY)
                rows = cursor.fetchall()
                cursor.execute("SELECT current_setting('max_connections')::int")
                row = cursor.fetchone()
            max_connections = row[0] if row else 0
        except Exception as exc:
            self.close()
            yield up_family(0)
            message = redact_text(f"{type(exc).__name__}: {exc}", self._secrets)
            raise CollectorError(f"postgres: {message}") from None
        yield up_family(1)
        counts = dict.fromkeys([*STATES.values(), OTHER], 0)
        for state, count in rows:
            if state is None:  # a backend whose state is not visible to this user
                continue
            label = STATES.get(state, OTHER)
            counts[label] += count
        family = CONNECTIONS.family()
        for label, count in counts.items():
            family.add_metric([label], count)
        yield family
        yield MAX_CONNECTIONS.family(max_connections)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # closing a broken connection must not fail the scrape
            with contextlib.suppress(Exception):
                conn.close()


def build(config: ExporterConfig) -> PostgresCollector:
    if not config.postgres_url:
        raise ValueError("the postgres collector needs postgres_url")
    timeout = max(0.5, min(3.0, config.collector_timeout / 2))
    return PostgresCollector(config.postgres_url, timeout=timeout, secrets=config.secrets)
