"""The demo service: ``create_app()`` in process, ``create_app_from_env()`` for uvicorn workers."""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException, Query, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client.registry import REGISTRY, CollectorRegistry
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from inferwatch.demo.faults import Faults, FaultSwitch, FaultUpdate, InjectedFault
from inferwatch.demo.generation import (
    SAMPLE_RATE,
    AudioRequest,
    Generator,
    JobRequest,
    MusicRequest,
    StreamRequest,
    wav,
)
from inferwatch.demo.jobs import MAX_JOBS, DirectoryJobStore, Job, JobStore, MemoryJobStore
from inferwatch.http import instrument_app
from inferwatch.metrics import Counter

# Settings for create_app_from_env(), which `uvicorn --factory` and multi-worker mode use.
ENV_TIME_SCALE = "INFERWATCH_DEMO_TIME_SCALE"
ENV_SEED = "INFERWATCH_DEMO_SEED"
ENV_REQUEST_TIMEOUT = "INFERWATCH_DEMO_REQUEST_TIMEOUT"
ENV_STATE_DIR = "INFERWATCH_DEMO_STATE_DIR"

VIDEO_BYTES_PER_SECOND = 250_000  # what a compressed 720p clip roughly weighs
WORKER_HEADER = "X-Demo-Worker"  # the pid of the worker process that answered
WS_POLICY_VIOLATION = 1008
WS_INVALID_DATA = 1007

_media_counters: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def _media_counter(registry: CollectorRegistry) -> Counter:
    # One counter per registry: two demo apps sharing a registry must not register it twice.
    counter = _media_counters.get(registry)
    if counter is None:
        counter = _media_counters[registry] = Counter(
            "demo_generated_media_seconds_total",
            "Seconds of audio, music or video the demo service generated.",
            ("kind",),
            registry=registry,
        )
    return counter


@dataclass
class DemoState:
    generator: Generator
    faults: FaultSwitch
    jobs: JobStore
    gpu_slots: asyncio.Semaphore  # jobs beyond this many wait "queued", like on a real GPU
    generated: Counter

    async def generate(self, kind: str, prompt: str, duration: float) -> None:
        """Faults plus model time, under the request deadline (TimeoutError past it)."""
        timeout = self.faults.get().timeout_seconds

        async def work() -> None:
            await self.faults.before_generation()
            await self.generator.generate(kind, prompt, duration)

        await asyncio.wait_for(work(), timeout)
        self.generated.labels(kind).inc(duration)

    async def run_job(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None:  # already evicted from the bounded store
            return
        async with self.gpu_slots:
            job = job.model_copy(update={"status": "running", "started_at": time.time()})
            self.jobs.put(job)
            update: dict[str, Any]
            try:
                await self.generate(job.kind, job.prompt, job.duration_seconds)
            except InjectedFault as exc:
                update = {"status": "failed", "error": str(exc)}
            except asyncio.TimeoutError:
                update = {"status": "failed", "error": "generation timed out"}
            else:
                update = {"status": "done", "result_bytes": result_size(job)}
            update["finished_at"] = time.time()
            if self.jobs.get(job.job_id) is not None:  # don't resurrect an evicted job
                self.jobs.put(job.model_copy(update=update))


def result_size(job: Job) -> int:
    if job.kind == "video":
        return round(job.duration_seconds * VIDEO_BYTES_PER_SECOND)
    return 44 + round(job.duration_seconds * SAMPLE_RATE)  # WAV header + 8-bit samples


def _job_view(job: Job) -> dict[str, Any]:
    return job.model_dump(exclude={"result_bytes", "prompt"})


def create_app(
    *,
    time_scale: float = 1.0,
    registry: CollectorRegistry | None = None,
    seed: int | None = None,
    request_timeout: float = 30.0,
    state_dir: str | os.PathLike[str] | None = None,
    max_jobs: int = MAX_JOBS,
    max_concurrent_jobs: int = 4,
) -> FastAPI:
    """Build the demo service.

    ``time_scale`` multiplies every simulated model delay (0.01 runs 100 times faster);
    fault latencies and the request timeout are wall-clock seconds and are not scaled.
    ``registry=None`` gives the app a registry of its own. ``state_dir`` keeps faults and jobs
    in files, shared by every worker of a multi-worker server.
    """
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale must be a finite number > 0, got {time_scale!r}")
    registry = CollectorRegistry() if registry is None else registry
    rng = random.Random(seed)
    defaults = Faults(timeout_seconds=request_timeout)
    jobs: JobStore
    if state_dir is not None:
        faults = FaultSwitch(defaults, rng=rng, path=Path(state_dir) / "faults.json")
        jobs = DirectoryJobStore(Path(state_dir) / "jobs", max_jobs)
    else:
        faults = FaultSwitch(defaults, rng=rng)
        jobs = MemoryJobStore(max_jobs)
    state = DemoState(
        generator=Generator(time_scale, rng),
        faults=faults,
        jobs=jobs,
        gpu_slots=asyncio.Semaphore(max_concurrent_jobs),
        generated=_media_counter(registry),
    )

    app = FastAPI(
        title="inferwatch demo generation service",
        description="An example AI backend instrumented with inferwatch.",
    )
    app.state.demo = state

    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    async def healthz(response: Response) -> dict[str, str]:
        response.headers[WORKER_HEADER] = str(os.getpid())
        return {"status": "ok"}

    @app.post("/v1/audio/generate", response_class=Response)
    async def generate_audio(request: AudioRequest) -> Response:
        await _generate_or_504(state, "audio", request.prompt, request.duration_seconds)
        return Response(wav(request.prompt, request.duration_seconds), media_type="audio/wav")

    @app.post("/v1/music/generate")
    async def generate_music(request: MusicRequest) -> dict[str, Any]:
        await _generate_or_504(state, "music", request.prompt, request.duration_seconds)
        return {
            "track_id": os.urandom(8).hex(),
            "genre": request.genre,
            "bpm": request.bpm,
            "duration_seconds": request.duration_seconds,
            "sample_rate": SAMPLE_RATE,
            "size_bytes": 44 + round(request.duration_seconds * SAMPLE_RATE),
        }

    @app.get("/v1/audio/stream")
    async def stream_audio(
        prompt: str = Query(min_length=1, max_length=2000),
        chunks: int = Query(8, ge=1, le=256),
        chunk_seconds: float = Query(0.25, gt=0.0, le=5.0),
    ) -> StreamingResponse:
        # Faults act before the first byte, so an error is still a clean 500/504 status.
        try:
            timeout = state.faults.get().timeout_seconds
            await asyncio.wait_for(state.faults.before_generation(), timeout)
        except asyncio.TimeoutError:
            raise HTTPException(504, "generation timed out") from None
        state.generated.labels("audio").inc(chunks * chunk_seconds)
        return StreamingResponse(
            state.generator.stream(prompt, chunks, chunk_seconds), media_type="audio/wav"
        )

    @app.post("/v1/jobs", status_code=202)
    async def create_job(request: JobRequest, background: BackgroundTasks) -> JSONResponse:
        job = Job.new(request.kind, request.prompt, request.duration_seconds)
        state.jobs.put(job)
        # Runs after the response is sent: inferwatch records it as background time, not as
        # part of the request's duration.
        background.add_task(state.run_job, job.job_id)
        return JSONResponse(
            {"job_id": job.job_id, "status": job.status, "status_url": f"/v1/jobs/{job.job_id}"},
            status_code=202,
        )

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        return _job_view(_find_job(state, job_id))

    @app.get("/v1/jobs/{job_id}/result")
    async def get_job_result(job_id: str) -> dict[str, Any]:
        job = _find_job(state, job_id)
        if job.status != "done":
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
        return state.faults.update(change)

    @app.delete("/admin/faults")
    async def reset_faults(response: Response) -> Faults:
        response.headers[WORKER_HEADER] = str(os.getpid())
        return state.faults.reset()

    instrument_app(app, registry=registry)
    return app


def _find_job(state: DemoState, job_id: str) -> Job:
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"unknown job {job_id!r}")
    return job


async def _generate_or_504(state: DemoState, kind: str, prompt: str, duration: float) -> None:
    try:
        await state.generate(kind, prompt, duration)
    except asyncio.TimeoutError:
        raise HTTPException(504, "generation timed out") from None


async def _serve_websocket(state: DemoState, websocket: WebSocket) -> None:
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
        async for chunk in state.generator.stream(
            request.prompt, request.chunks, request.chunk_seconds
        ):
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


def _env(name: str, parse: Any, default: Any) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {parse.__name__}") from None


def create_app_from_env() -> FastAPI:
    """``uvicorn --factory inferwatch.demo.app:create_app_from_env``: settings come from
    INFERWATCH_DEMO_TIME_SCALE, INFERWATCH_DEMO_SEED, INFERWATCH_DEMO_REQUEST_TIMEOUT and
    INFERWATCH_DEMO_STATE_DIR. Metrics go to the default registry (with process metrics), or
    to $PROMETHEUS_MULTIPROC_DIR when that is set."""
    return create_app(
        time_scale=_env(ENV_TIME_SCALE, float, 1.0),
        seed=_env(ENV_SEED, int, None),
        request_timeout=_env(ENV_REQUEST_TIMEOUT, float, 30.0),
        state_dir=_env(ENV_STATE_DIR, str, None),
        registry=REGISTRY,
    )
