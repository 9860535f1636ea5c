"""The demo's generation pipeline and the resources it runs on.

One generation: a row in the database, then (under the request deadline) preprocess
(faults, the cached prompt conditioning), the priority queue, a batch on the model, and
postprocess; each stage timed by :class:`inferwatch.ai.InferenceMetrics`.

A job (``POST /v1/jobs``) runs three steps, recorded by :class:`inferwatch.ai.JobMetrics`: a
script from the LLM of the model service, the render (one generation), and its narration by
the model service's TTS. Both calls go through :class:`inferwatch.ai.Upstream` (retries,
circuit breaker); when either fails for good the job still delivers its render, ``partial``.
The model service is the ``upstream_url`` setting, else a process the demo starts itself
(:mod:`inferwatch.demo.upstream`), one per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import exc as sa_exc

from inferwatch.ai import (
    CircuitBreaker,
    InferenceMetrics,
    JobMetrics,
    JobRun,
    ModelMetrics,
    RedisBackend,
    Upstream,
)
from inferwatch.demo.cache import ConditioningCache
from inferwatch.demo.database import Database, engine_url
from inferwatch.demo.effects import FaultEffects
from inferwatch.demo.faults import Faults, FaultSwitch, InjectedFault
from inferwatch.demo.generation import POSTPROCESS, SAMPLE_RATE, Generator
from inferwatch.demo.jobs import Job, JobLeak
from inferwatch.demo.models import DEFAULT_MODEL, ModelManager, ModelSpec
from inferwatch.demo.scheduler import PRIORITIES, QueueFull, Scheduler
from inferwatch.demo.settings import Settings
from inferwatch.demo.upstream import UpstreamProcess
from inferwatch.metrics import Counter
from inferwatch.metrics.shared import once_per_registry

log = logging.getLogger("inferwatch.demo")

VIDEO_BYTES_PER_SECOND = 250_000  # what a compressed 720p clip roughly weighs
VIDEO_FPS = 24
CACHE_POOL = "demo-cache"
CACHE_PREFIX = "inferwatch-demo:conditioning:"
CACHE_TTL = 3600.0
UPSTREAM_TIMEOUT = 5.0  # seconds per attempt at the model service
BREAKER_FAILURES = 5
BREAKER_RESET = 30.0  # model seconds the breaker stays open, scaled by the time scale
SCRIPT_TOKENS = 64


def _media_counter(registry: CollectorRegistry | None) -> Counter:
    # Once per registry: two demo apps sharing a registry must not register it twice.
    return once_per_registry(
        registry,
        "demo_generated_media",
        lambda: Counter(
            "demo_generated_media_seconds_total",
            "Seconds of audio, music or video the demo service generated.",
            ("kind",),
            registry=registry,
        ),
    )


def result_size(kind: str, duration: float) -> int:
    if kind == "video":
        return round(duration * VIDEO_BYTES_PER_SECOND)
    return 44 + round(duration * SAMPLE_RATE)  # WAV header + 8-bit samples


def produced(kind: str, duration: float) -> tuple[float, str]:
    """What a generation adds to ``inferwatch_inference_output_units_total``."""
    return (duration * VIDEO_FPS, "frames") if kind == "video" else (duration, "audio_seconds")


@contextlib.asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    """A database that cannot serve is the service's trouble, not the client's: 503."""
    try:
        yield
    except sa_exc.TimeoutError:
        raise HTTPException(
            503, "database busy: no connection free within the pool timeout"
        ) from None
    except (sa_exc.DBAPIError, OSError) as exc:
        log.warning("database unavailable: %s", type(exc).__name__)  # never the URL
        raise HTTPException(503, "database unavailable") from None


def redis_client(url: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Short timeouts and no retries: a cache that is down must cost a request little.
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=8,
        timeout=1.0,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    return redis.Redis(connection_pool=pool)


class DemoService:
    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.registry = registry
        rng = random.Random(settings.seed)
        defaults = Faults(timeout_seconds=settings.request_timeout)
        path = settings.state_dir / "faults.json" if settings.state_dir else None
        self.faults = FaultSwitch(defaults, rng=rng, path=path)
        self.generator = Generator(settings.time_scale, rng)
        self.infer = InferenceMetrics(registry)
        self.models = ModelManager(
            ModelMetrics(registry), self.faults, self.generator, settings.max_models
        )
        self.scheduler = Scheduler(
            self.models,
            self.generator,
            self.infer,
            max_batch_size=settings.max_batch_size,
            batch_window=settings.batch_window,
            max_queue=settings.max_queue,
        )
        self.generated = _media_counter(registry)
        self.job_slots = asyncio.Semaphore(settings.max_concurrent_jobs)
        self.stream = self.infer.track(DEFAULT_MODEL["audio"])(self.generator.stream)
        self.jobs = JobMetrics(registry)
        self.job_leak = JobLeak()
        reset = max(0.5, BREAKER_RESET * settings.time_scale)
        self.llm, self.tts = (
            Upstream(peer, registry, breaker=CircuitBreaker(BREAKER_FAILURES, reset, name=peer))
            for peer in ("llm", "tts")
        )
        self._script = self.llm.retrying(self._script_once)
        self._narrate = self.tts.retrying(self._narrate_once)
        self._upstream: dict[str, Any] = {}  # httpx clients: llm, tts, admin
        self._upstream_faults: dict[str, Any] | None = None  # last passed on
        self._db: Database | None = None
        self._cache: ConditioningCache | None = None
        self._effects: FaultEffects | None = None
        self._stack = contextlib.AsyncExitStack()

    # -- resources --------------------------------------------------------------------------
    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("the demo service has not started")
        return self._db

    @property
    def cache(self) -> ConditioningCache:
        if self._cache is None:
            raise RuntimeError("the demo service has not started")
        return self._cache

    async def start(self) -> None:
        s, stack = self.settings, self._stack
        state_dir = s.state_dir
        if state_dir is None:
            state_dir = Path(tempfile.mkdtemp(prefix="inferwatch-demo-db-"))
            stack.callback(shutil.rmtree, state_dir, ignore_errors=True)
        self._db = Database(
            engine_url(s.postgres_url, state_dir),
            registry=self.registry,
            pool_size=s.db_pool_size,
            pool_timeout=s.db_pool_timeout,
            max_rows=s.max_jobs,
        )
        stack.push_async_callback(self._db.close)
        await self._db.create_tables()
        backend = None
        if s.redis_url:
            from inferwatch.pools import instrument_redis

            client = redis_client(s.redis_url)
            stack.callback(client.close)
            instrument_redis(client, pool_name=CACHE_POOL, registry=self.registry)
            backend = RedisBackend(
                client, prefix=CACHE_PREFIX, ttl=CACHE_TTL, registry=self.registry
            )
        self._cache = ConditioningCache(backend, self.generator, self.faults, self.registry)
        for priority in PRIORITIES:  # present at 0 from the start, not only once used
            self.infer.queue_depth(priority).set(0)
        await self.models.preload(s.preload)
        stack.push_async_callback(self.scheduler.stop)
        self._effects = FaultEffects(self.faults, self._db, self._cache, self.registry)
        await self._effects.apply(self.faults.get())
        effects = asyncio.create_task(self._effects.run())
        stack.push_async_callback(_cancel, effects)
        await self._start_upstream()

    async def _start_upstream(self) -> None:
        import httpx

        s, stack = self.settings, self._stack
        url = s.upstream_url
        if url is None:
            process = UpstreamProcess(seed=s.seed, time_scale=s.time_scale)
            try:
                url = await asyncio.to_thread(process.start)
            except (OSError, RuntimeError) as exc:  # jobs then run without their upstream steps
                log.warning("model service not started: %s", exc)
                return
            stack.callback(process.stop)
        limits = httpx.Limits(max_connections=32)
        for name, transport in (
            ("llm", self.llm.async_transport()),
            ("tts", self.tts.async_transport()),
            ("admin", None),  # fault settings: not a model call, so not instrumented
        ):
            client = httpx.AsyncClient(
                base_url=url, transport=transport, timeout=UPSTREAM_TIMEOUT, limits=limits
            )
            stack.push_async_callback(client.aclose)
            self._upstream[name] = client
        await self._pass_on_faults()

    async def stop(self) -> None:
        await self._stack.aclose()

    async def apply_faults(self, faults: Faults) -> None:
        if self._effects is not None:
            await self._effects.apply(faults)
        await self._pass_on_faults()

    # -- the model service ------------------------------------------------------------------
    async def _pass_on_faults(self) -> None:
        """Hand the upstream faults to the model service when they changed (each worker
        before its next call there, so a change made through any worker reaches all)."""
        admin = self._upstream.get("admin")
        faults = self.faults.get()
        wanted = {"failure_rate": faults.upstream_failure_rate, "outage": faults.upstream_outage}
        if admin is None or wanted == self._upstream_faults:
            return
        try:
            (await admin.put("/admin/faults", json=wanted)).raise_for_status()
        except Exception as exc:  # the next call tries again
            log.warning("model service faults not set: %s", type(exc).__name__)
            return
        self._upstream_faults = wanted

    def _client(self, name: str) -> Any:
        client = self._upstream.get(name)
        if client is None:
            raise RuntimeError("no model service")
        return client

    async def _script_once(self, prompt: str) -> str:
        await self._pass_on_faults()
        body = {"prompt": prompt, "max_tokens": SCRIPT_TOKENS}
        response = await self._client("llm").post("/v1/completions", json=body)
        response.raise_for_status()
        return str(response.json()["text"])

    async def _narrate_once(self, text: str) -> int:
        await self._pass_on_faults()
        response = await self._client("tts").post("/v1/speech", json={"text": text[:4000]})
        response.raise_for_status()
        return len(response.content)

    # -- generation -------------------------------------------------------------------------
    async def generate(
        self, spec: ModelSpec, prompt: str, duration: float, priority: str, batch_size: int = 1
    ) -> None:
        """One generation of ``batch_size`` takes, run in one batch, under the request deadline
        (TimeoutError past it); QueueFull when too many requests are waiting; InjectedFault
        when a fault fires."""
        try:
            admission = self.scheduler.admit()
        except QueueFull:
            self.infer.rejected(spec.name)
            raise
        try:
            async with self.infer.request(spec.name) as req:
                timeout = self.faults.get().timeout_seconds
                pipeline = self._pipeline(
                    req, spec, prompt, duration, priority, admission, batch_size
                )
                await asyncio.wait_for(pipeline, timeout)
                req.produced(*produced(spec.kind, duration * batch_size))
        finally:
            admission.release()
        self.generated.labels(spec.kind).inc(duration * batch_size)

    async def _pipeline(
        self,
        req: Any,
        spec: ModelSpec,
        prompt: str,
        duration: float,
        priority: str,
        admission: Any,
        batch_size: int = 1,
    ) -> None:
        async with req.stage("preprocess"):
            await self.faults.before_generation()
            await self.cache.conditioning(spec.name, prompt)
        ticket = self.scheduler.submit(spec.name, duration, priority, batch_size)
        try:
            async with req.queued(priority):
                await ticket.picked
        finally:
            admission.release()  # no longer waiting: it runs, or it is gone
            self.scheduler.withdraw(spec.name, ticket)
        async with req.stage("inference"):
            await ticket.done
        async with req.stage("postprocess"):
            await self.generator.work(POSTPROCESS, duration)

    async def generate_now(
        self, spec: ModelSpec, prompt: str, duration: float, priority: str, batch_size: int = 1
    ) -> Job:
        """A synchronous generation (of ``batch_size`` takes), recorded in the database as it
        starts and ends."""
        job = Job.new(spec.kind, spec.name, duration, priority, status="running")
        async with database_errors():
            await self.db.insert(job)  # first: a busy database refuses before any model work
        try:
            await self.generate(spec, prompt, duration, priority, batch_size)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self.db.update(job.job_id, status="failed", error=_reason(exc)[:500],
                                     finished_at=time.time())  # fmt: skip
            raise
        async with database_errors():
            await self.db.update(
                job.job_id,
                status="done",
                finished_at=time.time(),
                result_bytes=result_size(spec.kind, duration) * batch_size,
            )
        return job

    # -- jobs -------------------------------------------------------------------------------
    async def create_job(self, spec: ModelSpec, duration: float, priority: str) -> Job:
        job = Job.new(spec.kind, spec.name, duration, priority)
        async with database_errors():
            await self.db.insert(job)
        return job

    async def get_job(self, job_id: str) -> Job | None:
        async with database_errors():
            return await self.db.get(job_id)

    async def run_job(self, job: Job, spec: ModelSpec, prompt: str) -> None:
        """A background task: errors end up in the job's row, never in a response."""
        # Beyond max_concurrent_jobs, jobs wait "queued", as on a real GPU.
        async with self.job_slots:
            update: dict[str, Any]
            failed: list[str] = []
            # The job's metrics are recorded before its row says it ended, so whoever sees
            # the end in the row finds it in a scrape too.
            async with self.jobs.job(spec.kind) as run:
                try:
                    await self.db.update(job.job_id, status="running", started_at=time.time())
                    # Inside the job: its end's resident memory includes what it kept.
                    self.job_leak.job_ran(self.faults.get().job_leak_mb)
                    script = await _optional(run, "script", self._script(prompt), failed)
                    with run.step("render"):
                        await self.generate(spec, prompt, job.duration_seconds, job.priority)
                    await _optional(run, "narration", self._narrate(script or prompt), failed)
                except Exception as exc:
                    run.set_outcome("failed")
                    update = {"status": "failed", "error": _reason(exc)[:500]}
                else:
                    size = result_size(spec.kind, job.duration_seconds)
                    update = {"status": "partial" if failed else "done", "result_bytes": size}
                    if failed:
                        update["error"] = f"partial: {', '.join(failed)} failed"
            update["finished_at"] = time.time()
            try:
                await self.db.update(job.job_id, **update)
            except Exception as exc:
                log.warning("job %s: cannot record its end: %s", job.job_id, type(exc).__name__)


async def _optional(run: JobRun, step: str, work: Any, failed: list[str]) -> Any:
    """Run a step the job can do without: its failure is recorded and the job goes on."""
    try:
        with run.step(step):
            return await work
    except Exception as exc:
        log.debug("job step %s failed: %s", step, type(exc).__name__)
        failed.append(step)
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InjectedFault):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "generation timed out"
    if isinstance(exc, QueueFull):
        return "rejected: the queue is full"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return f"failed: {type(exc).__name__}"


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
