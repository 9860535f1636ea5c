"""OpenTelemetry's GenAI server metric names (``inferwatch.ai.GenAIMetrics``), opt-in beside
inferwatch's own inference metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from inferwatch.ai import GenAIMetrics, InferenceMetrics
from tests.support import Metrics

CHAT = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "llama-3-8b"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def scrape(registry: CollectorRegistry) -> Metrics:
    return Metrics(generate_latest(registry).decode())


def test_a_streamed_request_under_both_names() -> None:
    """First token after 0.25 s, nine more 0.125 s apart: TTFT 0.25 s, TPOT 0.125 s, and the
    same request in inferwatch_inference_* (first chunk, tokens produced)."""
    registry, clock = CollectorRegistry(), Clock()
    infer = InferenceMetrics(registry, clock=clock)
    genai = GenAIMetrics(registry, inference=infer, clock=clock)

    async def stream() -> AsyncIterator[str]:
        async with genai.request("llama-3-8b") as req:
            for n in range(10):
                clock.now += 0.25 if n == 0 else 0.125
                req.token()
                yield f"t{n}"
            clock.now += 0.5  # detokenize and send the tail

    async def consume() -> list[str]:
        return [token async for token in stream()]

    assert len(asyncio.run(consume())) == 10
    m = scrape(registry)
    duration = "gen_ai_server_request_duration_seconds"
    assert m.value(f"{duration}_count", error_type="", **CHAT) == 1
    assert m.value(f"{duration}_sum", **CHAT) == 0.25 + 9 * 0.125 + 0.5
    assert m.value("gen_ai_server_time_to_first_token_seconds_sum", **CHAT) == 0.25
    assert m.value("gen_ai_server_time_per_output_token_seconds_sum", **CHAT) == 0.125
    assert m.bucket("gen_ai_server_time_per_output_token_seconds", 0.15, **CHAT) == 1
    assert m.bucket("gen_ai_server_time_per_output_token_seconds", 0.1, **CHAT) == 0
    ours = {"model": "llama-3-8b"}
    assert m.value("inferwatch_inference_requests_total", outcome="success", **ours) == 1
    assert m.value("inferwatch_inference_time_to_first_chunk_seconds_sum", **ours) == 0.25
    assert m.value("inferwatch_inference_output_units_total", unit="tokens", **ours) == 10


def test_a_failed_request_has_its_error_type_and_no_token_timings() -> None:
    registry, clock = CollectorRegistry(), Clock()
    genai = GenAIMetrics(registry, operation="text_completion", clock=clock)
    with pytest.raises(MemoryError), genai.request("llama-3-8b") as req:
        clock.now += 0.5
        req.token(3)
        raise MemoryError("CUDA out of memory")
    with genai.request("llama-3-8b", operation="embeddings") as req:
        req.token()  # one token: a time to it, no time per token after it
    m = scrape(registry)
    completion = {**CHAT, "gen_ai_operation_name": "text_completion"}
    duration = "gen_ai_server_request_duration_seconds_count"
    assert m.value(duration, error_type="MemoryError", **completion) == 1
    assert m.samples("gen_ai_server_time_to_first_token_seconds_count", **completion) == []
    embeddings = {**CHAT, "gen_ai_operation_name": "embeddings"}
    assert m.value("gen_ai_server_time_to_first_token_seconds_count", **embeddings) == 1
    assert m.samples("gen_ai_server_time_per_output_token_seconds_count") == []
    assert m.samples("inferwatch_inference_requests_total") == []  # not asked for


def test_models_fold_as_inferwatchs_model_label_does() -> None:
    registry = CollectorRegistry()
    infer = InferenceMetrics(registry, max_models=1)
    genai = GenAIMetrics(registry, inference=infer)
    for model in ("llama-3-8b", "mistral-7b"):
        with genai.request(model) as req:
            req.token()
    m = scrape(registry)
    models = {s.labels["gen_ai_request_model"] for s in m.samples(
        "gen_ai_server_request_duration_seconds_count")}  # fmt: skip
    assert models == {s.labels["model"] for s in m.samples("inferwatch_inference_requests_total")}
    assert models == {"llama-3-8b", "_OTHER"}
