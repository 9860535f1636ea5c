"""A scrape served by ``/metrics`` never sets off a garbage collection of the service's heap:
the collector is paused while the render runs, for at most ``GC_PAUSE_LIMIT``, and left alone
when the application has disabled it.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily

from inferwatch.exposition import asgi
from inferwatch.exposition.asgi import MetricsApp
from inferwatch.metrics import Histogram
from inferwatch.metrics.buckets import DURATION_SECONDS
from tests.support import wait_until

pytestmark = pytest.mark.anyio
PROMETHEUS = {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"}
CHILDREN = 4_000  # one family as large as a 200-route service's request durations


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    """Whatever a test does to the garbage collector, the next one finds it enabled."""
    yield
    gc.enable()


async def scrape(app: MetricsApp) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get("/metrics", headers=PROMETHEUS)


class Mark:
    """A collector that only notes when the render reaches it: registered first and last,
    two of them bracket the render of everything registered in between."""

    def __init__(self, rendering: threading.Event, start: bool) -> None:
        self.rendering, self.start = rendering, start

    def collect(self) -> list[GaugeMetricFamily]:
        if self.start:
            self.rendering.set()
        else:
            self.rendering.clear()
        return []


async def test_a_large_scrape_sets_off_no_collection() -> None:
    registry = CollectorRegistry()
    rendering = threading.Event()
    registry.register(Mark(rendering, start=True))
    durations = Histogram(
        "work_seconds", "Work.", ("route", "status"), buckets=DURATION_SECONDS, registry=registry
    )
    for n in range(CHILDREN):
        durations.labels(f"/v1/resource{n // 20}", str(200 + n % 20)).observe(0.1)
    registry.register(Mark(rendering, start=False))
    app = MetricsApp(registry)
    during: list[int] = []  # generations collected while the render ran

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and rendering.is_set():
            during.append(info["generation"])

    gc.callbacks.append(count)
    try:
        for _ in range(10):
            response = await scrape(app)
            assert response.status_code == 200
            assert response.text.count("work_seconds_count{") == CHILDREN
    finally:
        gc.callbacks.remove(count)
    assert during == []
    assert gc.isenabled()


class Stuck:
    """A collector that blocks until released, as one waiting on a dead backend would."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.collector_was_enabled: bool | None = None

    def collect(self) -> list[GaugeMetricFamily]:
        self.collector_was_enabled = gc.isenabled()
        self.entered.set()
        self.release.wait(30)
        return [GaugeMetricFamily("stuck", "A collector that was stuck.", value=1)]


async def test_a_render_that_hangs_keeps_the_collector_paused_only_briefly(monkeypatch) -> None:
    monkeypatch.setattr(asgi._GC_PAUSE, "limit", 0.2)
    registry = CollectorRegistry()
    stuck = Stuck()
    registry.register(stuck)
    request = asyncio.ensure_future(scrape(MetricsApp(registry)))
    try:
        await asyncio.to_thread(wait_until, stuck.entered.is_set, 10, message="the render")
        assert stuck.collector_was_enabled is False  # paused while the render runs
        await asyncio.to_thread(
            wait_until, gc.isenabled, 10, message="the collector resumed after the limit"
        )
        assert not request.done()  # still rendering, yet collecting again
    finally:
        stuck.release.set()
    response = await request
    assert response.status_code == 200 and "stuck 1.0" in response.text
    assert gc.isenabled()


async def test_an_application_that_disabled_the_collector_keeps_it_disabled() -> None:
    registry = CollectorRegistry()
    stuck = Stuck()
    stuck.release.set()  # no waiting: only the state during and after the render matters
    registry.register(stuck)
    gc.disable()
    response = await scrape(MetricsApp(registry))
    assert response.status_code == 200
    assert stuck.collector_was_enabled is False
    assert not gc.isenabled()
