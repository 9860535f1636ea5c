"""OpenTelemetry's GenAI server metrics, opt-in, for services that serve a generative model.

Where OTel's GenAI semantic conventions define a server metric for something inferwatch
measures, :class:`GenAIMetrics` records it under OTel's name, rendered for Prometheus:

- ``gen_ai.server.request.duration`` -> ``gen_ai_server_request_duration_seconds{
  gen_ai_operation_name, gen_ai_request_model, error_type}``;
- ``gen_ai.server.time_to_first_token`` -> ``gen_ai_server_time_to_first_token_seconds{
  gen_ai_operation_name, gen_ai_request_model}``;
- ``gen_ai.server.time_per_output_token`` -> ``gen_ai_server_time_per_output_token_seconds{
  gen_ai_operation_name, gen_ai_request_model}``: the time after the first token divided
  by the tokens after the first, once per request that produced two tokens or more.

Buckets are the conventions' advice, so dashboards written for OTel-instrumented model
servers (vLLM, TGI and the like) read these series as they are. ``error_type`` is the
exception's qualified class name, empty for a success. ``gen_ai_request_model`` folds
values exactly as inferwatch's ``model`` label does (one bound per registry), and
``gen_ai_operation_name`` is bounded too (OTel's names: chat, text_completion, embeddings,
generate_content, ...).

Nothing else changes: inferwatch's own names (``inferwatch_inference_*``) stay what every
dashboard, rule and alert of inferwatch reads. Passing ``inference=`` records each request
under both, through the one ``with`` block::

    genai = GenAIMetrics(registry, operation="chat", inference=InferenceMetrics(registry))
    async with genai.request("llama-3-8b") as req:
        async for token in model.stream(prompt):
            req.token()
            yield token
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai._shared import Span, state_for
from inferwatch.ai.inference import InferenceMetrics, InferenceRequest
from inferwatch.ai.models import DEFAULT_MAX_MODELS
from inferwatch.http.middleware import error_type
from inferwatch.metrics import Histogram
from inferwatch.metrics.labels import error_types

# The conventions' explicit bucket advice for each metric.
REQUEST_SECONDS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
FIRST_TOKEN_SECONDS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
PER_TOKEN_SECONDS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
OPERATION = "gen_ai_operation_name"
MODEL = "gen_ai_request_model"


class GenAISet:
    """The GenAI server metrics of one registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "GenAI server request duration (OpenTelemetry gen_ai.server.request.duration): "
            "time to the last byte of the response; error_type empty for a success.",
            (OPERATION, MODEL, "error_type"), buckets=REQUEST_SECONDS, registry=r,
            unit="seconds",
        )  # fmt: skip
        self.first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to generate the first token of a successful request (OpenTelemetry "
            "gen_ai.server.time_to_first_token).",
            (OPERATION, MODEL), buckets=FIRST_TOKEN_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip
        self.per_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first of a successful request (OpenTelemetry "
            "gen_ai.server.time_per_output_token).",
            (OPERATION, MODEL), buckets=PER_TOKEN_SECONDS, registry=r, unit="seconds",
        )  # fmt: skip


def genai_set(registry: CollectorRegistry | None) -> GenAISet:
    """The registry's one set of GenAI server metrics, created on first use."""
    return state_for(registry).metric_set("genai", (), GenAISet)


class GenAIMetrics:
    """Records GenAI server requests under OpenTelemetry's metric names (see the module).

    ``operation``: the ``gen_ai.operation.name`` of the requests (chat, text_completion,
    embeddings, ...; a request may give its own). ``inference``: also record each request
    with inferwatch's own inference metrics. ``allowed_models``/``max_models`` as for
    :class:`~inferwatch.ai.InferenceMetrics`.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        operation: str = "chat",
        inference: InferenceMetrics | None = None,
        allowed_models: Iterable[str] | None = None,
        max_models: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._state = state = state_for(registry)
        self._metrics = genai_set(registry)
        self._model = state.bound("model", allowed_models, max_models, DEFAULT_MAX_MODELS)
        self._operation = state.bound(OPERATION)
        self._error_types = error_types(registry, "genai")
        self.operation = operation
        self._inference = inference
        self._clock = clock

    def request(self, model: str, operation: str | None = None) -> GenAIRequest:
        """Time one request: ``with``/``async with genai.request("llama-3-8b") as req``."""
        return GenAIRequest(self, model, operation or self.operation)


class GenAIRequest(Span):
    """One GenAI request in progress; :meth:`token` marks each output token."""

    def __init__(self, owner: GenAIMetrics, model: str, operation: str) -> None:
        self._owner = owner
        self._raw = (model, operation)
        self._start: float | None = None
        self._first: float | None = None
        self._last: float | None = None
        self.tokens = 0
        self.inference: InferenceRequest | None = None

    def token(self, count: int = 1) -> None:
        """``count`` output tokens were produced just now (streamed or not)."""
        try:
            now = self._owner._clock()
            if self._first is None:
                self._first = now
                if self.inference is not None:
                    self.inference.first_chunk()
            self._last = now
            self.tokens += count
            if self.inference is not None:
                self.inference.produced(count, unit="tokens")
        except Exception as exc:
            self._owner._state.error("ai.genai.token", exc)

    def _begin(self) -> None:
        o = self._owner
        try:
            if o._inference is not None:
                # Entered as a `with` block would: current_request() sees it too.
                self.inference = o._inference.request(self._raw[0]).__enter__()
            self._start = o._clock()
        except Exception as exc:
            o._state.error("ai.genai.request", exc)

    def _end(self, exc: BaseException | None) -> None:
        o = self._owner
        try:
            if self.inference is not None:
                self.inference.__exit__(type(exc) if exc else None, exc, None)
            if self._start is None:
                return  # _begin failed and was reported
            elapsed = o._clock() - self._start
            model, operation = o._model(self._raw[0]), o._operation(self._raw[1])
            m = o._metrics
            failure = o._error_types(error_type(exc)) if exc is not None else ""
            m.duration.labels(operation, model, failure).observe(elapsed)
            if exc is not None or self._first is None:
                return  # OTel times tokens of successful requests only
            m.first_token.labels(operation, model).observe(self._first - self._start)
            if self.tokens >= 2 and self._last is not None:
                per_token = (self._last - self._first) / (self.tokens - 1)
                m.per_token.labels(operation, model).observe(per_token)
        except Exception as err:
            o._state.error("ai.genai.request", err)
