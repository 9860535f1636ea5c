"""The demo service: ``create_app()`` in process, ``create_app_from_env()`` for uvicorn workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import BackgroundTasks, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import ProcessCollector
from prometheus_client.registry import REGISTRY, CollectorRegistry
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from inferwatch.demo import settings as demo_settings
from inferwatch.demo.database import DEFAULT_POOL_TIMEOUT
from inferwatch.demo.faults import Faults, FaultUpdate, InjectedStreamFailure
from inferwatch.demo.generation import (
    SAMPLE_RATE,
    AudioRequest,
    JobRequest,
    MusicRequest,
    StreamRequest,
    wav,
)
from inferwatch.demo.jobs import MAX_JOBS, Job
from inferwatch.demo.models import DEFAULT_MAX_MODELS, DEFAULT_PRELOAD, ModelSpec, resolve
from inferwatch.demo.scheduler import (
    DEFAULT_BATCH_WINDOW,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE,
    QueueFull,
)
from inferwatch.demo.service import DemoService
from inferwatch.demo.settings import Settings
from inferwatch.http import instrument_app
from inferwatch.metrics.shared import once_per_registry

T = TypeVar("T")

WORKER_HEADER = "X-Demo-Worker"  # the pid of the worker process that answered
WS_POLICY_VIOLATION = 1008
WS_INVALID_DATA = 1007
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"


def _job_view(job: Job) -> dict[str, Any]:
    return job.model_dump(exclude={"result_bytes"})


def _process_metrics(registry: CollectorRegistry) -> None:
    # The global registry has them already; a registry of the demo's own gets them once.
    if registry is not REGISTRY:
        once_per_registry(registry, "demo_process", lambda: ProcessCollector(registry=registry))


def create_app(
    *,
    time_scale: float = 1.0,
    registry: CollectorRegistry | None = None,
    seed: int | None = None,
    request_timeout: float = 30.0,
    state_dir: str | os.PathLike[str] | None = None,
    max_jobs: int = MAX_JOBS,
    max_concurrent_jobs: int = 4,
    redis_url: str | None = None,
    postgres_url: str | None = None,
    max_models: int = DEFAULT_MAX_MODELS,
    preload: tuple[str, ...] | list[str] = DEFAULT_PRELOAD,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    batch_window: float = DEFAULT_BATCH_WINDOW,
    max_queue: int = DEFAULT_MAX_QUEUE,
    db_pool_size: int = 5,
    db_pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    upstream_url: str | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """Build the demo service.

    ``time_scale`` multiplies every simulated model delay (0.01 runs 100 times faster), the
    batch window included; fault latencies, the request timeout and the database pool
    timeout are wall-clock seconds and are not scaled. ``registry=None`` gives the app a
    registry of its own. ``state_dir`` keeps faults and the SQLite database in files, shared
    by every worker of a multi-worker server. ``redis_url`` puts the conditioning cache in
    Redis, ``postgres_url`` the generations table in PostgreSQL. ``upstream_url`` is the
    model service jobs call (default: one the demo starts). ``settings`` replaces all the
    other keyword arguments but ``registry``.
    """
    if settings is None:
        settings = Settings(
            time_scale=time_scale,
            seed=seed,
            request_timeout=request_timeout,
            state_dir=Path(state_dir) if state_dir is not None else None,
            max_jobs=max_jobs,
            max_concurrent_jobs=max_concurrent_jobs,
            redis_url=redis_url,
            postgres_url=postgres_url,
            max_models=max_models,
            preload=tuple(preload),
            max_batch_size=max_batch_size,
            batch_window=batch_window,
            max_queue=max_queue,
            db_pool_size=db_pool_size,
            db_pool_timeout=db_pool_timeout,
            upstream_url=upstream_url,
        )
    registry = CollectorRegistry() if registry is None else registry
    _process_metrics(registry)
    state = DemoService(settings, registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()  # the database, the cache, preloaded models
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="inferwatch demo generation service",
        description="An example AI backend instrumented with inferwatch.",
        lifespan=lifespan,
    )
    app.state.demo = state

    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    async def healthz(response: Response) -> dict[str, str]:
        response.headers[WORKER_HEADER] = str(os.getpid())
        return {"status": "ok"}

    @app.post("/v1/audio/generate", response_class=Response)
    async def generate_audio(request: AudioRequest, http: Request) -> Response:
        spec = resolve("audio", request.model)
        await _generate(
            state, http, spec, request.prompt, request.duration_seconds, request.priority,
            request.batch_size,
        )  # fmt: skip
        # A batch's takes, one after another in one WAV.
        seconds = request.duration_seconds * request.batch_size
        return Response(wav(request.prompt, seconds), media_type="audio/wav")

    @app.post("/v1/music/generate")
    async def generate_music(request: MusicRequest, http: Request) -> dict[str, Any]:
        spec = resolve("music", request.model)
        job = await _generate(
            state, http, spec, request.prompt, request.duration_seconds, request.priority,
            request.batch_size,
        )  # fmt: skip
        take_bytes = 44 + round(request.duration_seconds * SAMPLE_RATE)
        return {
            "track_id": job.job_id,
            "model": spec.name,
            "genre": request.genre,
            "bpm": request.bpm,
            "duration_seconds": request.duration_seconds,
            "batch_size": request.batch_size,
            "sample_rate": SAMPLE_RATE,
            "size_bytes": take_bytes * request.batch_size,
        }

    @app.get("/v1/audio/stream")
    async def stream_audio(
        prompt: str = Query(min_length=1, max_length=2000),
        chunks: int = Query(8, ge=1, le=256),
        chunk_seconds: float = Query(0.25, gt=0.0, le=5.0),
    ) -> StreamingResponse:
        # The request faults act before the first byte, so their errors are still a clean
        # 500/504 status; only stream_failure_rate breaks a stream already under way.
        try:
            timeout = state.faults.get().timeout_seconds
            await asyncio.wait_for(state.faults.before_generation(), timeout)
        except asyncio.TimeoutError:
            raise HTTPException(504, "generation timed out") from None
        state.generated.labels("audio").inc(chunks * chunk_seconds)
        audio = state.stream(prompt, chunks, chunk_seconds)
        if state.faults.stream_breaks():
            audio = _fail_after_first_chunk(audio)
        return StreamingResponse(audio, media_type="audio/wav")

    @app.post("/v1/jobs", status_code=202)
    async def create_job(request: JobRequest, background: BackgroundTasks) -> JSONResponse:
        spec = resolve(request.kind, request.model)
        job = await state.create_job(spec, request.duration_seconds, request.priority)
        # Runs after the response is sent: inferwatch records it as background time, not as
        # part of the request's duration.
        background.add_task(state.run_job, job, spec, request.prompt)
        return JSONResponse(
            {"job_id": job.job_id, "status": job.status, "status_url": f"/v1/jobs/{job.job_id}"},
            status_code=202,
            headers={WORKER_HEADER: str(os.getpid())},  # which worker wrote the row
        )

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        return _job_view(await _find_job(state, job_id))

    @app.get("/v1/jobs/{job_id}/result")
    async def get_job_result(job_id: str) -> dict[str, Any]:
        job = await _find_job(state, job_id)
        if job.status not in ("done", "partial"):  # a partial job has its render
            detail = f"job is {job.status}" + (f": {job.error}" if job.error else "")
            raise HTTPException(409, detail)
        return {
            "job_id": job.job_id,
            "kind": job.kind,
            "duration_seconds": job.duration_seconds,
            "size_bytes": job.result_bytes,
            "content_type": "video/mp4" if job.kind == "video" else "audio/wav",
        }

    @app.websocket("/v1/ws/generate")
    async def ws_generate(websocket: WebSocket) -> None:
        await _serve_websocket(state, websocket)

    # The admin answers name the worker, to show that a change reaches every worker.
    @app.get("/admin/faults")
    async def get_faults(response: Response) -> Faults:
        response.headers[WORKER_HEADER] = str(os.getpid())
        return state.faults.get()

    @app.put("/admin/faults")
    async def put_faults(change: FaultUpdate, response: Response) -> Faults:
        response.headers[WORKER_HEADER] = str(os.getpid())
        faults = state.faults.update(change)
        await state.apply_faults(faults)  # in force when the answer arrives
        return faults

    @app.delete("/admin/faults")
    async def reset_faults(response: Response) -> Faults:
        response.headers[WORKER_HEADER] = str(os.getpid())
        faults = state.faults.reset()
        await state.apply_faults(faults)
        return faults

    instrument_app(app, registry=registry, body_sizes=True)  # the demo shows every metric
    return app


async def _fail_after_first_chunk(chunks: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """The ``stream_failure_rate`` fault: the model fails once its first chunk is out."""
    yield await anext(chunks)
    failure = InjectedStreamFailure("injected failure mid-stream (stream_failure_rate fault)")
    await chunks.athrow(failure)  # raised inside the model's stream, which counts an error
    raise failure


async def _find_job(state: DemoService, job_id: str) -> Job:
    job = await state.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"unknown job {job_id!r}")
    return job


async def _generate(
    state: DemoService,
    http: Request,
    spec: ModelSpec,
    prompt: str,
    duration: float,
    priority: str,
    batch_size: int = 1,
) -> Job:
    """A synchronous generation, cancelled if the client goes away first."""
    work = state.generate_now(spec, prompt, duration, priority, batch_size)
    try:
        return await _unless_disconnected(http, work)
    except asyncio.TimeoutError:
        raise HTTPException(504, "generation timed out") from None
    except QueueFull:
        raise HTTPException(429, "too many requests are waiting; try again later") from None


async def _unless_disconnected(http: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first (answered 499).

    The body has been read by now, so the next ASGI message can only be the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(http.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request itself is cancelled (the server shutting down)
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise HTTPException(CLIENT_CLOSED_REQUEST, "client closed request")
    return task.result()


async def _disconnected(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _serve_websocket(state: DemoService, websocket: WebSocket) -> None:
    """One request message in; audio chunks, then a ``done`` message, out; close 1000."""
    if not websocket.query_params.get("token"):
        await websocket.close(WS_POLICY_VIOLATION, "missing 'token' query parameter")
        return
    if state.faults.websocket_fails():
        await websocket.close(WS_POLICY_VIOLATION, "injected websocket failure")
        return
    await websocket.accept()
    try:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            request = StreamRequest.model_validate_json(message.get("text") or message["bytes"])
        except (ValidationError, KeyError, TypeError) as exc:
            await websocket.send_json({"type": "error", "detail": _problems(exc)})
            await websocket.close(WS_INVALID_DATA)
            return
        sent = 0
        async for chunk in state.stream(request.prompt, request.chunks, request.chunk_seconds):
            await websocket.send_bytes(chunk)
            sent += len(chunk)
        state.generated.labels("audio").inc(request.chunks * request.chunk_seconds)
        await websocket.send_json({"type": "done", "chunks": request.chunks, "bytes": sent})
        await websocket.close(1000)
    except WebSocketDisconnect:
        pass  # the client left mid-stream; the middleware records its close code


def _problems(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
    return ["the request must be a JSON text message"]


def create_app_from_env() -> FastAPI:
    """``uvicorn --factory inferwatch.demo.app:create_app_from_env``: settings come from the
    INFERWATCH_DEMO_* variables (see :mod:`inferwatch.demo.settings`: TIME_SCALE, SEED,
    REQUEST_TIMEOUT, STATE_DIR, REDIS_URL, POSTGRES_URL, MAX_MODELS, PRELOAD, MAX_BATCH_SIZE,
    BATCH_WINDOW, MAX_QUEUE, DB_POOL_SIZE, DB_POOL_TIMEOUT, UPSTREAM_URL). Metrics go to the default
    registry (with process metrics), or to $PROMETHEUS_MULTIPROC_DIR when that is set."""
    return create_app(settings=demo_settings.from_env(), registry=REGISTRY)
