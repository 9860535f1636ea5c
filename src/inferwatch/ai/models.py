"""Model lifecycle: how long loads take (and which phase), how they fail, what is loaded on
which device, and why models leave memory."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai import buckets
from inferwatch.ai._shared import Span, state_for, wrap_callable
from inferwatch.ai.outcomes import CANCELLED, OOM, TIMEOUT, classify
from inferwatch.metrics import Counter, Gauge, Histogram, multiprocess

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_MODELS = 50
UNKNOWN = "unknown"
NO_PHASE = "none"


class ModelSet:
    """The model metrics of one registry, and which models it currently counts as loaded."""

    def __init__(self, registry: CollectorRegistry | None, load_buckets: Sequence[float]) -> None:
        r = registry
        self.load_duration = Histogram(
            "inferwatch_model_load_duration_seconds",
            "Time to load and initialize a model, by outcome (success or failure).",
            ("model", "outcome"), buckets=load_buckets, registry=r, unit="seconds",
        )  # fmt: skip
        self.phase_duration = Histogram(
            "inferwatch_model_load_phase_duration_seconds",
            "Time spent in one phase of a model load (download, deserialize, to_device, "
            "warmup, ...), whether or not the load succeeded.",
            ("model", "phase"), buckets=load_buckets, registry=r, unit="seconds",
        )  # fmt: skip
        self.load_failures = Counter(
            "inferwatch_model_load_failures_total",
            "Failed model loads, by the phase that failed (none: outside any phase) and "
            "reason (oom, timeout, cancelled or error).",
            ("model", "phase", "reason"), registry=r,
        )  # fmt: skip
        self.loaded = Gauge(
            "inferwatch_model_loaded",
            "Models currently loaded, by version and device (1 per loaded copy; summed over "
            "worker processes).",
            ("model", "version", "device"), registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.unloads = Counter(
            "inferwatch_model_unloads_total",
            "Models unloaded or evicted, by reason (lru, idle, manual, oom, ...).",
            ("model", "reason"), registry=r,
        )  # fmt: skip
        self.last_load = Gauge(
            "inferwatch_model_last_load_timestamp_seconds",
            "Unix time of the last successful load of the model.",
            ("model",), registry=r, multiprocess_mode="max", unit="seconds",
        )  # fmt: skip
        self._lock = threading.Lock()
        # (model, device) -> (version, label values): a model holds one version per device.
        self._placed: dict[tuple[str, str], tuple[str, tuple[str, str, str]]] = {}
        self._copies: dict[tuple[str, str, str], int] = {}
        # prometheus_client cannot remove a series in multiprocess mode; there it stays at 0.
        self._drop_zero = not multiprocess.enabled()

    def mark_loaded(self, model: str, version: str, device: str, labels: tuple[str, ...]) -> None:
        with self._lock:
            old = self._placed.get((model, device))
            if old is not None and old[0] == version:
                return  # a reload of what is already there
            if old is not None:
                self._add_copies(old[1], -1)
            self._placed[(model, device)] = (version, (labels[0], labels[1], labels[2]))
            self._add_copies(self._placed[(model, device)][1], 1)

    def mark_unloaded(self, model: str, device: str | None) -> None:
        with self._lock:
            for key in [k for k in self._placed if k[0] == model and device in (None, k[1])]:
                self._add_copies(self._placed.pop(key)[1], -1)

    def _add_copies(self, labels: tuple[str, str, str], delta: int) -> None:
        # Counted here rather than with inc/dec on the gauge so the gauge can be removed
        # exactly when it reaches 0 (several models may share the `_OTHER` series).
        n = self._copies.get(labels, 0) + delta
        if n > 0:
            self._copies[labels] = n
            self.loaded.labels(*labels).set(n)
            return
        self._copies.pop(labels, None)
        self.loaded.labels(*labels).set(0)
        if self._drop_zero:
            self.loaded.remove(*labels)


def model_set(
    registry: CollectorRegistry | None, load_buckets: Sequence[float] = buckets.MODEL_LOAD_SECONDS
) -> ModelSet:
    """The registry's one set of model metrics, created on first use."""
    return state_for(registry).metric_set(
        "model", tuple(load_buckets), lambda r: ModelSet(r, load_buckets)
    )


class ModelMetrics:
    """Records model loads and unloads into ``registry``.

    ``allowed_models`` (an allow-list) or ``max_models`` (a cap, default 50) bound the
    ``model`` label of every AI metric in the registry; other models are reported as
    ``_OTHER``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        allowed_models: Iterable[str] | None = None,
        max_models: int | None = None,
        load_buckets: Sequence[float] = buckets.MODEL_LOAD_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._state = state = state_for(registry)
        self._metrics = model_set(registry, load_buckets)
        self._model = state.bound("model", allowed_models, max_models, DEFAULT_MAX_MODELS)
        self._version = state.bound("version")
        self._device = state.bound("device")
        self._phase = state.bound("phase")
        self._reason = state.bound("reason")
        self._clock = clock

    def loading(self, model: str, *, version: str = UNKNOWN, device: str = UNKNOWN) -> ModelLoad:
        """Time a model load: ``with models.loading("bark", device="cuda:0") as load: ...``."""
        return ModelLoad(self, model, version, device)

    def track(
        self, model: str, *, version: str = UNKNOWN, device: str = UNKNOWN
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`loading` for a sync or async loader function."""
        where = {"version": version, "device": device}

        def decorate(fn: F) -> F:
            return cast(F, wrap_callable(fn, functools.partial(self.loading, model, **where)))

        return decorate

    def unloaded(self, model: str, *, reason: str = "manual", device: str | None = None) -> None:
        """Record that ``model`` left memory (on ``device``, or on every device)."""
        try:
            m = self._metrics
            m.unloads.labels(self._model(model), self._reason(reason)).inc()
            m.mark_unloaded(str(model), None if device is None else str(device))
        except Exception as exc:
            self._state.error("ai.models.unload", exc)


def _failure_reason(exc: BaseException) -> str:
    outcome = classify(exc)
    return outcome if outcome in (OOM, TIMEOUT, CANCELLED) else "error"


class ModelLoad(Span):
    """One model load in progress; :meth:`phase` times its parts."""

    def __init__(self, owner: ModelMetrics, model: str, version: str, device: str) -> None:
        self._owner = owner
        self._raw = (model, version, device)
        self._labels: tuple[str, str, str] | None = None
        self._start: float | None = None
        self.failed_phase: str | None = None

    def phase(self, name: str) -> LoadPhase:
        """Time one phase: ``with load.phase("download"): ...`` (also ``async with``)."""
        return LoadPhase(self, name)

    def _begin(self) -> None:
        try:
            o = self._owner
            model, version, device = self._raw
            self._labels = (o._model(model), o._version(version), o._device(device))
            self._start = o._clock()
        except Exception as exc:
            self._owner._state.error("ai.models.load", exc)

    def _end(self, exc: BaseException | None) -> None:
        try:
            o = self._owner
            m = o._metrics
            if self._labels is None or self._start is None:
                return  # _begin failed and was reported
            elapsed = o._clock() - self._start
            model = self._labels[0]
            if exc is None:
                m.load_duration.labels(model, "success").observe(elapsed)
                m.mark_loaded(str(self._raw[0]), str(self._raw[1]), str(self._raw[2]), self._labels)
                m.last_load.labels(model).set(time.time())
            else:
                m.load_duration.labels(model, "failure").observe(elapsed)
                phase = self.failed_phase or NO_PHASE
                m.load_failures.labels(model, phase, _failure_reason(exc)).inc()
        except Exception as err:
            self._owner._state.error("ai.models.load", err)


class LoadPhase(Span):
    def __init__(self, load: ModelLoad, name: str) -> None:
        self._load = load
        self._name = name
        self._label: str | None = None
        self._start: float | None = None

    def _begin(self) -> None:
        try:
            self._label = self._load._owner._phase(self._name)
            self._start = self._load._owner._clock()
        except Exception as exc:
            self._load._owner._state.error("ai.models.phase", exc)

    def _end(self, exc: BaseException | None) -> None:
        load = self._load
        try:
            if exc is not None and load.failed_phase is None:
                load.failed_phase = self._label or NO_PHASE  # the innermost phase that failed
            if self._label is None or self._start is None:
                return  # _begin failed and was reported
            elapsed = load._owner._clock() - self._start
            model = load._labels[0] if load._labels else load._owner._model(load._raw[0])
            load._owner._metrics.phase_duration.labels(model, self._label).observe(elapsed)
        except Exception as err:
            load._owner._state.error("ai.models.phase", err)
