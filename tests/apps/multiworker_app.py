"""A FastAPI app for ``uvicorn --workers N`` tests of multiprocess mode.

Every response names the worker that served it in the ``X-Worker-Pid`` header. ``/slow/{token}``
holds its request in flight until the test creates ``release-<token>`` in the directory named
by ``$MULTIWORKER_CONTROL_DIR``; on entry it writes ``started-<token>`` there, holding the
worker's pid, so the test knows which worker to kill.

For the label caps: ``/infer/{model}`` records one inference request of ``model`` through the
AI facade, and ``/raise/{name}`` raises an exception of a class named ``name`` (created on
first use) that nothing handles. For a full directory: ``/series/{batch}/{n}`` adds one to
``n`` new series of the app's own prometheus_client counter, and with
``$MULTIWORKER_FILE_SIZE_LIMIT`` set each worker may write no file beyond that many bytes
(``RLIMIT_FSIZE``), so its metric files cannot grow past it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from pathlib import Path

CONTROL_DIR_ENV = "MULTIWORKER_CONTROL_DIR"
FILE_SIZE_LIMIT_ENV = "MULTIWORKER_FILE_SIZE_LIMIT"
PID_HEADER = "X-Worker-Pid"
FAST_BODY = b"ok"
SLOW_LIMIT_SECONDS = 60.0  # a forgotten release must not keep a worker busy forever

# Before inferwatch creates this worker's first file. Python ignores SIGXFSZ, so a write
# past the limit fails with EFBIG instead of killing the process.
if os.environ.get(FILE_SIZE_LIMIT_ENV):
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(os.environ[FILE_SIZE_LIMIT_ENV]), hard))

import prometheus_client  # noqa: E402
from fastapi import FastAPI, Response  # noqa: E402

import inferwatch  # noqa: E402
from inferwatch.ai import InferenceMetrics  # noqa: E402

app = FastAPI()
inferwatch.instrument_app(app, body_sizes=True)  # the size sums are checked too
infer = InferenceMetrics()
series = prometheus_client.Counter(
    "multiworker_series", "One per /series request and index.", ["batch", "index"], registry=None
)


class ChurnError(Exception):
    """Base of the exception classes /raise creates."""


_error_classes: dict[str, type[ChurnError]] = {}


class _QuietChurnErrors(logging.Filter):
    """Keeps the raised exceptions' tracebacks (hundreds per test) out of the server log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ChurnError))


logging.getLogger("uvicorn.error").addFilter(_QuietChurnErrors())


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


@app.get("/infer/{model}")
async def infer_model(model: str) -> Response:
    with infer.request(model):
        pass
    return _pid_response()


@app.get("/raise/{name}")
async def raise_error(name: str) -> Response:
    cls = _error_classes.get(name)
    if cls is None:
        cls = _error_classes[name] = type(name, (ChurnError,), {"__module__": __name__})
    raise cls(name)


@app.get("/series/{batch}/{n}")
async def add_series(batch: str, n: int) -> Response:
    for index in range(n):
        series.labels(batch, str(index)).inc()
    return _pid_response()
