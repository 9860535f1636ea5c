"""Each exporter collector emits exactly what it declares: every family it yields is one of
its ``METRICS`` (same name, type, help and label names), and every declared one is yielded
where its backend gives it everything (real Redis and PostgreSQL, the simulated NVML in
tests/fakes, the fixture /proc trees in tests/fixtures/host). The catalogue and the
dashboards' tests read the declarations, so this is what keeps them true of a scrape."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_redis.executor import RedisExecutor

from inferwatch.exporters import collector as runner_module
from inferwatch.exporters import gpu, host, postgres, redis
from inferwatch.exporters.collector import Collector, CollectorError, CollectorRunner
from inferwatch.exporters.config import COLLECTOR_MODULES
from inferwatch.exporters.descriptors import Descriptor
from tests.fakes.fake_nvml import GIB, FakeGpu, FakeNvml
from tests.support.backends import postgres_url, redis_url
from tests.support.procfs import ProcfsSource

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "host"
# name -> (type, help, label names)
Shape = dict[str, tuple[str, str, tuple[str, ...]]]


def declared(descriptors: Sequence[Descriptor]) -> Shape:
    shape = {d.name: (d.type, d.help, d.labels) for d in descriptors}
    assert len(shape) == len(descriptors), "a name declared twice"
    return shape


def emitted(families: Iterable[Metric]) -> Shape:
    """What the families show a scrape: exposed names, and the label names of every sample
    (one family whose samples disagree on them fails here)."""
    shape: Shape = {}
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {tuple(sample.labels) for sample in family.samples}
        assert len(labels) == 1, f"{name}: samples with different label names {labels}"
        assert name not in shape, f"{name} emitted twice"
        shape[name] = (family.type, family.documentation, labels.pop())
    return shape


def collect(collector: Collector, *, expect_error: bool = False) -> list[Metric]:
    """The families a collector yields, up to the error a failed collection raises."""
    families: list[Metric] = []
    try:
        for family in collector.collect():
            families.append(family)
    except CollectorError:
        assert expect_error, "the collection failed"
        return families
    assert not expect_error, "the collection did not fail"
    return families


def test_every_collector_module_declares_its_metrics() -> None:
    modules = {"host": host, "gpu": gpu, "redis": redis, "postgres": postgres}
    assert {name: module.__name__ for name, module in modules.items()} == COLLECTOR_MODULES
    names = [d.name for m in (runner_module, *modules.values()) for d in m.METRICS]
    assert len(names) == len(set(names)), "two collectors declare one name"
    assert all(name.startswith("inferwatch_") for name in names)


def test_the_runner_adds_what_it_declares() -> None:
    class Quiet:
        name = "quiet"

        def collect(self) -> list[Metric]:
            return []

    families = list(CollectorRunner([Quiet()]).collect())
    assert emitted(families) == declared(runner_module.METRICS)


def test_host_collector_on_the_fixture_emits_every_declared_metric() -> None:
    source = ProcfsSource(FIXTURES / "first")
    times = iter([0.0, 60.0])
    collector = host.HostCollector(pids=[1000], clock=lambda: next(times), source=source)
    first = emitted(collect(collector))
    source.root = FIXTURES / "second"
    second = emitted(collect(collector))
    assert second == declared(host.METRICS)
    # the first scrape has neither usage nor growth: both need a previous one
    later = {"inferwatch_host_cpu_usage_ratio", host.PROCESS_GROWTH.name}
    assert set(second) - set(first) == later


def test_host_collector_on_this_host_emits_only_declared_metrics() -> None:
    collector = host.HostCollector(growth_min_span=0.001)
    shape = declared(host.METRICS)
    for _ in range(2):
        got = emitted(collect(collector))
        assert {name: shape[name] for name in got} == got
    # what this host has for certain; its disks and interfaces depend on the machine
    assert {"inferwatch_host_cpu_seconds_total", "inferwatch_process_watched"} <= set(got)


def test_growth_help_names_the_configured_window() -> None:
    times = iter([0.0, 30.0])
    source = ProcfsSource(FIXTURES / "first")
    collector = host.HostCollector(
        pids=[1000],
        growth_window=60.0,
        growth_min_span=30.0,
        clock=lambda: next(times),
        source=source,
    )
    collect(collector)
    families = {f.name: f for f in collect(collector)}
    growth = families[host.PROCESS_GROWTH.name]
    assert growth.documentation == host.GROWTH_HELP.format(window="60")
    assert host.PROCESS_GROWTH.help == host.GROWTH_HELP.format(window="600")


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    gpus = [FakeGpu("GPU-6f0e3a52-6c4b-1b39-3c3f-6a1a7a9b1f01", processes=[(os.getpid(), GIB)])]
    return FakeNvml(gpus).install(monkeypatch)


def test_gpu_collector_emits_every_declared_metric(fake_nvml: FakeNvml) -> None:
    collector = gpu.GpuCollector(pids=[os.getpid()])
    try:
        assert emitted(collect(collector)) == declared(gpu.METRICS)
    finally:
        collector.close()


def test_gpu_collector_without_nvml_emits_nothing(fake_nvml: FakeNvml) -> None:
    fake_nvml.remove_library()
    assert collect(gpu.GpuCollector(), expect_error=True) == []


def test_redis_collector_emits_every_declared_metric(redis_server: RedisExecutor) -> None:
    collector = redis.RedisCollector(redis_url(redis_server), timeout=2.0)
    try:
        assert emitted(collect(collector)) == declared(redis.METRICS)
    finally:
        collector.close()


def test_postgres_collector_emits_every_declared_metric(
    postgres_server: PostgreSQLExecutor,
) -> None:
    collector = postgres.PostgresCollector(postgres_url(postgres_server), timeout=2.0)
    try:
        assert emitted(collect(collector)) == declared(postgres.METRICS)
    finally:
        collector.close()


@pytest.mark.parametrize(
    ("make", "up"),
    [
        (lambda: redis.RedisCollector("redis://127.0.0.1:1/0", timeout=0.5), redis.UP),
        (
            lambda: postgres.PostgresCollector("postgresql://127.0.0.1:1/app", timeout=0.5),
            postgres.UP,
        ),
    ],
    ids=["redis", "postgres"],
)
def test_a_backend_that_is_down_gets_its_declared_up_gauge_only(
    make: Callable[[], Collector], up: Descriptor
) -> None:
    families = collect(make(), expect_error=True)
    assert emitted(families) == declared([up])
    assert [s.value for s in families[0].samples] == [0.0]
