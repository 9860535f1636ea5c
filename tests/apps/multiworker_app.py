"""A FastAPI app for ``uvicorn --workers N`` tests of multiprocess mode.

Every response names the worker that served it in the ``X-Worker-Pid`` header. ``/slow/{token}``
holds its request in flight until the test creates ``release-<token>`` in the directory named
by ``$MULTIWORKER_CONTROL_DIR``; on entry it writes ``started-<token>`` there, holding the
worker's pid, so the test knows which worker to kill.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from fastapi import FastAPI, Response

import inferwatch

CONTROL_DIR_ENV = "MULTIWORKER_CONTROL_DIR"
PID_HEADER = "X-Worker-Pid"
FAST_BODY = b"ok"
SLOW_LIMIT_SECONDS = 60.0  # a forgotten release must not keep a worker busy forever

app = FastAPI()
inferwatch.instrument_app(app)


def _pid_response(body: bytes = FAST_BODY) -> Response:
    return Response(body, media_type="text/plain", headers={PID_HEADER: str(os.getpid())})


@app.get("/healthz")  # excluded from the metrics: readiness probes must not skew counts
async def healthz() -> Response:
    return _pid_response()


@app.get("/fast")
async def fast() -> Response:
    return _pid_response()


@app.get("/slow/{token}")
async def slow(token: str) -> Response:
    control = Path(os.environ[CONTROL_DIR_ENV])
    started = control / f"started-{token}"
    # Write then rename, so the test never reads a half-written pid.
    partial = control / f".started-{token}.tmp"
    partial.write_text(str(os.getpid()))
    partial.rename(started)
    release = control / f"release-{token}"
    deadline = time.monotonic() + SLOW_LIMIT_SECONDS
    # Poll without blocking the event loop, so the worker keeps serving other requests.
    while not release.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return _pid_response()
