"""/metrics: content negotiation, gzip, auth, separate port, and never blocking the loop."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

import inferwatch
from inferwatch import MetricsAuth
from inferwatch.exposition.auth import read_secret_file
from inferwatch.exposition.server import MetricsServer

pytestmark = pytest.mark.anyio
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_with_metrics(registry: CollectorRegistry, **kwargs) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/ping")
    async def ping() -> dict:
        return {"ok": True}

    inferwatch.instrument_app(app, registry=registry, **kwargs)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_content_negotiation_and_gzip() -> None:
    registry = CollectorRegistry()
    app = app_with_metrics(registry)
    async with client(app) as c:
        await c.get("/v1/ping")
        text = await c.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "http_server_request_duration_seconds_bucket" in text.text
        om = await c.get("/metrics", headers={"Accept": OPENMETRICS, "Accept-Encoding": "identity"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.endswith("# EOF\n")
        families = {f.name for f in parse_om(om.text)}
        assert "http_server_request_duration_seconds" in families
        zipped = await c.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        raw = await c.get("/metrics?name[]=http_server_active_requests")
        assert "http_server_active_requests" in raw.text
        assert "http_server_request_duration_seconds" not in raw.text
        assert (await c.post("/metrics")).status_code == 405
        head = await c.head("/metrics")
        assert head.status_code == 200 and head.content == b""
    # httpx decodes the body; the wire bytes were the gzip stream
    assert zipped.text.startswith("# HELP")
    assert zipped.num_bytes_downloaded < len(zipped.content) / 3


async def test_bearer_token_protection() -> None:
    app = app_with_metrics(CollectorRegistry(), metrics_auth=MetricsAuth.bearer("s3cret-token"))
    async with client(app) as c:
        denied = await c.get("/metrics")
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"].startswith("Bearer")
        assert "s3cret" not in denied.text
        assert (
            await c.get("/metrics", headers={"Authorization": "Bearer wrong"})
        ).status_code == 401
        ok = await c.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        # the application's own routes are not affected
        assert (await c.get("/v1/ping")).status_code == 200


async def test_basic_auth_protection() -> None:
    app = app_with_metrics(
        CollectorRegistry(), metrics_auth=MetricsAuth.basic("prom", "pw:with:colons")
    )
    good = base64.b64encode(b"prom:pw:with:colons").decode()
    bad = base64.b64encode(b"prom:nope").decode()
    async with client(app) as c:
        assert (
            await c.get("/metrics", headers={"Authorization": f"Basic {good}"})
        ).status_code == 200
        assert (
            await c.get("/metrics", headers={"Authorization": f"Basic {bad}"})
        ).status_code == 401
        assert (await c.get("/metrics", headers={"Authorization": "Basic !!!"})).status_code == 401


def test_auth_configuration_errors(tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        MetricsAuth.bearer("")
    with pytest.raises(ValueError, match="both a username and a password"):
        MetricsAuth(username="prom")
    with pytest.raises(ValueError, match="cannot read metrics token"):
        read_secret_file(tmp_path / "missing", "metrics token")
    token = tmp_path / "token"
    token.write_text("from-file\n")
    monkeypatch.setenv("INFERWATCH_METRICS_TOKEN_FILE", str(token))
    auth = MetricsAuth.from_env()
    assert auth is not None and auth.allows("Bearer from-file")
    assert "from-file" not in repr(auth)


class SlowCollector:
    """A collector that takes a while, like a big registry or a slow custom collector."""

    def __init__(self, started: threading.Event) -> None:
        self.started = started

    def collect(self):
        self.started.set()
        time.sleep(0.5)
        yield GaugeMetricFamily("slow_collector_value", "slow", value=1)


async def test_rendering_does_not_block_the_event_loop() -> None:
    registry = CollectorRegistry()
    started = threading.Event()
    app = app_with_metrics(registry)
    registry.register(SlowCollector(started))
    async with client(app) as c:
        scrape = asyncio.create_task(c.get("/metrics"))
        while not started.is_set():
            await asyncio.sleep(0.005)
        t0 = time.perf_counter()
        assert (await c.get("/v1/ping")).status_code == 200
        ping_latency = time.perf_counter() - t0
        assert not scrape.done()
        assert (await scrape).status_code == 200
    assert ping_latency < 0.25


def test_separate_port_localhost_only_with_auth() -> None:
    registry = CollectorRegistry()
    app_with_metrics(registry, metrics_path=None)
    server = inferwatch.start_metrics_server(
        0, host="127.0.0.1", registry=registry, auth=MetricsAuth.bearer("tok")
    )
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=5)
        assert denied.value.code == 401
        request = urllib.request.Request(
            url, headers={"Authorization": "Bearer tok", "Accept": OPENMETRICS}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert "http_server_active_requests" in body and body.endswith("# EOF\n")
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_port_in_use_is_a_warning_and_the_service_carries_on(caplog) -> None:
    server = inferwatch.start_metrics_server(0, host="127.0.0.1", registry=CollectorRegistry())
    assert server is not None
    try:
        with caplog.at_level(logging.WARNING, logger="inferwatch.exposition"):
            assert inferwatch.start_metrics_server(server.port, host="127.0.0.1") is None
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            (
                "WARNING",
                f"metrics port 127.0.0.1:{server.port} is in use, so process {os.getpid()} "
                "serves requests but not /metrics: with several workers set "
                "PROMETHEUS_MULTIPROC_DIR to an empty directory before starting them, so that "
                "every worker shares the port and answers for all of them",
            )
        ]
        # A server of its own (the exporter's) still fails: the port is all it is there for.
        expected = rf"cannot serve metrics on 127\.0\.0\.1:{server.port}: Address already in use$"
        with pytest.raises(OSError, match=expected):
            MetricsServer(server.app, "127.0.0.1", server.port)
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_token_file_says_how_to_create_it(tmp_path, monkeypatch, caplog) -> None:
    missing = tmp_path / "my token"
    monkeypatch.setenv("INFERWATCH_METRICS_TOKEN_FILE", str(missing))
    with (
        caplog.at_level(logging.ERROR, logger="inferwatch.exposition"),
        pytest.raises(ValueError) as raised,
    ):
        MetricsAuth.from_env()
    quoted = shlex.quote(str(missing))
    assert str(raised.value) == (
        f"cannot read token ($INFERWATCH_METRICS_TOKEN_FILE) from file {str(missing)!r}: No "
        "such file or directory; create it with python -c 'import secrets; "
        f"print(secrets.token_urlsafe(32))' > {quoted} && chmod 600 {quoted}, or set "
        "$INFERWATCH_METRICS_TOKEN_FILE to the file that holds the token"
    )
    # Unhandled, it ends the process the way a server's supervisor reads as "cannot start".
    assert isinstance(raised.value, SystemExit) and raised.value.code == 3
    assert [r.getMessage() for r in caplog.records] == [str(raised.value)]
    missing.write_text("\n")
    with pytest.raises(ValueError, match=r"file '.*my token' is empty; create it with"):
        MetricsAuth.from_env()


def test_a_missing_uvicorn_is_a_clear_error() -> None:
    # In a child: the import system of this process must keep its uvicorn.
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "import inferwatch\n"
        "try:\n"
        "    inferwatch.start_metrics_server(0, host='127.0.0.1')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "metrics server needs uvicorn" in result.stdout
    assert "pip install 'uvicorn>=0.29'" in result.stdout


async def test_trace_exemplars_in_openmetrics_only() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    registry = CollectorRegistry()
    app = app_with_metrics(registry, tracing=True, tracer_provider=TracerProvider())
    async with client(app) as c:
        await c.get("/v1/ping", headers={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
        om = (await c.get("/metrics", headers={"Accept": OPENMETRICS})).text
        text = (await c.get("/metrics")).text
    exemplars = [
        s.exemplar
        for f in parse_om(om)
        if f.name == "http_server_request_duration_seconds"
        for s in f.samples
        if s.exemplar is not None
    ]
    assert len(exemplars) == 1
    assert exemplars[0].labels == {"trace_id": "ab" * 16}
    assert "trace_id" not in text
