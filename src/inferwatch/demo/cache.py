"""The conditioning cache: prompt embeddings by model and prompt, in memory or in Redis.

Encoding a prompt is the part of a generation that repeats exactly for a repeated prompt,
so that is what a real service caches. Keys hold a hash of the prompt, never its text.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client.registry import CollectorRegistry

from inferwatch.ai import MISSING, CacheBackend, InstrumentedCache, MemoryBackend
from inferwatch.demo.faults import FaultSwitch
from inferwatch.demo.generation import Generator

T = TypeVar("T")
CACHE_NAME = "demo-conditioning"
MAX_ENTRIES = 1024


class ConditioningCache:
    """``cold_cache`` fault: switching it on empties the cache; while on, nothing is read or
    stored, so every lookup is a miss (as if the cache had just been flushed, again and again).
    """

    def __init__(
        self,
        backend: CacheBackend | None,
        generator: Generator,
        faults: FaultSwitch,
        registry: CollectorRegistry | None,
    ) -> None:
        backend = backend if backend is not None else MemoryBackend(MAX_ENTRIES)
        self.cache = InstrumentedCache(CACHE_NAME, backend=backend, registry=registry)
        self.generator = generator
        self.faults = faults
        # A remote backend blocks on the network: keep its calls off the event loop.
        self._remote = not isinstance(backend, MemoryBackend)
        self._cold = False

    async def conditioning(self, model: str, prompt: str) -> list[float]:
        await self.apply_fault(self.faults.get().cold_cache)
        key = f"{model}:{hashlib.sha256(prompt.encode()).hexdigest()}"
        if self._cold:
            self.cache.metrics.miss()
            found = MISSING
        else:
            found = await self._call(self.cache.get, key, MISSING)
        if found is not MISSING:
            return list(found)
        async with self.cache.metrics.loading():
            value = await self.generator.conditioning(model, prompt)
        if not self._cold:
            await self._call(self.cache.put, key, value)
        return value

    async def apply_fault(self, cold: bool) -> None:
        if cold and not self._cold:
            await self._call(self.cache.clear)
        self._cold = cold

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._remote:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)
