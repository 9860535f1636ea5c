"""Inference requests: duration by outcome and stage, time to first chunk, output produced,
requests in flight, queue depth and batching."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai import buckets
from inferwatch.ai._shared import Span, state_for, wrap_callable
from inferwatch.ai.models import DEFAULT_MAX_MODELS
from inferwatch.ai.outcomes import CANCELLED, OUTCOMES, REJECTED, OutcomeHook, classify
from inferwatch.ai.outcomes import validate_hook as _validate_hook
from inferwatch.metrics import Counter, Gauge, Histogram

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
        self._metrics = inference_set(registry, duration_buckets)
        self._model = state.bound("model", allowed_models, max_models, DEFAULT_MAX_MODELS)
        self._stage = state.bound("stage")
        self._unit = state.bound("unit")
        self._priority = state.bound("priority")
        self._hook = _validate_hook(outcomes)
        self._clock = clock

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
            return cast(F, wrap_callable(fn, functools.partial(self.request, model)))

        return decorate

    def rejected(self, model: str, count: int = 1) -> None:
        """Count requests refused before they ran (queue full, overload shedding)."""
        try:
            self._metrics.requests.labels(self._model(model), REJECTED).inc(count)
        except Exception as exc:
            self._state.error("ai.inference.rejected", exc)

    def queue_depth(self, priority: str = DEFAULT_PRIORITY) -> QueueDepth:
        """The queue depth gauge for ``priority``: ``.inc()``, ``.dec()``, ``.set(n)``, or
        ``with`` around the time one item waits."""
        return QueueDepth(self, priority)

    def batch(self, model: str, size: int, wait_seconds: float | None = None) -> None:
        """Record one batch: its size and, if known, how long it waited to fill."""
        try:
            label = self._model(model)
            m = self._metrics
            m.batch_size.labels(label).observe(size)
            if wait_seconds is not None:
                m.batch_wait.labels(label).observe(wait_seconds)
        except Exception as exc:
            self._state.error("ai.inference.batch", exc)

    def _wrap_gen(self, fn: Callable[..., Iterator[Any]], model: str) -> Callable[..., Any]:
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

    def __init__(self, owner: InferenceMetrics, model: str) -> None:
        self._owner = owner
        self._raw_model = model
        self._model: str | None = None
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
            self._owner._metrics.stage_duration.labels(
                self._model_label(), self._owner._stage(name)
            ).observe(seconds)
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
                self._owner._metrics.first_chunk.labels(self._model_label()).observe(elapsed)
        except Exception as exc:
            self._owner._state.error("ai.inference.first_chunk", exc)

    def produced(self, amount: float, unit: str = "tokens") -> None:
        """Count output: ``req.produced(3.2, unit="audio_seconds")``."""
        try:
            label = self._owner._unit(unit)
            self._owner._metrics.output.labels(self._model_label(), label).inc(amount)
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
    def _model_label(self) -> str:
        if self._model is None:
            self._model = self._owner._model(self._raw_model)
        return self._model

    def _begin(self) -> None:
        try:
            o = self._owner
            o._metrics.in_flight.labels(self._model_label()).inc()
            self._in_flight = True
            self._start = o._clock()
        except Exception as exc:
            self._owner._state.error("ai.inference.request", exc)

    def _end(self, exc: BaseException | None) -> None:
        try:
            o = self._owner
            m = o._metrics
            model = self._model_label()
            if self._in_flight:
                self._in_flight = False
                m.in_flight.labels(model).dec()
            if self._start is None:
                return  # _begin failed and was reported
            elapsed = o._clock() - self._start
            outcome = self._outcome or classify(exc, o._hook)
            m.requests.labels(model, outcome).inc()
            m.duration.labels(model, outcome).observe(elapsed)
            if outcome == CANCELLED:
                m.cancellations.labels(model, self.failed_stage or NO_STAGE).inc()
        except Exception as err:
            self._owner._state.error("ai.inference.request", err)

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
        if self._token is not None:
            # Exited in another context than entered (ValueError): nothing to undo there.
            with contextlib.suppress(ValueError):
                _current.reset(self._token)
            self._token = None


class Stage(Span):
    """One stage of a request; the ``queue`` stage from ``req.queued()`` also holds a place
    in the queue depth."""

    def __init__(self, request: InferenceRequest, name: str, priority: str | None = None) -> None:
        self._request = request
        self._name = name
        self._priority = priority
        self._depth: Any = None
        self._label: str | None = None
        self._start: float | None = None

    def _begin(self) -> None:
        o = self._request._owner
        try:
            self._label = o._stage(self._name)
            if self._priority is not None:
                self._depth = o._metrics.queue_depth.labels(o._priority(self._priority))
                self._depth.inc()
            self._start = o._clock()
        except Exception as exc:
            o._state.error("ai.inference.stage", exc)

    def _end(self, exc: BaseException | None) -> None:
        req = self._request
        o = req._owner
        try:
            if exc is not None and req.failed_stage is None:
                req.failed_stage = self._label or NO_STAGE  # the innermost stage it ended in
            if self._depth is not None:
                depth, self._depth = self._depth, None
                depth.dec()
            if self._label is None or self._start is None:
                return  # _begin failed and was reported
            elapsed = o._clock() - self._start
            o._metrics.stage_duration.labels(req._model_label(), self._label).observe(elapsed)
        except Exception as err:
            o._state.error("ai.inference.stage", err)


class QueueDepth:
    """A guarded handle on one priority's queue depth gauge."""

    def __init__(self, owner: InferenceMetrics, priority: str) -> None:
        self._owner = owner
        self._priority = priority

    def _apply(self, op: str, value: float) -> None:
        try:
            o = self._owner
            child = o._metrics.queue_depth.labels(o._priority(self._priority))
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
