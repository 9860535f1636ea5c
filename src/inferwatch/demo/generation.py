"""Fake generation: request bodies, how long a "model" takes, and the audio it returns."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["audio", "music", "video"]
Priority = Literal["high", "normal", "low"]

SAMPLE_RATE = 8000  # 8-bit mono at 8 kHz keeps payloads small: 8 kB per second of audio
MAX_REQUEST_BATCH = 64  # inputs one request may carry (its ``batch_size``)


@dataclass(frozen=True)
class CostModel:
    """Seconds of work for a request: ``base + per_second * duration + U(0, jitter)``."""

    base: float
    per_second: float
    jitter: float

    def seconds(self, duration: float, rng: random.Random) -> float:
        return self.base + self.per_second * duration + rng.uniform(0.0, self.jitter)


# Rough shapes of real models at time scale 1: speech is faster than real time, music about
# four times faster, video slower than real time.
COSTS: dict[str, CostModel] = {
    "audio": CostModel(base=0.2, per_second=0.05, jitter=0.1),
    "music": CostModel(base=0.5, per_second=0.25, jitter=0.3),
    "video": CostModel(base=2.0, per_second=1.0, jitter=1.0),
}
# Batching amortises the fixed cost: each extra request in a batch adds this share of one.
BATCH_OVERHEAD = 0.2
CONDITIONING = CostModel(base=0.1, per_second=0.0, jitter=0.05)  # encode the prompt (cached)
POSTPROCESS = CostModel(base=0.02, per_second=0.005, jitter=0.01)  # encode the output
STREAM_WARMUP = CostModel(base=0.3, per_second=0.0, jitter=0.1)  # before the first chunk
STREAM_CHUNK = CostModel(base=0.05, per_second=0.1, jitter=0.02)  # per chunk of audio


class ScheduledRequest(BaseModel):
    """What every generation request may add: which model, and its place in the queue."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, min_length=1, max_length=64)
    priority: Priority = "normal"

    def request_kind(self) -> str:
        raise NotImplementedError

    @model_validator(mode="after")
    def _known_model(self) -> ScheduledRequest:
        from inferwatch.demo.models import resolve  # models imports this module

        resolve(self.request_kind(), self.model)  # ValueError: a 422 naming the model
        return self


class BatchedRequest(ScheduledRequest):
    """A synchronous generation of ``batch_size`` takes of one prompt, which the model runs
    together in one batch: a client-side batch, so that throughput can be measured against
    batch size (the batch metrics record it as that many requests)."""

    batch_size: int = Field(1, ge=1, le=MAX_REQUEST_BATCH)


class AudioRequest(BatchedRequest):
    prompt: str = Field(min_length=1, max_length=2000)
    duration_seconds: float = Field(gt=0.0, le=30.0)
    voice: str = Field("default", min_length=1, max_length=64)

    def request_kind(self) -> str:
        return "audio"


class MusicRequest(BatchedRequest):
    prompt: str = Field(min_length=1, max_length=2000)
    duration_seconds: float = Field(gt=0.0, le=300.0)
    bpm: int = Field(120, ge=40, le=240)
    genre: str = Field("ambient", min_length=1, max_length=64)

    def request_kind(self) -> str:
        return "music"


class JobRequest(ScheduledRequest):
    kind: Kind
    prompt: str = Field(min_length=1, max_length=2000)
    duration_seconds: float = Field(gt=0.0, le=600.0)

    def request_kind(self) -> str:
        return self.kind


class StreamRequest(BaseModel):
    """A WebSocket generation request (the first message a client sends)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000)
    chunks: int = Field(4, ge=1, le=64)
    chunk_seconds: float = Field(0.5, gt=0.0, le=5.0)


class Generator:
    """Sleeps like a model would, scaled by ``time_scale`` so tests can run at 1/100 speed."""

    def __init__(self, time_scale: float, rng: random.Random) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.time_scale = time_scale
        self.rng = rng

    async def sleep(self, model_seconds: float) -> None:
        await asyncio.sleep(model_seconds * self.time_scale)

    async def work(self, cost: CostModel, duration: float = 0.0) -> None:
        await self.sleep(cost.seconds(duration, self.rng))

    async def generate_batch(self, kind: str, durations: list[float]) -> None:
        """One forward pass for a whole batch: as long as its longest item, plus overhead."""
        seconds = COSTS[kind].seconds(max(durations), self.rng)
        await self.sleep(seconds * (1 + BATCH_OVERHEAD * (len(durations) - 1)))

    async def conditioning(self, model: str, prompt: str) -> list[float]:
        """A fake prompt embedding: eight numbers derived from the model and prompt."""
        await self.work(CONDITIONING)
        digest = hashlib.sha256(f"{model}\0{prompt}".encode()).digest()
        return [round(b / 255, 4) for b in digest[:8]]

    async def stream(self, prompt: str, chunks: int, chunk_seconds: float) -> AsyncIterator[bytes]:
        """A WAV header with the first chunk, then the rest as the "model" produces them."""
        chunk = tone(prompt, chunk_seconds)
        await self.work(STREAM_WARMUP)
        yield wav_header(len(chunk) * chunks) + chunk
        for _ in range(chunks - 1):
            await self.work(STREAM_CHUNK, chunk_seconds)
            yield chunk


def tone(prompt: str, seconds: float) -> bytes:
    """Unsigned 8-bit samples of a sine whose pitch depends on the prompt."""
    pitch = 220 + int(hashlib.sha256(prompt.encode()).hexdigest()[:4], 16) % 440
    period = max(2, SAMPLE_RATE // pitch)
    cycle = bytes(128 + int(100 * math.sin(2 * math.pi * i / period)) for i in range(period))
    samples = max(1, round(seconds * SAMPLE_RATE))
    return (cycle * (samples // period + 1))[:samples]


def wav_header(data_size: int) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE, 1, 8)
        + b"data"
        + struct.pack("<I", data_size)
    )


def wav(prompt: str, seconds: float) -> bytes:
    samples = tone(prompt, seconds)
    return wav_header(len(samples)) + samples
