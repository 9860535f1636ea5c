"""Tracing without a tracer provider says so once; with one it stays quiet."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.tracing import otel

pytestmark = pytest.mark.anyio
TRACEPARENT = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # The warning is once per process; each test starts as a process that has not warned.
    monkeypatch.setattr(otel, "_warned", False)


def traced_app(**kwargs: object) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/ping")
    async def ping() -> dict:
        return {"ok": True}

    inferwatch.instrument_app(app, registry=CollectorRegistry(), tracing=True, **kwargs)
    return app


async def serve(app: FastAPI, requests: int) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for _ in range(requests):
            assert (await c.get("/v1/ping", headers=TRACEPARENT)).status_code == 200


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "inferwatch" and r.levelno == logging.WARNING
    ]


async def test_no_provider_warns_once_per_process(caplog: pytest.LogCaptureFixture) -> None:
    # The test process never sets a global provider: this is the API's proxy.
    assert otel.is_noop_provider(trace.get_tracer_provider())
    caplog.set_level(logging.WARNING, logger="inferwatch")
    first, second = traced_app(), traced_app()
    assert warnings_of(caplog) == []  # a provider may still be set before serving
    await serve(first, 3)
    await serve(second, 2)
    assert warnings_of(caplog) == [otel.NO_PROVIDER_WARNING]
    assert "set_tracer_provider(TracerProvider())" in otel.NO_PROVIDER_WARNING
    assert "tracer_provider=" in otel.NO_PROVIDER_WARNING


async def test_a_noop_provider_passed_in_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="inferwatch")
    await serve(traced_app(tracer_provider=trace.NoOpTracerProvider()), 2)
    assert warnings_of(caplog) == [otel.NO_PROVIDER_WARNING]


async def test_a_provider_passed_in_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="inferwatch")
    await serve(traced_app(tracer_provider=TracerProvider()), 2)
    assert warnings_of(caplog) == []


def test_a_global_provider_set_after_instrument_app_is_quiet() -> None:
    # In a child: the global provider can be set only once per process. Set after
    # instrument_app, as an app that configures OpenTelemetry at startup does; the spans and
    # exemplars it records show the check did not judge too early.
    code = textwrap.dedent(
        """
        import asyncio, logging
        import httpx
        from fastapi import FastAPI
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from prometheus_client import CollectorRegistry
        import inferwatch

        logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
        registry = CollectorRegistry()
        app = FastAPI()

        @app.get("/v1/ping")
        async def ping() -> dict:
            return {"ok": True}

        inferwatch.instrument_app(app, registry=registry, tracing=True)
        trace.set_tracer_provider(TracerProvider())

        async def main() -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                parent = "00-%s-%s-01" % ("ab" * 16, "cd" * 8)
                await c.get("/v1/ping", headers={"traceparent": parent})
                om = await c.get("/metrics", headers={"Accept": "application/openmetrics-text"})
            print(om.text.count('trace_id="' + "ab" * 16 + '"'))

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "1\n"
    assert result.stderr == ""
