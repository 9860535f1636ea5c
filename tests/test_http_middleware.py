"""The HTTP/WebSocket middleware: exact bookkeeping driven in-process through httpx's ASGI
transport, and the ways a request ends badly under a real uvicorn (tests/apps/http_cases_app.py):
a stream failing halfway, a client leaving, background work outliving its response, an
in-flight gauge that raises.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import BackgroundTasks, FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from prometheus_client import REGISTRY, CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import inferwatch
from inferwatch.http import middleware as middleware_module
from tests.apps import http_cases_app as cases_app
from tests.support import Metrics, Server, free_port, registry_samples, serve, value, wait_until
from tests.support.promtool import needs_promtool
from tests.support.server import LOOPBACK

DURATION = "http_server_request_duration_seconds"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


samples = registry_samples


def http_labels(route: str, status: str = "200", method: str = "GET") -> dict[str, str]:
    return {"http_request_method": method, "http_route": route, "http_response_status_code": status}


def duration_labels(
    route: str, status: str = "200", method: str = "GET", error_type: str = ""
) -> dict[str, str]:
    """The labels of a request duration series: a success's error_type is empty."""
    return {**http_labels(route, status, method), "error_type": error_type}


def build_app(registry: CollectorRegistry, **kwargs) -> FastAPI:
    app = FastAPI()
    sub = FastAPI()

    @sub.get("/items/{item_id:int}")
    async def sub_item(item_id: int) -> dict:
        return {"id": item_id}

    app.mount("/api/{version}", sub)

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str) -> dict:
        return {"job": job_id}

    @app.post("/v1/upload")
    async def upload(payload: dict) -> dict:
        return {"size": len(payload["data"])}

    @app.get("/v1/slow-background")
    async def slow_background(tasks: BackgroundTasks) -> dict:
        tasks.add_task(asyncio.sleep, 0.3)
        return {"ok": True}

    @app.get("/v1/stream")
    async def stream() -> StreamingResponse:
        async def chunks():
            for _ in range(3):
                await asyncio.sleep(0.02)
                yield b"x" * 100

        return StreamingResponse(chunks(), media_type="audio/wav")

    @app.get("/v1/boom")
    async def boom() -> dict:
        raise LookupError("model missing")

    @app.get("/healthz")
    async def health() -> dict:
        return {"ok": True}

    @app.websocket("/v1/ws/{session}")
    async def ws(websocket: WebSocket, session: str) -> None:
        if websocket.query_params.get("deny"):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        for _ in range(2):
            await websocket.receive_text()
        for _ in range(3):
            await websocket.send_text("chunk")
        await websocket.close(code=1000)

    inferwatch.instrument_app(app, registry=registry, **kwargs)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def test_route_templates_status_codes_and_sizes(registry: CollectorRegistry) -> None:
    app = build_app(registry, body_sizes=True)  # sizes are opt-in
    async with client(app) as c:
        for job in ("a1", "b2", "c3"):
            assert (await c.get(f"/v1/jobs/{job}")).status_code == 200
        assert (await c.get("/api/v7/items/42")).status_code == 200
        assert (await c.get("/no/such/path")).status_code == 404
        assert (await c.post("/v1/upload", json={"data": "x" * 1000})).status_code == 200

    assert value(registry, f"{DURATION}_count", **duration_labels("/v1/jobs/{job_id}")) == 3
    assert (
        value(registry, f"{DURATION}_count", **duration_labels("/api/{version}/items/{item_id}"))
        == 1
    )
    assert value(registry, f"{DURATION}_count", **duration_labels("_unmatched", "404")) == 1
    # No raw path or id ever becomes a label value.
    values = {v for _, labels in samples(registry) for _, v in labels}
    for raw in ("a1", "b2", "/api/v7", "42", "/no/such/path"):
        assert not any(raw in v for v in values)
    upload = http_labels("/v1/upload", method="POST")
    body_size = value(registry, "http_server_request_body_size_bytes_sum", **upload)
    assert body_size == len('{"data":"' + "x" * 1000 + '"}')
    # 1012 bytes fall in the 1024-byte bucket, not the 256-byte one.
    assert value(registry, "http_server_request_body_size_bytes_bucket", le="1024.0", **upload) == 1
    assert value(registry, "http_server_request_body_size_bytes_bucket", le="256.0", **upload) == 0
    assert value(registry, "http_server_response_body_size_bytes_sum", **upload) == len(
        b'{"size":1000}'
    )
    assert value(registry, "http_server_active_requests", http_request_method="GET") == 0


async def test_unknown_methods_collapse_and_excluded_paths_are_silent(registry) -> None:
    app = build_app(registry)
    async with client(app) as c:
        assert (await c.request("BREW", "/v1/jobs/1")).status_code == 405
        assert (await c.request("PROPFIND-XYZ", "/v1/jobs/1")).status_code == 405
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/metrics")).status_code == 200
    assert (
        value(
            registry, f"{DURATION}_count", **duration_labels("/v1/jobs/{job_id}", "405", "_OTHER")
        )
        == 2
    )
    routes = {
        dict(k[1]).get("http_route") for k in samples(registry) if k[0] == f"{DURATION}_count"
    }
    assert routes == {"/v1/jobs/{job_id}"}


async def test_background_tasks_are_timed_separately(registry) -> None:
    app = build_app(registry)
    async with client(app) as c:
        assert (await c.get("/v1/slow-background")).status_code == 200
    labels = duration_labels("/v1/slow-background")
    assert value(registry, f"{DURATION}_count", **labels) == 1
    assert value(registry, f"{DURATION}_sum", **labels) < 0.2
    route = {"http_request_method": "GET", "http_route": "/v1/slow-background"}
    assert value(registry, "http_server_background_duration_seconds_sum", **route) >= 0.3


async def test_streaming_time_to_first_byte_and_duration_to_last_chunk(registry) -> None:
    app = build_app(registry)
    async with client(app) as c:
        response = await c.get("/v1/stream")
        assert response.content == b"x" * 300
    route = {"http_request_method": "GET", "http_route": "/v1/stream"}
    assert value(registry, "http_server_time_to_first_byte_seconds_count", **route) == 1
    ttfb = value(registry, "http_server_time_to_first_byte_seconds_sum", **route)
    total = value(registry, f"{DURATION}_sum", **duration_labels("/v1/stream"))
    assert 0.02 <= ttfb < total
    assert total >= 0.06  # three 20 ms chunks: measured to the end of the body
    # Non-streamed routes get no time-to-first-byte series at all.
    names = {k for k in samples(registry) if k[0].startswith("http_server_time_to_first_byte")}
    assert all(dict(k[1])["http_route"] == "/v1/stream" for k in names)


async def test_unhandled_exception_counted_by_type(registry) -> None:
    app = build_app(registry)
    async with client(app) as c:
        for _ in range(2):
            assert (await c.get("/v1/boom")).status_code == 500
    assert (
        value(
            registry,
            f"{DURATION}_count",
            **duration_labels("/v1/boom", "500", error_type="LookupError"),
        )
        == 2
    )
    exceptions = {
        "http_request_method": "GET",
        "http_route": "/v1/boom",
        "error_type": "LookupError",
    }
    assert value(registry, "http_server_exceptions_total", **exceptions) == 2


async def test_a_background_task_failing_fails_no_answered_request(registry) -> None:
    app = FastAPI()

    async def fail() -> None:
        raise LookupError("the job's model is gone")

    @app.post("/v1/jobs")
    async def create(tasks: BackgroundTasks) -> dict:
        tasks.add_task(fail)
        return {"queued": True}

    inferwatch.instrument_app(app, registry=registry)
    async with client(app) as c:
        assert (await c.post("/v1/jobs")).status_code == 200
    assert value(registry, f"{DURATION}_count", **duration_labels("/v1/jobs", method="POST")) == 1
    assert {dict(k[1])["error_type"] for k in samples(registry) if k[0] == f"{DURATION}_count"} == {
        ""
    }
    exceptions = {"http_request_method": "POST", "http_route": "/v1/jobs"}
    assert (
        value(registry, "http_server_exceptions_total", error_type="LookupError", **exceptions) == 1
    )


async def test_error_types_are_bounded(registry, monkeypatch) -> None:
    monkeypatch.setattr(middleware_module, "MAX_ERROR_TYPES", 3)
    app = FastAPI()

    @app.get("/raise/{n}")
    async def raise_new_type(n: int) -> None:
        raise type(f"Error{n}", (Exception,), {})()

    inferwatch.instrument_app(app, registry=registry)
    async with client(app) as c:
        for n in range(10):
            await c.get(f"/raise/{n}")
    types = {
        dict(k[1])["error_type"]
        for k in samples(registry)
        if k[0] == "http_server_exceptions_total"
    }
    assert len(types) == 4 and "_OTHER" in types


def series(registry: CollectorRegistry) -> set[tuple[str, frozenset]]:
    """Distinct time series, counting a histogram's buckets, sum and count as one."""
    return {
        (m.name, frozenset(s.labels.items() - {("le", s.labels.get("le"))}))
        for m in registry.collect()
        for s in m.samples
    }


async def test_ten_thousand_random_paths_add_constant_series(registry) -> None:
    app = build_app(registry)
    rng = random.Random(7)
    methods = ["GET", "POST", "DELETE", "FOO"]
    async with client(app) as c:
        for method in methods:  # every combination the random traffic can produce, once
            await c.request(method, "/warm/up")
        before = series(registry)
        for _ in range(10_000):
            path = "/" + "/".join(
                "".join(rng.choices(string.ascii_letters + string.digits, k=8))
                for _ in range(rng.randint(1, 4))
            )
            await c.request(rng.choice(methods), path)
    assert series(registry) == before
    unmatched = [
        v
        for (name, labels), v in samples(registry).items()
        if name == f"{DURATION}_count" and dict(labels)["http_route"] == "_unmatched"
    ]
    assert sum(unmatched) == 10_004 and len(unmatched) == 4


def test_websocket_sessions(registry) -> None:
    app = build_app(registry)
    with TestClient(app) as c:
        with c.websocket_connect("/v1/ws/abc") as ws:
            ws.send_text("hello")
            ws.send_text("more")
            assert [ws.receive_text() for _ in range(3)] == ["chunk"] * 3
        with pytest.raises(WebSocketDisconnect) as denied, c.websocket_connect("/v1/ws/abc?deny=1"):
            pass
        assert denied.value.code == 1008
    route = {"http_route": "/v1/ws/{session}"}
    assert (
        value(registry, "websocket_server_connection_attempts_total", outcome="accepted", **route)
        == 1
    )
    assert (
        value(registry, "websocket_server_connection_attempts_total", outcome="rejected", **route)
        == 1
    )
    closed = {"close_code": "1000", "closed_by": "server", **route}
    assert value(registry, "websocket_server_connections_closed_total", **closed) == 1
    assert value(registry, "websocket_server_messages_total", direction="received", **route) == 2
    assert value(registry, "websocket_server_messages_total", direction="sent", **route) == 3
    assert value(registry, "websocket_server_active_connections", **route) == 0
    assert value(registry, "websocket_server_connection_setup_duration_seconds_count", **route) == 1
    assert value(registry, "websocket_server_session_duration_seconds_count", **route) == 1


def test_close_code_labels_are_bounded() -> None:
    label = middleware_module.close_code_label
    assert label(1000, from_client=True) == "1000"
    assert label(4001, from_client=False) == "4001"
    assert label(4001, from_client=True) == "4xxx"
    assert label(3999, from_client=True) == "3xxx"
    assert label(65535, from_client=True) == "_OTHER"
    assert label("1000", from_client=True) == "_OTHER"


async def test_metrics_failure_never_fails_the_request(registry, monkeypatch, caplog) -> None:
    app = build_app(registry)

    def broken(*args, **kwargs):
        raise RuntimeError("metrics store is broken")

    monkeypatch.setattr(middleware_module.InferwatchMiddleware, "_record_http", broken)
    async with client(app) as c:
        for _ in range(3):
            response = await c.get("/v1/jobs/1")
            assert response.status_code == 200 and response.json() == {"job": "1"}
    errors = value(registry, "inferwatch_instrumentation_errors_total", component="http.record")
    assert errors == 3
    assert len([r for r in caplog.records if "instrumentation error" in r.message]) == 1


async def test_instrumenting_twice_and_rebuilding_the_stack(registry) -> None:
    app = build_app(registry)
    inferwatch.instrument_app(app, registry=registry)  # second call: a warning, no new layer
    async with client(app) as c:
        await c.get("/v1/jobs/1")
        app.middleware_stack = app.build_middleware_stack()  # what Starlette may do again
        await c.get("/v1/jobs/2")
    # a second app in the same registry shares the metrics instead of raising
    other = build_app(registry)
    async with client(other) as c:
        await c.get("/v1/jobs/3")
    assert value(registry, f"{DURATION}_count", **duration_labels("/v1/jobs/{job_id}")) == 3


def test_custom_registry_is_honoured_by_every_metric(registry) -> None:
    before = {m.name for m in REGISTRY.collect()}
    app = build_app(registry)
    with TestClient(app) as c:
        c.get("/v1/jobs/1")
    assert {m.name for m in REGISTRY.collect()} == before
    assert any(m.name == DURATION for m in registry.collect())


def test_bad_arguments_get_clear_errors(registry) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        build_app(registry, duration_buckets=[1.0, 0.5])
    with pytest.raises(ValueError, match="metrics_path must start with '/'"):
        build_app(CollectorRegistry(), metrics_path="metrics")
    with pytest.raises(TypeError, match="collection of paths"):
        build_app(CollectorRegistry(), exclude_paths="/healthz")
    with pytest.raises(ValueError, match="absolute paths"):
        build_app(CollectorRegistry(), exclude_paths=["healthz"])
    build_app(registry)
    with pytest.raises(ValueError, match="other buckets"):
        build_app(registry, duration_buckets=[0.1, 1.0])


def test_instrumenting_a_running_app_is_refused() -> None:
    app = FastAPI()
    with TestClient(app) as c:
        c.get("/")
        with pytest.raises(RuntimeError, match="before the application starts"):
            inferwatch.instrument_app(app, registry=CollectorRegistry())


# -- mounts ---------------------------------------------------------------------------------
def _mounted_apps(static: Path) -> tuple[FastAPI, Starlette]:
    """The same tree of mounts under a FastAPI and a Starlette application: static files at
    the top, a sub-application with its own routes and its own static mount, and a mount
    with a parameter holding a mount holding an application."""
    (static / "clip.txt").write_text("bytes")

    def sub_app() -> FastAPI:
        sub = FastAPI()

        @sub.get("/items/{item_id}")
        async def item(item_id: str) -> dict:
            return {"id": item_id}

        sub.mount("/assets", StaticFiles(directory=static))
        return sub

    def leaf() -> Starlette:
        return Starlette(routes=[Route("/x/{n}", lambda request: PlainTextResponse("x")),
                                 Mount("/files", StaticFiles(directory=static))])  # fmt: skip

    fastapi_app = FastAPI()
    fastapi_app.mount("/static", StaticFiles(directory=static))
    fastapi_app.mount("/sub", sub_app())
    fastapi_app.mount("/outer/{tenant}", Starlette(routes=[Mount("/inner", leaf())]))
    starlette_app = Starlette(
        routes=[
            Mount("/static", StaticFiles(directory=static)),
            Mount("/sub", sub_app()),
            Mount("/outer/{tenant}", routes=[Mount("/inner", leaf())]),
        ]
    )
    return fastapi_app, starlette_app


@pytest.mark.parametrize("kind", ["fastapi", "starlette"])
async def test_mounted_apps_are_labelled_by_their_mount(kind: str, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    fastapi_app, starlette_app = _mounted_apps(tmp_path)
    app = inferwatch.instrument_app(
        fastapi_app if kind == "fastapi" else starlette_app, registry=registry
    )
    expected = {
        ("/static/clip.txt", "200"): "/static/{path}",
        ("/static/missing.txt", "404"): "/static/{path}",
        ("/sub/items/7", "200"): "/sub/items/{item_id}",
        ("/sub/assets/clip.txt", "200"): "/sub/assets/{path}",
        ("/sub/nothing/here", "404"): "/sub/{path}",
        ("/outer/acme/inner/x/5", "200"): "/outer/{tenant}/inner/x/{n}",
        ("/outer/acme/inner/files/clip.txt", "200"): "/outer/{tenant}/inner/files/{path}",
        ("/no/mount", "404"): "_unmatched",
    }
    async with client(app) as c:
        for path, status in expected:
            assert (await c.get(path)).status_code == int(status), path
    got = {
        (labels["http_route"], labels["http_response_status_code"]): value
        for (name, frozen), value in samples(registry).items()
        if name == f"{DURATION}_count"
        for labels in [dict(frozen)]
    }
    assert got == {(route, status): 1.0 for (_, status), route in expected.items()}


# -- under a real uvicorn -------------------------------------------------------------------
COUNT = f"{DURATION}_count"
STREAM = "/v1/stream"
BROKE = "tests.apps.http_cases_app.StreamBroke"
PROMTOOL = shutil.which("promtool")
RULES = Path(__file__).resolve().parent.parent / "alerts" / "recording_rules.yaml"


def _uvicorn(tmp_path_factory: pytest.TempPathFactory, factory: str) -> Iterator[Server]:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--factory", f"tests.apps.http_cases_app:{factory}",
        "--host", LOOPBACK, "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("uvicorn") / f"{factory}.log"
    with serve(command, port=port, log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _uvicorn(tmp_path_factory, "build")


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _uvicorn(tmp_path_factory, "build_broken")


def scrape(server: Server) -> Metrics:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    return Metrics(response.text)


def metrics_when(server: Server, predicate, what: str, show: str = COUNT) -> Metrics:
    last: list[Metrics] = []

    def check() -> Metrics | None:
        last[:] = [scrape(server)]
        return last[0] if predicate(last[0]) else None

    return wait_until(
        check, 15, interval=0.02,
        message=lambda: f"{what}; last scrape:\n{last[0].describe(show) if last else ''}",
    )  # fmt: skip


def running(server: Server) -> dict[str, float]:
    return httpx.get(f"{server.url}/control/state", timeout=10).json()


def release(server: Server, token: str) -> None:
    httpx.post(f"{server.url}/control/release", params={"token": token}, timeout=10)


def in_flight(m: Metrics) -> float | None:
    return m.value("http_server_active_requests", http_request_method="GET")


def recorded_error_ratio_is(m: Metrics, route: str, permille: int, tmp_path: Path) -> None:
    """Assert, through promtool, that ``job_route:http_server_request_errors:ratio_rate5m``
    makes ``permille`` of the route's series as scraped, each grown by its scraped count
    every minute (so any window sees the scrape's proportions)."""
    assert PROMTOOL is not None
    series = []
    for s in m.samples(COUNT, http_route=route):
        # Prometheus stores an empty label as no label at all.
        labels = {"job": "api", **{k: v for k, v in s.labels.items() if v}}
        selector = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        series.append({"series": f"{COUNT}{{{selector}}}", "values": f"0+{s.value:g}x20"})
    ratio = f'job_route:http_server_request_errors:ratio_rate5m{{http_route="{route}"}}'
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [{
                "expr": f"round({ratio} * 1000)",
                "eval_time": "10m",
                "exp_samples": [{"labels": f'{{http_route="{route}", job="api"}}',
                                 "value": permille}],
            }],
        }],
    }  # fmt: skip
    path = tmp_path / "error_ratio.yaml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_a_stream_failing_halfway_is_a_failed_request(cases: Server, tmp_path: Path) -> None:
    for _ in range(3):
        assert httpx.get(f"{cases.url}{STREAM}", timeout=10).content == cases_app.CHUNK * 3
    # The status line said 200; the body stops after its first chunk.
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{cases.url}{STREAM}", params={"fail_after": 1}, timeout=10)
    labels = {
        "http_request_method": "GET",
        "http_route": STREAM,
        "http_response_status_code": "200",
    }

    def recorded(m: Metrics) -> bool:
        return m.value(COUNT, **labels, error_type=BROKE) == 1

    m = metrics_when(cases, recorded, "the failed stream")
    assert m.value(COUNT, **labels, error_type="") == 3
    assert {s.labels["error_type"] for s in m.samples(COUNT, http_route=STREAM)} == {"", BROKE}
    exceptions = {"http_request_method": "GET", "http_route": STREAM, "error_type": BROKE}
    assert m.value("http_server_exceptions_total", **exceptions) == 1
    assert in_flight(m) == 0
    recorded_error_ratio_is(m, STREAM, 250, tmp_path)  # 1 of 4, though no status was 5xx


def test_a_client_leaving_a_slow_answer_is_499(cases: Server) -> None:
    # The handler never reads the request again, and uvicorn neither cancels it nor fails
    # its send() when the client goes: only the middleware's question to the server tells,
    # asked of responses slower than DEPARTURE_CHECK_AFTER.
    with socket.create_connection((cases.host, cases.port), timeout=10) as impatient:
        impatient.sendall(b"GET /v1/slow?token=gone HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_until(
            lambda: running(cases)["held_for"] > middleware_module.DEPARTURE_CHECK_AFTER,
            15,
            message="the handler holding long enough to be asked about",
        )
        assert in_flight(scrape(cases)) == 1
    release(cases, "gone")  # the handler answers 200 into a closed connection
    route = {"http_request_method": "GET", "http_route": "/v1/slow"}

    def recorded(m: Metrics) -> bool:
        return m.value(COUNT, **route, http_response_status_code="499", error_type="499") == 1

    m = metrics_when(cases, recorded, "the departed client recorded as 499")
    assert m.value(COUNT, **route) == 1  # and not also as a 200
    assert in_flight(m) == 0


def test_a_client_leaving_a_stream_is_499(cases: Server) -> None:
    with (
        httpx.Client(base_url=cases.url, timeout=10) as listener,
        listener.stream("GET", "/v1/stream/endless") as response,
    ):
        assert response.status_code == 200
        next(response.iter_raw())  # one chunk, then hang up halfway
    route = {"http_request_method": "GET", "http_route": "/v1/stream/endless"}

    def recorded(m: Metrics) -> bool:
        return m.value(COUNT, **route, http_response_status_code="499", error_type="499") == 1

    m = metrics_when(cases, recorded, "the stream's departed client recorded as 499")
    assert m.value(COUNT, **route) == 1
    assert in_flight(m) == 0


def test_in_flight_ends_with_the_response_not_the_background_task(cases: Server) -> None:
    response = httpx.get(f"{cases.url}/v1/with-background", params={"token": "bg"}, timeout=10)
    assert response.status_code == 200
    wait_until(lambda: running(cases)["background"] == 1, 15, message="the background task")
    route = {"http_request_method": "GET", "http_route": "/v1/with-background"}
    background = "http_server_background_duration_seconds_count"
    m = metrics_when(
        cases, lambda m: m.value(COUNT, **route, error_type="") == 1, "the response recorded"
    )
    assert in_flight(m) == 0  # the task still runs, yet no response is incomplete
    assert m.value(background, **route) is None  # recorded once the task is over
    release(cases, "bg")
    metrics_when(cases, lambda m: m.value(background, **route) == 1, "the background time")


def test_static_files_mounted_on_fastapi_are_labelled_by_the_mount(cases: Server) -> None:
    response = httpx.get(f"{cases.url}/static/{cases_app.STATIC_FILE}", timeout=10)
    assert response.content == cases_app.STATIC_BODY
    m = metrics_when(
        cases, lambda m: m.value(COUNT, http_route="/static/{path}") == 1, "the static file"
    )
    assert not m.samples(COUNT, http_route="_unmatched")


def test_a_failing_in_flight_gauge_never_fails_a_request(broken: Server) -> None:
    for _ in range(3):
        response = httpx.get(f"{broken.url}/control/state", timeout=10)
        assert response.status_code == 200
        assert response.json() == {"handlers": 0, "background": 0, "held_for": 0.0}
    route = {"http_request_method": "GET", "http_route": "/control/state", "error_type": ""}
    m = metrics_when(broken, lambda m: m.value(COUNT, **route) == 3, "three requests recorded")
    errors = "inferwatch_instrumentation_errors_total"
    assert m.value(errors, component="http.start") == 3
    assert m.value(errors) == 3  # nothing else failed, and nothing tried to decrement
