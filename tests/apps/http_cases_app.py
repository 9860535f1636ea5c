"""Endpoints that end badly in the ways a real server shows, for ``uvicorn`` tests of the
HTTP middleware: streams that fail halfway or lose their client, a client that gives up on a
slow answer, background work that outlives its response, mounted apps, and (``broken_app``)
an in-flight gauge that raises.

Serve it with ``uvicorn --factory tests.apps.http_cases_app:build`` (or ``:build_broken``).
Everything the tests wait for is visible over HTTP: ``/control/state`` tells how many
handlers and background tasks are holding and for how long the oldest has been,
``/control/release?token=...`` lets those holding that token finish.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry
from starlette.staticfiles import StaticFiles

import inferwatch
from inferwatch.http import http_metrics
from inferwatch.metrics import Gauge

CHUNK = b"x" * 1000
HOLD_LIMIT_SECONDS = 60.0  # a forgotten release must not keep a handler busy forever
STATIC_FILE = "clip.txt"
STATIC_BODY = b"static bytes\n"


class StreamBroke(Exception):
    """What a generator producing a stream raises halfway (a model crashing mid-song)."""


class _State:
    def __init__(self) -> None:
        self.running = {"handlers": 0, "background": 0}
        self._releases: dict[str, asyncio.Event] = {}
        self._since: list[float] = []  # when each holder still holding began

    def release(self, token: str) -> asyncio.Event:
        return self._releases.setdefault(token, asyncio.Event())

    async def hold(self, what: str, token: str) -> None:
        """Count ``what`` as running until ``token`` is released (or the limit passes)."""
        self.running[what] += 1
        began = time.monotonic()
        self._since.append(began)
        try:
            await asyncio.wait_for(self.release(token).wait(), HOLD_LIMIT_SECONDS)
        except asyncio.TimeoutError:
            pass
        finally:
            self.running[what] -= 1
            self._since.remove(began)

    def held_for(self) -> float:
        """Seconds the longest-holding holder has held so far (0 when none holds)."""
        return time.monotonic() - min(self._since) if self._since else 0.0


def _static_dir() -> str:
    directory = tempfile.mkdtemp(prefix="http-cases-static-")
    with open(os.path.join(directory, STATIC_FILE), "wb") as out:
        out.write(STATIC_BODY)
    return directory


def build(registry: CollectorRegistry | None = None) -> FastAPI:
    state = _State()
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/control/state")
    async def control_state() -> dict[str, Any]:
        return {**state.running, "held_for": state.held_for()}

    @app.post("/control/release")
    async def control_release(token: str) -> dict[str, str]:
        state.release(token).set()
        return {"released": token}

    @app.get("/v1/stream")
    async def stream(chunks: int = 3, fail_after: int = 0) -> StreamingResponse:
        async def produce() -> AsyncIterator[bytes]:
            for n in range(1, chunks + 1):
                yield CHUNK
                if n == fail_after:
                    raise StreamBroke("the model stopped producing audio")

        return StreamingResponse(produce(), media_type="audio/wav")

    @app.get("/v1/stream/endless")
    async def stream_endless() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            while True:  # until the client leaves
                yield CHUNK
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks(), media_type="audio/wav")

    @app.get("/v1/slow")
    async def slow(token: str) -> dict[str, str]:
        # Never reads the request again: only the middleware can notice the client left.
        await state.hold("handlers", token)
        return {"answer": "late"}

    @app.get("/v1/with-background")
    async def with_background(token: str, tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(state.hold, "background", token)
        return {"queued": token}

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")
    inferwatch.instrument_app(app, **({} if registry is None else {"registry": registry}))
    return app


class _FailingChild:
    """A gauge child whose store fails, as a corrupt or full metrics file would."""

    def inc(self, amount: float = 1.0) -> None:
        raise OSError("the metric store is broken")

    def dec(self, amount: float = 1.0) -> None:
        raise OSError("the metric store is broken")


class FailingGauge(Gauge):
    def labels(self, *values: Any) -> Any:
        super().labels(*values)  # the real lookup, then the broken store
        return _FailingChild()


def build_broken() -> FastAPI:
    """The same app in a registry of its own whose in-flight gauge raises on every update."""
    registry = CollectorRegistry()
    metrics = http_metrics(registry)
    registry.unregister(metrics.active_requests)
    metrics.active_requests = FailingGauge(
        metrics.active_requests.name,
        metrics.active_requests.documentation,
        metrics.active_requests.labelnames,
        registry=registry,
    )
    return build(registry)
