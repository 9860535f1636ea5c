"""The host collector on fixture ``/proc`` trees (tests/fixtures/host), output compared with
the exposition text expected of it, byte for byte, as node_exporter tests its collectors.

The fixture is two snapshots of one host 60 s apart: ``first`` is the first scrape (no CPU
usage and no memory growth yet: both need a previous scrape), ``second`` the next one.
Between them the CPUs spent 2000 ticks, 1500 of them idle (usage 0.25), and the watched
service (pid 1000, its worker 1001 and that worker's child 1002; pid 2000 is not theirs)
grew by 15 resident pages: 61440 bytes in 60 s, a slope of 1024 bytes/s. Partitions, loop
devices, ``lo``, veth pairs and Docker bridges are left out; ``max_devices=3`` drops the
last interface by name (``wlp2s0``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from inferwatch.exporters.host import HostCollector
from tests.support.procfs import ProcfsSource

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "host"


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


def exposition(families: Iterable[Metric]) -> str:
    """The text format of ``families`` alone, as Prometheus would scrape it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry).decode()


def expected(name: str) -> str:
    return (FIXTURES / f"{name}.prom").read_text(encoding="utf-8")


@pytest.fixture
def collector() -> tuple[HostCollector, ProcfsSource]:
    source = ProcfsSource(FIXTURES / "first")
    times = iter([1000.0, 1060.0])  # the scrapes' monotonic clock: 60 s apart
    host = HostCollector(pids=[1000], max_devices=3, clock=lambda: next(times), source=source)
    return host, source


def test_first_scrape_matches_the_fixture(collector: tuple[HostCollector, ProcfsSource]) -> None:
    host, _ = collector
    assert exposition(host.collect()) == expected("first")


def test_next_scrape_adds_usage_and_growth(
    collector: tuple[HostCollector, ProcfsSource],
) -> None:
    host, source = collector
    exposition(host.collect())
    source.root = FIXTURES / "second"
    assert exposition(host.collect()) == expected("second")


def test_a_watched_pid_that_is_gone_has_no_process_series() -> None:
    host = HostCollector(pids=[4242], source=ProcfsSource(FIXTURES / "first"))
    text = exposition(host.collect())
    assert "inferwatch_process_" not in text
    assert "inferwatch_host_memory_total_bytes 1.6777216e+10\n" in text
