"""The series a service pays for, exactly as docs/series-budget.md states them: the default set
for a service of 20 route templates x 4 methods x 5 statuses, what each opt-in and each
per-route extra adds, background time only where background work ran, and latency bounds
on every latency threshold the alerts use.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.alerts.signals import SIGNALS
from inferwatch.alerts.thresholds import Levels, load_thresholds
from inferwatch.http import middleware as middleware_module
from inferwatch.http.middleware import BACKGROUND_FLOOR
from inferwatch.metrics import buckets
from tests.apps import route_matrix_app as matrix_app
from tests.support import registry_samples

pytestmark = pytest.mark.anyio

BUDGET = Path(__file__).resolve().parent.parent / "docs" / "series-budget.md"
DURATION = "http_server_request_duration_seconds"
BACKGROUND = "http_server_background_duration_seconds"
ROUTES = 20
# The figures of docs/series-budget.md, written out: a change to them is a change of contract.
PER_STATUS = 12  # request duration: 9 bounds + +Inf, _sum, _count
PER_METHOD = 1  # in-flight requests
SIZES_PER_STATUS = 32  # body sizes (opt-in): 2 histograms x (13 bounds + +Inf, _sum, _count)
PER_BACKGROUND_ROUTE = 12
PER_STREAMED_ROUTE = 12
DEFAULT_20_ROUTES = 4_804
WITH_BODY_SIZES_20_ROUTES = 17_604


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def family(sample: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def per_family(registry: CollectorRegistry) -> Counter[str]:
    """Samples per metric family, as one scrape shows them."""
    return Counter(family(name) for name, _ in registry_samples(registry))


async def get(app: FastAPI, *paths: str) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path in paths:
            assert (await client.get(path)).status_code == 200, path


def background_counts(registry: CollectorRegistry) -> dict[str, float]:
    """Background observations per route."""
    return {
        dict(labels)["http_route"]: value
        for (name, labels), value in registry_samples(registry).items()
        if name == f"{BACKGROUND}_count"
    }


async def serve_matrix(registry: CollectorRegistry, *extra: str, **options: bool) -> None:
    """Every (method, route, status) of the 20-route service once, then the ``extra`` requests
    (``"METHOD path"``)."""
    app = inferwatch.instrument_app(matrix_app.build(ROUTES), registry=registry, **options)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for method, path, status in matrix_app.matrix(ROUTES):
            assert (await client.request(method, path)).status_code == status
        for request in extra:
            method, path = request.split(" ")
            assert (await client.request(method, path)).is_success, request


def test_the_documented_figures_are_these() -> None:
    assert len(buckets.DURATION_SECONDS) + 3 == PER_STATUS
    assert 2 * (len(buckets.SIZE_BYTES) + 3) == SIZES_PER_STATUS
    combinations = ROUTES * len(matrix_app.METHODS) * len(matrix_app.STATUSES)
    assert combinations * PER_STATUS + len(matrix_app.METHODS) * PER_METHOD == DEFAULT_20_ROUTES
    assert DEFAULT_20_ROUTES + combinations * SIZES_PER_STATUS == WITH_BODY_SIZES_20_ROUTES
    text = BUDGET.read_text(encoding="utf-8")
    for figure in (DEFAULT_20_ROUTES, WITH_BODY_SIZES_20_ROUTES):
        assert f"{figure:,}" in text, f"{BUDGET.name} does not state {figure:,}"


async def test_a_20_route_service_exposes_the_default_budget() -> None:
    registry = CollectorRegistry()
    await serve_matrix(registry)
    assert per_family(registry) == {
        DURATION: ROUTES * len(matrix_app.METHODS) * len(matrix_app.STATUSES) * PER_STATUS,
        "http_server_active_requests": len(matrix_app.METHODS),
    }
    assert sum(per_family(registry).values()) == DEFAULT_20_ROUTES


async def test_body_sizes_add_their_documented_series() -> None:
    registry = CollectorRegistry()
    await serve_matrix(registry, body_sizes=True)
    got = per_family(registry)
    combinations = ROUTES * len(matrix_app.METHODS) * len(matrix_app.STATUSES)
    assert got["http_server_request_body_size_bytes"] == combinations * SIZES_PER_STATUS // 2
    assert got["http_server_response_body_size_bytes"] == combinations * SIZES_PER_STATUS // 2
    assert sum(got.values()) == WITH_BODY_SIZES_20_ROUTES


async def test_background_time_only_for_routes_that_ran_background_work() -> None:
    registry = CollectorRegistry()
    background = f"?status=200&background_ms={round(4000 * BACKGROUND_FLOOR)}"  # 4x the floor
    await serve_matrix(
        registry,
        f"POST {matrix_app.path(3)}{background}",
        f"POST {matrix_app.path(3, 'other')}{background}",
        f"GET {matrix_app.path(7)}{background}",
    )
    counts = {
        (dict(labels)["http_request_method"], dict(labels)["http_route"]): value
        for (name, labels), value in registry_samples(registry).items()
        if name == f"{BACKGROUND}_count"
    }
    assert counts == {("POST", matrix_app.template(3)): 2, ("GET", matrix_app.template(7)): 1}
    assert per_family(registry)[BACKGROUND] == 2 * PER_BACKGROUND_ROUTE
    assert sum(per_family(registry).values()) == DEFAULT_20_ROUTES + 2 * PER_BACKGROUND_ROUTE


async def test_a_pause_that_does_not_let_the_loop_run_is_not_background_work() -> None:
    # A garbage collection or a preempted process stops the application between its response
    # and its return exactly like this: the same time passes, the loop does not turn.
    registry = CollectorRegistry()
    app = FastAPI()

    async def pause() -> None:
        time.sleep(0.02)  # blocks the loop, as a collection would

    async def wait() -> None:
        await asyncio.sleep(0.02)

    @app.get("/paused")
    async def paused(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(pause)
        return {"ok": True}

    @app.get("/waited")
    async def waited(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(wait)
        return {"ok": True}

    inferwatch.instrument_app(app, registry=registry)
    await get(app, "/paused", "/waited", "/paused")
    assert background_counts(registry) == {"/waited": 1}


async def test_work_shorter_than_the_floor_is_not_background_work(monkeypatch) -> None:
    # What a streaming response's task group or a BaseHTTPMiddleware does after the response
    # lets the loop turn too; only its length tells it from work. Raising the floor above a
    # 20 ms task shows the floor applies (deterministically: no pause lasts a second).
    async def background_routes(floor: float) -> dict[str, float]:
        monkeypatch.setattr(middleware_module, "BACKGROUND_FLOOR", floor)
        registry = CollectorRegistry()
        app = FastAPI()

        @app.get("/short")
        async def short(tasks: BackgroundTasks) -> dict[str, bool]:
            tasks.add_task(asyncio.sleep, 0.02)
            return {"ok": True}

        inferwatch.instrument_app(app, registry=registry)
        await get(app, "/short")
        return background_counts(registry)

    assert await background_routes(1.0) == {}
    assert await background_routes(BACKGROUND_FLOOR) == {"/short": 1}


async def test_each_per_route_extra_costs_its_documented_series() -> None:
    registry = CollectorRegistry()
    app = FastAPI()

    @app.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks():
            for _ in range(3):
                yield b"x" * 10

        return StreamingResponse(chunks())

    @app.get("/boom")
    async def boom() -> None:
        raise LookupError("no such model")

    inferwatch.instrument_app(app, registry=registry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path, status in (("/plain", 200), ("/stream", 200), ("/boom", 500)):
            assert (await client.get(path)).status_code == status
    assert per_family(registry) == {
        DURATION: 3 * PER_STATUS,  # one (method, route, status, error type) each
        "http_server_active_requests": PER_METHOD,
        "http_server_time_to_first_byte_seconds": PER_STREAMED_ROUTE,  # the stream only
        "http_server_exceptions_total": 1,  # one per (method, route, exception type)
    }


def test_latency_bounds_sit_on_every_latency_threshold(tmp_path: Path) -> None:
    """Each latency alert compares a histogram_quantile with a threshold; a threshold that is
    a bound is compared exactly, one between bounds only as well as interpolation guesses,
    and one above the last finite bound never fires."""
    overlay = tmp_path / "interactive.yaml"
    overlay.write_text(
        "overrides:\n  - match: {http_route: /v1/chat}\n    profile: interactive\n",
        encoding="utf-8",
    )
    thresholds = load_thresholds(overlay)
    latency = [s.key for s in SIGNALS if f":{DURATION}:" in s.series]
    assert latency == ["api_latency_p95", "api_latency_p99"]
    levels = [thresholds.signals[key] for key in latency]
    levels += [o.signals[key] for o in thresholds.overrides for key in o.signals]
    values = {
        float(value)
        for level in levels
        if isinstance(level, Levels)
        for value in (level.warning, level.critical)
        if value is not None
    }
    assert values == {0.15, 0.2, 2.0, 5.0}  # the defaults and the interactive profile
    assert values | {float(thresholds.slo.latency_threshold)} <= set(buckets.DURATION_SECONDS)
