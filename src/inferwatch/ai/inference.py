"""Inference requests: duration by outcome and stage, time to first chunk, output produced,
requests in flight, queue depth and batching."""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai import buckets
from inferwatch.ai._shared import ByLabel, Span, state_for, wrap_callable
from inferwatch.ai.labels import BoundedLabel
from inferwatch.ai.models import DEFAULT_MAX_MODELS
from inferwatch.ai.outcomes import (
    CANCELLED,
    OUTCOMES,
    REJECTED,
    SUCCESS,
    OutcomeHook,
    classify,
)
from inferwatch.ai.outcomes import validate_hook as _validate_hook
from inferwatch.metrics import Counter, CounterChild, Gauge, GaugeChild, Histogram, HistogramChild

F = TypeVar("F", bound=Callable[..., Any])

NO_STAGE = "none"
DEFAULT_PRIORITY = "default"


class InferenceSet:
    """The inference, queue and batch metrics of one registry."""

    def __init__(
        self, registry: CollectorRegistry | None, duration_buckets: Sequence[float]
    ) -> None:
        r = registry
        self.requests = Counter(
            "inferwatch_inference_requests_total",
            "Inference requests by outcome (success, client_error, server_error, timeout, "
            "cancelled, rejected, oom), including requests rejected before they ran.",
            ("model", "outcome"), registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "inferwatch_inference_request_duration_seconds",
            "Duration of inference requests that ran, from start to the last output, by "
            "outcome.",
            ("model", "outcome"), buckets=duration_buckets, registry=r, unit="seconds",
        )  # fmt: skip
        self.stage_duration = Histogram(
            "inferwatch_inference_stage_duration_seconds",
            "Time inference requests spent in each stage (queue, preprocess, inference, "
            "postprocess, ...).",
            ("model", "stage"), buckets=duration_buckets, registry=r, unit="seconds",
        )  # fmt: skip
        self.first_chunk = Histogram(
            "inferwatch_inference_time_to_first_chunk_seconds",
            "For streamed output: time from the start of the request to its first chunk.",
            ("model",), buckets=buckets.FIRST_CHUNK_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self.output = Counter(
            "inferwatch_inference_output_units_total",
            "Output produced by inference, by unit (tokens, audio_seconds, frames, ...).",
            ("model", "unit"), registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "inferwatch_inference_requests_in_flight",
            "Inference requests currently running.",
            ("model",), registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.cancellations = Counter(
            "inferwatch_inference_cancellations_total",
            "Inference requests cancelled, by the stage they were in (none: outside any "
            "stage); cancelled while queued means the client gave up waiting.",
            ("model", "stage"), registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "inferwatch_queue_depth",
            "Requests waiting in the inference queue, by priority.",
            ("priority",), registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.batch_size = Histogram(
            "inferwatch_batch_requests",
            "Number of requests in each batch run by the model.",
            ("model",), buckets=buckets.BATCH_SIZE, registry=r,
        )  # fmt: skip
        self.batch_wait = Histogram(
            "inferwatch_batch_wait_seconds",
            "How long a batch waited to fill before it ran.",
            ("model",), buckets=buckets.BATCH_WAIT_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self._lock = threading.Lock()
        self._models: ByLabel[ModelChildren] | None = None
        self._queues: ByLabel[GaugeChild] | None = None

    def models(
        self, model: BoundedLabel, stage: BoundedLabel, unit: BoundedLabel
    ) -> ByLabel[ModelChildren]:
        """The children of each model label, built with the first facade's bounds: the
        registry's (one per label, see RegistryState.bound), or for an unregistered set, the
        one facade's."""
        found = self._models
        if found is None:
            with self._lock:
                if self._models is None:
                    self._models = ByLabel(
                        model, lambda label: ModelChildren(self, label, stage, unit)
                    )
                found = self._models
        return found

    def queues(self, priority: BoundedLabel) -> ByLabel[GaugeChild]:
        """The queue depth child of each priority label."""
        found = self._queues
        if found is None:
            with self._lock:
                if self._queues is None:
                    self._queues = ByLabel(priority, self.queue_depth.labels)
                found = self._queues
        return found


class ModelChildren:
    """The children one model label writes, each created on first use (a model that never
    streams gets no first-chunk series) and then kept: a request costs dict lookups, not
    label lookups. One per model label, so bounded by the model bound."""

    __slots__ = ("_ended", "_first_chunk", "_in_flight", "_m", "cancelled", "label", "stages",
                 "units")  # fmt: skip

    def __init__(
        self, m: InferenceSet, label: str, stage: BoundedLabel, unit: BoundedLabel
    ) -> None:
        self._m = m
        self.label = label
        self._in_flight: GaugeChild | None = None
        self._first_chunk: HistogramChild | None = None
        self._ended: dict[str, tuple[CounterChild, HistogramChild]] = {}
        # (stage label, its duration child), by raw stage name
        self.stages: ByLabel[tuple[str, HistogramChild]] = ByLabel(
            stage, lambda name: (name, m.stage_duration.labels(label, name))
        )
        self.units: ByLabel[CounterChild] = ByLabel(unit, lambda name: m.output.labels(label, name))
        self.cancelled: dict[str, CounterChild] = {}

    def in_flight(self) -> GaugeChild:
        child = self._in_flight
        if child is None:
            child = self._in_flight = self._m.in_flight.labels(self.label)
        return child

    def first_chunk(self) -> HistogramChild:
        child = self._first_chunk
        if child is None:
            child = self._first_chunk = self._m.first_chunk.labels(self.label)
        return child

    def ended(self, outcome: str) -> tuple[CounterChild, HistogramChild]:
        """The request counter and duration children of ``outcome`` (one of OUTCOMES)."""
        found = self._ended.get(outcome)
        if found is None:
            m = self._m
            found = (m.requests.labels(self.label, outcome), m.duration.labels(self.label, outcome))
            found = self._ended.setdefault(outcome, found)
        return found

    def cancellation(self, stage: str) -> CounterChild:
        """The cancellation counter of a stage label (or NO_STAGE)."""
        child = self.cancelled.get(stage)
        if child is None:
            child = self.cancelled.setdefault(
                stage, self._m.cancellations.labels(self.label, stage)
            )
        return child


def inference_set(
    registry: CollectorRegistry | None,
    duration_buckets: Sequence[float] = buckets.INFERENCE_SECONDS,
) -> InferenceSet:
    """The registry's one set of inference, queue and batch metrics, created on first use."""
    return state_for(registry).metric_set(
        "inference", tuple(duration_buckets), lambda r: InferenceSet(r, duration_buckets)
    )


_current: contextvars.ContextVar[InferenceRequest | None] = contextvars.ContextVar(
    "inferwatch_inference_request", default=None
)


def current_request() -> InferenceRequest | None:
    """The request opened by ``with``/``async with`` or ``@track`` around this code, if any
    (not set inside tracked generators, whose code runs in their consumer's context)."""
    return _current.get()


class InferenceMetrics:
    """Records inference requests, queue depth and batches into ``registry``.

    ``allowed_models``/``max_models``: see :class:`~inferwatch.ai.ModelMetrics` (the bound is
    shared by every AI metric of the registry). ``outcomes`` maps exceptions to outcomes
    before the built-in rules: a callable returning an outcome or None, or a mapping such as
    ``{QueueFull: "rejected", ValidationError: "client_error"}``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        allowed_models: Iterable[str] | None = None,
        max_models: int | None = None,
        outcomes: OutcomeHook | None = None,
        duration_buckets: Sequence[float] = buckets.INFERENCE_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._state = state = state_for(registry)
        self._metrics = m = inference_set(registry, duration_buckets)
        self._model = state.bound("model", allowed_models, max_models, DEFAULT_MAX_MODELS)
        self._stage = state.bound("stage")
        self._unit = state.bound("unit")
        self._priority = state.bound("priority")
        self._hook = _validate_hook(outcomes)
        self._clock = clock
        # The children of each model, shared with every facade of the registry.
        self._models = m.models(self._model, self._stage, self._unit)
        self._queues = m.queues(self._priority)

    def request(self, model: str) -> InferenceRequest:
        """Time one request: ``with`` or ``async with infer.request("bark") as req: ...``."""
        return InferenceRequest(self, model)

    def track(self, model: str) -> Callable[[F], F]:
        """Decorator form of :meth:`request` for sync and async functions, and for sync and
        async generators (each yielded item is a chunk of streamed output)."""

        def decorate(fn: F) -> F:
            if inspect.isasyncgenfunction(fn):
                return cast(F, self._wrap_async_gen(fn, model))
            if inspect.isgeneratorfunction(fn):
                return cast(F, self._wrap_gen(fn, model))
            return cast(F, wrap_callable(fn, functools.partial(InferenceRequest, self, model)))

        return decorate

    def rejected(self, model: str, count: int = 1) -> None:
        """Count requests refused before they ran (queue full, overload shedding)."""
        try:
            label = self._models(model).label
            self._metrics.requests.labels(label, REJECTED).inc(count)
        except Exception as exc:
            self._state.error("ai.inference.rejected", exc)

    def queue_depth(self, priority: str = DEFAULT_PRIORITY) -> QueueDepth:
        """The queue depth gauge for ``priority``: ``.inc()``, ``.dec()``, ``.set(n)``, or
        ``with`` around the time one item waits."""
        return QueueDepth(self, priority)

    def batch(self, model: str, size: int, wait_seconds: float | None = None) -> None:
        """Record one batch: its size and, if known, how long it waited to fill."""
        try:
            label = self._models(model).label
            m = self._metrics
            m.batch_size.labels(label).observe(size)
            if wait_seconds is not None:
                m.batch_wait.labels(label).observe(wait_seconds)
        except Exception as exc:
            self._state.error("ai.inference.batch", exc)

    def _wrap_gen(
        self, fn: Callable[..., Generator[Any, Any, Any]], model: str
    ) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            req = self.request(model)
            req._begin()
            exc: BaseException | None = None
            gen = fn(*args, **kwargs)
            try:
                for item in gen:
                    req.first_chunk()
                    yield item
            except BaseException as e:  # GeneratorExit: the consumer stopped early
                exc = e
                raise
            finally:
                try:
                    gen.close()
                finally:
                    req._end(exc)

        return wrapper

    def _wrap_async_gen(
        self, fn: Callable[..., AsyncIterator[Any]], model: str
    ) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            req = self.request(model)
            req._begin()
            exc: BaseException | None = None
            gen = fn(*args, **kwargs)
            try:
                async for item in gen:
                    req.first_chunk()
                    yield item
            except BaseException as e:
                exc = e
                raise
            finally:
                try:
                    await gen.aclose()  # type: ignore[attr-defined]
                finally:
                    req._end(exc)

        return wrapper


class InferenceRequest(Span):
    """One inference request in progress."""

    __slots__ = ("_children", "_first_chunk_seen", "_in_flight", "_outcome", "_owner",
                 "_raw_model", "_start", "_token", "failed_stage")  # fmt: skip

    def __init__(self, owner: InferenceMetrics, model: str) -> None:
        self._owner = owner
        self._raw_model = model
        # The model's children, resolved when the request begins (or first needs them).
        self._children: ModelChildren | None = None
        self._start: float | None = None
        self._in_flight = False
        self._outcome: str | None = None
        self._first_chunk_seen = False
        self._token: contextvars.Token[InferenceRequest | None] | None = None
        self.failed_stage: str | None = None

    # -- the request's parts -----------------------------------------------------------------
    def stage(self, name: str) -> Stage:
        """Time one stage: ``with req.stage("preprocess"): ...`` (also ``async with``)."""
        return Stage(self, name)

    def queued(self, priority: str = DEFAULT_PRIORITY) -> Stage:
        """Time the ``queue`` stage and count the request in the queue depth meanwhile."""
        return Stage(self, "queue", priority=priority)

    def record_stage(self, name: str, seconds: float) -> None:
        """Record a stage timed elsewhere (say, by a batcher)."""
        try:
            self._model().stages(name)[1].observe(seconds)
        except Exception as exc:
            self._owner._state.error("ai.inference.stage", exc)

    def first_chunk(self) -> None:
        """Mark the first chunk of streamed output; later calls are ignored."""
        if self._first_chunk_seen:
            return
        self._first_chunk_seen = True
        try:
            if self._start is not None:
                elapsed = self._owner._clock() - self._start
                children = self._children or self._model()
                (children._first_chunk or children.first_chunk()).observe(elapsed)
        except Exception as exc:
            self._owner._state.error("ai.inference.first_chunk", exc)

    def produced(self, amount: float, unit: str = "tokens") -> None:
        """Count output: ``req.produced(3.2, unit="audio_seconds")``."""
        try:
            (self._children or self._model()).units(unit).inc(amount)
        except Exception as exc:
            self._owner._state.error("ai.inference.produced", exc)

    def set_outcome(self, outcome: str) -> None:
        """Override the outcome, e.g. ``client_error`` for bad input answered without raising."""
        if outcome in OUTCOMES:
            self._outcome = outcome
        else:
            self._owner._state.error(
                "ai.inference.outcome", ValueError(f"unknown outcome {outcome!r}")
            )

    # -- lifecycle ---------------------------------------------------------------------------
    def _model(self) -> ModelChildren:
        """This request's model children, resolved once (normally when it begins; the hot
        paths read ``_children`` first and call this only when it is not set)."""
        children = self._children
        if children is None:
            children = self._children = self._owner._models(self._raw_model)
        return children

    def _begin(self) -> None:
        o = self._owner
        try:
            children = self._children = o._models(self._raw_model)
            (children._in_flight or children.in_flight()).inc()
            self._in_flight = True
            self._start = o._clock()
        except Exception as exc:
            o._state.error("ai.inference.request", exc)

    def _end(self, exc: BaseException | None) -> None:
        o = self._owner
        try:
            children = self._children or self._model()
            if self._in_flight:
                self._in_flight = False
                (children._in_flight or children.in_flight()).dec()
            if self._start is None:
                return  # _begin failed and was reported
            elapsed = o._clock() - self._start
            outcome = self._outcome or (SUCCESS if exc is None else classify(exc, o._hook))
            count, duration = children.ended(outcome)
            count.inc()
            duration.observe(elapsed)
            if outcome == CANCELLED:
                children.cancellation(self.failed_stage or NO_STAGE).inc()
        except Exception as err:
            o._state.error("ai.inference.request", err)

    def __enter__(self) -> InferenceRequest:
        self._begin()
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._unbind()
        self._end(exc)

    async def __aenter__(self) -> InferenceRequest:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def _unbind(self) -> None:
        token = self._token
        if token is not None:
            self._token = None
            # Not contextlib.suppress: a context manager per request costs more than the rest.
            try:  # noqa: SIM105
                _current.reset(token)
            except ValueError:  # exited in another context than entered: nothing to undo
                pass


class Stage(Span):
    """One stage of a request; the ``queue`` stage from ``req.queued()`` also holds a place
    in the queue depth."""

    __slots__ = ("_depth", "_duration", "_label", "_name", "_priority", "_request", "_start")

    def __init__(self, request: InferenceRequest, name: str, priority: str | None = None) -> None:
        self._request = request
        self._name = name
        self._priority = priority
        self._depth: GaugeChild | None = None
        self._label: str | None = None
        self._duration: HistogramChild | None = None
        self._start: float | None = None

    def __enter__(self) -> Stage:  # Span's, without the call to _begin: it is on the hot path
        req = self._request
        o = req._owner
        try:
            self._label, self._duration = (req._children or req._model()).stages(self._name)
            if self._priority is not None:
                self._depth = o._queues(self._priority)
                self._depth.inc()
            self._start = o._clock()
        except Exception as exc:
            o._state.error("ai.inference.stage", exc)
        return self

    def _begin(self) -> None:  # for Span's __aenter__
        self.__enter__()

    def _end(self, exc: BaseException | None) -> None:
        req = self._request
        o = req._owner
        try:
            if exc is not None and req.failed_stage is None:
                req.failed_stage = self._label or NO_STAGE  # the innermost stage it ended in
            if self._depth is not None:
                depth, self._depth = self._depth, None
                depth.dec()
            if self._duration is None or self._start is None:
                return  # _begin failed and was reported
            self._duration.observe(o._clock() - self._start)
        except Exception as err:
            o._state.error("ai.inference.stage", err)


class QueueDepth:
    """A guarded handle on one priority's queue depth gauge."""

    def __init__(self, owner: InferenceMetrics, priority: str) -> None:
        self._owner = owner
        self._priority = priority

    def _apply(self, op: str, value: float) -> None:
        try:
            child = self._owner._queues(self._priority)
            getattr(child, op)(value)
        except Exception as exc:
            self._owner._state.error("ai.inference.queue", exc)

    def inc(self, amount: float = 1) -> None:
        self._apply("inc", amount)

    def dec(self, amount: float = 1) -> None:
        self._apply("dec", amount)

    def set(self, value: float) -> None:
        self._apply("set", value)

    def __enter__(self) -> QueueDepth:
        self.inc()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.dec()

    async def __aenter__(self) -> QueueDepth:
        return self.__enter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.dec()
