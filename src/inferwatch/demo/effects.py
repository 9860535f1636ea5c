"""Applies the faults that are states rather than per-request events.

Every worker runs :meth:`FaultEffects.run`, which re-reads the faults a few times a second:
with several workers the faults live in a shared file, so this is how a change made through
one worker reaches the others. ``PUT /admin/faults`` also applies them at once in the worker
that served it, so the fault is in force when the answer arrives.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client.registry import CollectorRegistry

from inferwatch.demo.cache import ConditioningCache
from inferwatch.demo.database import Database
from inferwatch.demo.faults import Faults, FaultSwitch
from inferwatch.demo.leak import MemoryLeak
from inferwatch.metrics import Gauge
from inferwatch.metrics.shared import once_per_registry

log = logging.getLogger("inferwatch.demo")
INTERVAL = 0.1  # seconds between applications; also the leak's allocation step


def _leak_gauge(registry: CollectorRegistry | None) -> Gauge:
    return once_per_registry(
        registry,
        "demo_memory_leak",
        lambda: Gauge(
            "demo_memory_leaked_bytes",
            "Memory held by the demo's memory_leak_mb_per_second fault.",
            registry=registry,
            multiprocess_mode="livesum",
        ),
    )


class FaultEffects:
    def __init__(
        self,
        faults: FaultSwitch,
        database: Database,
        cache: ConditioningCache,
        registry: CollectorRegistry | None,
    ) -> None:
        self.faults = faults
        self.database = database
        self.cache = cache
        self.leak = MemoryLeak()
        self.leaked = _leak_gauge(registry)
        self._lock = asyncio.Lock()  # the loop and an admin request must not interleave
        self._failing = False

    async def apply(self, faults: Faults, elapsed: float = 0.0) -> None:
        async with self._lock:
            self.leak.advance(faults.memory_leak_mb_per_second, elapsed)
            self.leaked.labels().set(self.leak.leaked)
            await self.cache.apply_fault(faults.cold_cache)
            if faults.pool_exhaustion:
                await self.database.hold_connections()
            else:
                await self.database.release_connections()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(INTERVAL)
            now = loop.time()
            try:
                await self.apply(self.faults.get(), now - last)
                self._failing = False
            except Exception as exc:  # a database that is down: try again next time
                if not self._failing:
                    log.warning("cannot apply the demo's faults: %s", type(exc).__name__)
                self._failing = True
            last = now
