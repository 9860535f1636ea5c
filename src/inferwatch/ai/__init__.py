"""In-process instrumentation of AI workloads: model lifecycle, inference, queues, batches,
application caches, jobs made of steps, and the calls to the services a backend depends on
(retries, circuit breakers).

Every facade takes ``registry=`` (default: prometheus_client's global registry); the metrics
behind the facades are created once per registry, so facades can be created freely.
"""

from __future__ import annotations

from prometheus_client.registry import CollectorRegistry

from inferwatch.ai.breaker import CircuitBreaker, CircuitOpenError
from inferwatch.ai.cache import (
    MISSING,
    CacheBackend,
    CacheMetrics,
    CacheSet,
    InstrumentedCache,
    MemoryBackend,
    cache_set,
    instrumented_cache,
)
from inferwatch.ai.genai import GenAIMetrics, GenAIRequest, GenAISet, genai_set
from inferwatch.ai.inference import (
    InferenceMetrics,
    InferenceRequest,
    InferenceSet,
    QueueDepth,
    current_request,
    inference_set,
)
from inferwatch.ai.jobs import JobMetrics, JobRun, JobSet, job_set
from inferwatch.ai.labels import OTHER, BoundedLabel
from inferwatch.ai.models import ModelLoad, ModelMetrics, ModelSet, model_set
from inferwatch.ai.outcomes import OUTCOMES, classify
from inferwatch.ai.redis_backend import CacheUnavailable, RedisBackend
from inferwatch.ai.upstream import Upstream, UpstreamSet, is_transient, upstream_set


def define_metrics(
    registry: CollectorRegistry,
) -> tuple[ModelSet, InferenceSet, CacheSet, UpstreamSet, JobSet, GenAISet]:
    """Create every AI metric in ``registry`` with default buckets (for catalogues and for
    exposing empty families before first use); the GenAI names are opt-in for services, but
    the catalogue lists them."""
    return (
        model_set(registry),
        inference_set(registry),
        cache_set(registry),
        upstream_set(registry),
        job_set(registry),
        genai_set(registry),
    )


__all__ = [
    "MISSING",
    "OTHER",
    "OUTCOMES",
    "BoundedLabel",
    "CacheBackend",
    "CacheMetrics",
    "CacheUnavailable",
    "CircuitBreaker",
    "CircuitOpenError",
    "GenAIMetrics",
    "GenAIRequest",
    "InferenceMetrics",
    "InferenceRequest",
    "InstrumentedCache",
    "JobMetrics",
    "JobRun",
    "MemoryBackend",
    "ModelLoad",
    "ModelMetrics",
    "QueueDepth",
    "RedisBackend",
    "Upstream",
    "classify",
    "current_request",
    "define_metrics",
    "instrumented_cache",
    "is_transient",
]
