"""A FastAPI service with its metrics on a port of its own, for the server-hardening tests and
``benchmarks/idle_connections.py``.

``$METRICS_PORT`` is the metrics port. ``$METRICS_SERVER`` picks what serves it:
``inferwatch`` (the default, :func:`inferwatch.start_metrics_server`) or
``prometheus_client`` (its ``start_http_server``, the peer the benchmark compares with). The
service answers ``GET /v1/ping`` and ``GET /healthz``; its own HTTP metrics go to the default
registry, which the metrics port serves.

    uvicorn tests.apps.metrics_port_app:app --port 8000   # with METRICS_PORT=9000
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import inferwatch

METRICS_PORT_ENV = "METRICS_PORT"
METRICS_SERVER_ENV = "METRICS_SERVER"
SERVERS = ("inferwatch", "prometheus_client")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    port = int(os.environ[METRICS_PORT_ENV])
    kind = os.environ.get(METRICS_SERVER_ENV, "inferwatch")
    if kind == "prometheus_client":
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr="127.0.0.1")
    elif kind == "inferwatch":
        server = inferwatch.start_metrics_server(port, host="127.0.0.1")
    else:
        raise ValueError(f"${METRICS_SERVER_ENV} must be one of {SERVERS}, got {kind!r}")
    yield
    server.shutdown()
    server.server_close()


app = FastAPI(lifespan=lifespan)
inferwatch.instrument_app(app, metrics_path=None)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
