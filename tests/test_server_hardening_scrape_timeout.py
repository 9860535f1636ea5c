"""A hung backend fails only its own collector, inside Prometheus's scrape timeout.

A real Prometheus scrapes ``inferwatch exporter`` every 2 s with a 2 s timeout, while the
exporter's collector timeout is 5 s and its PostgreSQL (the session's real server) is frozen
with SIGSTOP: it accepts connections and never answers. The exporter reads the timeout
Prometheus sends in ``X-Prometheus-Scrape-Timeout-Seconds`` and gives up on the postgres
collector in time, so the target stays up and the host collector's series keep coming.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from pytest_postgresql.executors import PostgreSQLExecutor

from inferwatch.stack.prometheus_api import Prometheus
from tests.support import free_port, serve, wait_until
from tests.support.backends import postgres_url
from tests.support.server import LOOPBACK, inferwatch_command

PROMETHEUS = shutil.which("prometheus")
JOB = "exporter"
SCRAPES = 3  # scrapes with the backend frozen that must all keep the target up

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed")


@contextlib.contextmanager
def frozen(server: PostgreSQLExecutor, url: str) -> Iterator[None]:
    """SIGSTOP the postmaster and every backend for the block; SIGCONT and wait for queries
    to be answered again afterwards."""
    pid = int((Path(server.datadir) / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    processes = [postmaster, *postmaster.children(recursive=True)]
    try:
        for process in processes:
            process.send_signal(signal.SIGSTOP)
        yield
    finally:
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)
    wait_until(lambda: _answers(url), 30.0, interval=0.05, message="PostgreSQL to answer again")


def _answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


class Samples:
    def __init__(self, url: str) -> None:
        self.prometheus = Prometheus(url, timeout=10)

    def samples(self, selector: str, since: float) -> list[tuple[float, float]]:
        """The raw samples of the one series ``selector`` names scraped after ``since``
        (Unix time), oldest first."""
        result = self.prometheus.query(f"{selector}[5m]")
        assert len(result) <= 1, f"{selector} names {len(result)} series"
        values = result[0]["values"] if result else []
        return [(float(t), float(v)) for t, v in values if float(t) > since]


def test_a_frozen_backend_fails_its_collector_and_the_target_stays_up(
    tmp_path: Path, postgres_server: PostgreSQLExecutor
) -> None:
    url = postgres_url(postgres_server)
    secret = tmp_path / "postgres-url"
    secret.write_text(url + "\n")
    secret.chmod(0o600)
    exporter_port, prometheus_port = free_port(), free_port()
    exporter = [
        *inferwatch_command(), "exporter", "--host", LOOPBACK, "--port", str(exporter_port),
        "--collectors", "host,postgres", "--postgres-url-file", str(secret),
        "--collector-timeout", "5", "--cache-ttl", "0",
    ]  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 2s, scrape_timeout: 2s}\n"
        f"scrape_configs: [{{job_name: {JOB}, "
        f"static_configs: [{{targets: ['{LOOPBACK}:{exporter_port}']}}]}}]\n"
    )
    prometheus = [
        str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={LOOPBACK}:{prometheus_port}",
    ]  # fmt: skip
    with (
        serve(exporter, port=exporter_port, log_path=tmp_path / "exp.log", ready_path="/"),
        serve(
            prometheus,
            port=prometheus_port,
            log_path=tmp_path / "prometheus.log",
            ready_path="/-/ready",
        ) as server,
    ):
        prom = Samples(server.url)
        postgres_ok = f'inferwatch_exporter_collector_success{{job="{JOB}",collector="postgres"}}'
        wait_until(
            lambda: [v for _, v in prom.samples(postgres_ok, 0)][-1:] == [1.0],
            60.0,
            interval=0.2,
            message="a scrape with the postgres collector healthy",
        )
        with frozen(postgres_server, url):
            since = time.time()  # scrapes are stamped with their start
            failed = wait_until(
                lambda: len(s := prom.samples(postgres_ok, since)) >= SCRAPES and s,
                60.0,
                interval=0.2,
                message=f"{SCRAPES} scrapes with PostgreSQL frozen",
            )
            up = prom.samples(f'up{{job="{JOB}"}}', since)
            host_ok = prom.samples(
                f'inferwatch_exporter_collector_success{{job="{JOB}",collector="host"}}', since
            )
            memory = prom.samples(f'inferwatch_host_memory_total_bytes{{job="{JOB}"}}', since)
        scraped = [t for t, _ in failed]
        assert [v for _, v in failed] == [0.0] * len(failed)
        assert [v for t, v in up if t in scraped] == [1.0] * len(failed)
        assert [v for t, v in host_ok if t in scraped] == [1.0] * len(failed)
        assert [t for t, _ in memory if t in scraped] == scraped
