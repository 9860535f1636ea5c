"""The demo's fake models: a catalogue, and a manager that keeps at most N of them loaded.

Loads are timed with :class:`inferwatch.ai.ModelMetrics`, phase by phase; when a request
needs a model that is not loaded and the limit is reached, the least recently used model that
no batch is using is unloaded (``reason="lru"``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from inferwatch.ai import ModelMetrics
from inferwatch.demo.faults import FaultSwitch, InjectedFault
from inferwatch.demo.generation import Generator, Kind

log = logging.getLogger("inferwatch.demo")

DEVICE = "cpu"  # the demo has no accelerator; a real service would say cuda:0
DEFAULT_MAX_MODELS = 2

# Seconds per phase at time scale 1 for a model of size 1.0; bigger models take longer.
LOAD_PHASES: tuple[tuple[str, float], ...] = (
    ("download", 1.0),
    ("deserialize", 0.5),
    ("to_device", 0.3),
    ("warmup", 0.2),
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: Kind
    version: str
    size: float  # scales the load phases


CATALOGUE: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("speech-small", "audio", "1.2.0", 1.0),
        ModelSpec("speech-large", "audio", "1.1.0", 3.0),
        ModelSpec("musicgen-small", "music", "1.0.0", 2.0),
        ModelSpec("musicgen-large", "music", "1.0.0", 6.0),
        ModelSpec("video-diffusion", "video", "0.9.1", 8.0),
    )
}
DEFAULT_MODEL: dict[str, str] = {
    "audio": "speech-small",
    "music": "musicgen-small",
    "video": "video-diffusion",
}
DEFAULT_PRELOAD = ("speech-small", "musicgen-small")


def resolve(kind: str, name: str | None) -> ModelSpec:
    """The model a request asked for (or its kind's default); ValueError if it cannot serve."""
    spec = CATALOGUE.get(name or DEFAULT_MODEL[kind])
    if spec is None:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(CATALOGUE)}")
    if spec.kind != kind:
        raise ValueError(f"model {spec.name!r} generates {spec.kind}, not {kind}")
    return spec


def check_preload(names: Iterable[str], max_loaded: int) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(names))  # drop repeats, keep order
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown models to preload: {unknown}; known: {sorted(CATALOGUE)}")
    if len(names) > max_loaded:
        raise ValueError(f"cannot preload {len(names)} models with max_loaded_models={max_loaded}")
    return names


class ModelManager:
    """Loaded models in LRU order. ``acquire``/``release`` bracket each batch, so a model in
    use is never evicted; when every loaded model is busy, a load waits for a release."""

    def __init__(
        self,
        metrics: ModelMetrics,
        faults: FaultSwitch,
        generator: Generator,
        max_loaded: int = DEFAULT_MAX_MODELS,
    ) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded_models must be at least 1, got {max_loaded}")
        self.metrics = metrics
        self.faults = faults
        self.generator = generator
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, None] = OrderedDict()  # first = least recently used
        self._users: Counter[str] = Counter()
        # One condition for everything: loads are serialised, as on one accelerator.
        self._changed = asyncio.Condition()

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    async def preload(self, names: Iterable[str]) -> None:
        for name in names:
            await self.acquire(name)
            await self.release(name)

    async def acquire(self, name: str) -> ModelSpec:
        """Load ``name`` if needed (evicting the LRU idle model) and mark it in use."""
        spec = CATALOGUE[name]
        async with self._changed:
            while name not in self._loaded:
                if len(self._loaded) < self.max_loaded:
                    await self._load(spec)
                    break
                idle = next((m for m in self._loaded if self._users[m] == 0), None)
                if idle is None:
                    await self._changed.wait()
                    continue
                del self._loaded[idle]
                self.metrics.unloaded(idle, reason="lru", device=DEVICE)
                log.info("unloaded model %s (least recently used)", idle)
            self._loaded.move_to_end(name)
            self._users[name] += 1
        return spec

    async def release(self, name: str) -> None:
        async with self._changed:
            self._users[name] -= 1
            self._changed.notify_all()

    async def _load(self, spec: ModelSpec) -> None:
        faults = self.faults.get()
        with self.metrics.loading(spec.name, version=spec.version, device=DEVICE) as load:
            for phase, seconds in LOAD_PHASES:
                async with load.phase(phase):
                    await self.generator.sleep(seconds * spec.size)
                    if phase == "deserialize" and self.faults.fires(faults.model_load_failure_rate):
                        raise InjectedFault("injected model load failure (model_load_failure_rate)")
                    if phase == "warmup" and faults.model_init_delay_seconds:
                        await asyncio.sleep(faults.model_init_delay_seconds)  # wall clock
        self._loaded[spec.name] = None
        log.info("loaded model %s %s on %s", spec.name, spec.version, DEVICE)
