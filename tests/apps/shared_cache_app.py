"""A FastAPI app for ``uvicorn --workers N`` tests of caches in multiprocess mode.

Two caches: ``shared`` in the Redis database named by ``$SHARED_CACHE_REDIS_URL``, which
every worker sees, and ``local`` in each worker's memory. ``/put/{key}`` stores ``key`` in
both. Every response names the worker that served it in the ``X-Worker-Pid`` header.
"""

from __future__ import annotations

import os

import redis
from fastapi import FastAPI, Response

import inferwatch
from inferwatch.ai import InstrumentedCache, RedisBackend

REDIS_URL_ENV = "SHARED_CACHE_REDIS_URL"
PID_HEADER = "X-Worker-Pid"

app = FastAPI()
inferwatch.instrument_app(app)
shared = InstrumentedCache(
    "shared", backend=RedisBackend(redis.Redis.from_url(os.environ[REDIS_URL_ENV]))
)
local = InstrumentedCache("local")


def _pid_response() -> Response:
    return Response(b"ok", media_type="text/plain", headers={PID_HEADER: str(os.getpid())})


@app.get("/healthz")
async def healthz() -> Response:
    return _pid_response()


@app.get("/put/{key}")
def put(key: str) -> Response:  # sync: the Redis calls block, so they run in a thread
    shared.put(key, 1)
    local.put(key, 1)
    return _pid_response()
