"""Inference metrics: requests, stages, streaming, outcomes, queue depth, batches."""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import CollectorRegistry

from inferwatch.ai import InferenceMetrics, classify, current_request, inference
from inferwatch.http.instruments import http_metrics
from inferwatch.metrics import counter, gauge, histogram
from inferwatch.metrics.counter import CounterChild
from inferwatch.metrics.gauge import GaugeChild
from inferwatch.metrics.histogram import HistogramChild
from tests.support import Exact, registry_samples, value
from tests.support.threads import switching_inside

Scrape = Exact
REQUESTS = "inferwatch_inference_requests_total"
DURATION = "inferwatch_inference_request_duration_seconds"
STAGE = "inferwatch_inference_stage_duration_seconds"
FIRST_CHUNK = "inferwatch_inference_time_to_first_chunk_seconds"
OUTPUT = "inferwatch_inference_output_units_total"
IN_FLIGHT = "inferwatch_inference_requests_in_flight"
CANCELLATIONS = "inferwatch_inference_cancellations_total"
QUEUE = "inferwatch_queue_depth"
ERRORS = "inferwatch_instrumentation_errors_total"


def scrape(registry: CollectorRegistry) -> Scrape:
    return registry_samples(registry)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class HTTPError(Exception):
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class QueueFull(Exception):
    pass


def test_request_with_stages_first_chunk_and_output() -> None:
    reg, clock = CollectorRegistry(), FakeClock()
    infer = InferenceMetrics(reg, clock=clock)
    with infer.request("musicgen-small") as req:
        assert current_request() is req
        with req.queued("high"):
            assert value(scrape(reg), QUEUE, priority="high") == 1
            assert value(scrape(reg), IN_FLIGHT, model="musicgen-small") == 1
            clock.advance(0.3)
        with req.stage("preprocess"):
            clock.advance(0.02)
        with req.stage("inference"):
            clock.advance(0.7)
            req.first_chunk()
            clock.advance(0.8)
            req.first_chunk()  # only the first counts
            req.produced(10)
            req.produced(5, unit="tokens")
            req.produced(3.2, unit="audio_seconds")
        req.record_stage("postprocess", 0.004)
    assert current_request() is None
    got = scrape(reg)
    m = {"model": "musicgen-small"}
    ok = {**m, "outcome": "success"}
    assert value(got, REQUESTS, **ok) == 1
    assert value(got, f"{DURATION}_count", **ok) == 1
    assert value(got, f"{DURATION}_sum", **ok) == pytest.approx(1.82)
    assert value(got, f"{DURATION}_bucket", le="1.0", **ok) == 0
    assert value(got, f"{DURATION}_bucket", le="2.0", **ok) == 1
    stage_bounds = {
        "queue": "0.5",
        "preprocess": "0.025",
        "inference": "2.0",
        "postprocess": "0.005",
    }
    for stage, le in stage_bounds.items():
        assert value(got, f"{STAGE}_count", stage=stage, **m) == 1, stage
        assert value(got, f"{STAGE}_bucket", le=le, stage=stage, **m) == 1, stage
    assert value(got, f"{STAGE}_bucket", le="0.2", stage="queue", **m) == 0
    assert value(got, f"{STAGE}_sum", stage="inference", **m) == pytest.approx(1.5)
    assert value(got, f"{FIRST_CHUNK}_count", **m) == 1
    assert value(got, f"{FIRST_CHUNK}_sum", **m) == pytest.approx(1.02)
    assert value(got, f"{FIRST_CHUNK}_bucket", le="1.0", **m) == 0
    assert value(got, f"{FIRST_CHUNK}_bucket", le="1.5", **m) == 1
    assert value(got, OUTPUT, unit="tokens", **m) == 15
    assert value(got, OUTPUT, unit="audio_seconds", **m) == pytest.approx(3.2)
    assert value(got, IN_FLIGHT, **m) == 0
    assert value(got, QUEUE, priority="high") == 0


class OutOfMemoryError(RuntimeError):
    pass


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ValueError("bad"), "server_error"),
        (TimeoutError(), "timeout"),
        (asyncio.TimeoutError(), "timeout"),
        (concurrent.futures.TimeoutError(), "timeout"),
        (MemoryError(), "oom"),
        (OutOfMemoryError("CUDA"), "oom"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "oom"),
        (RuntimeError("something else"), "server_error"),
        (asyncio.CancelledError(), "cancelled"),
        (GeneratorExit(), "cancelled"),
        (HTTPError(404), "client_error"),
        (HTTPError(429), "rejected"),
        (HTTPError(503), "server_error"),
    ],
)
def test_exceptions_map_to_outcomes_and_propagate(error: BaseException, outcome: str) -> None:
    assert classify(error) == outcome
    reg = CollectorRegistry()
    infer = InferenceMetrics(reg)
    with pytest.raises(type(error)) as raised, infer.request("bark"):
        raise error
    assert raised.value is error
    got = scrape(reg)
    assert value(got, REQUESTS, model="bark", outcome=outcome) == 1
    assert value(got, f"{DURATION}_count", model="bark", outcome=outcome) == 1
    assert sum(v for (n, _), v in got.items() if n == REQUESTS) == 1


def test_outcome_hooks() -> None:
    reg = CollectorRegistry()
    mapped = InferenceMetrics(reg, outcomes={QueueFull: "rejected", KeyError: "client_error"})
    for error in (QueueFull(), KeyError("prompt"), ValueError()):
        with pytest.raises(type(error)), mapped.request("a"):
            raise error

    def hook(exc: BaseException) -> str | None:
        if isinstance(exc, ZeroDivisionError):
            raise RuntimeError("a broken hook falls back to the default rules")
        return "client_error" if "invalid" in str(exc) else "not-an-outcome"

    hooked = InferenceMetrics(reg, outcomes=hook)
    for error in (ValueError("invalid prompt"), ValueError("other"), ZeroDivisionError()):
        with pytest.raises(type(error)), hooked.request("b"):
            raise error
    with hooked.request("b") as req:
        req.set_outcome("client_error")  # answered with an error without raising
    got = scrape(reg)
    assert value(got, REQUESTS, model="a", outcome="rejected") == 1
    assert value(got, REQUESTS, model="a", outcome="client_error") == 1
    assert value(got, REQUESTS, model="a", outcome="server_error") == 1
    assert value(got, REQUESTS, model="b", outcome="client_error") == 2
    assert value(got, REQUESTS, model="b", outcome="server_error") == 2
    with pytest.raises(ValueError, match="unknown outcomes"):
        InferenceMetrics(reg, outcomes={QueueFull: "full"})


def test_async_request_cancelled_in_a_stage() -> None:
    reg = CollectorRegistry()
    infer = InferenceMetrics(reg)

    async def handler(started: asyncio.Event) -> None:
        async with infer.request("bark") as req:
            async with req.queued():
                pass
            with req.stage("inference"):
                started.set()
                await asyncio.Event().wait()  # until cancelled

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(handler(started))
        await started.wait()
        assert value(scrape(reg), IN_FLIGHT, model="bark") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    got = scrape(reg)
    assert value(got, REQUESTS, model="bark", outcome="cancelled") == 1
    assert value(got, CANCELLATIONS, model="bark", stage="inference") == 1
    assert value(got, f"{STAGE}_count", model="bark", stage="inference") == 1
    assert value(got, IN_FLIGHT, model="bark") == 0
    assert value(got, QUEUE, priority="default") == 0


def test_decorators_for_functions_and_streams() -> None:
    reg, clock = CollectorRegistry(), FakeClock()
    infer = InferenceMetrics(reg, clock=clock)

    @infer.track("tts")
    def synth(text: str) -> str:
        req = current_request()
        assert req is not None
        with req.stage("inference"):
            clock.advance(0.1)
        return text.upper()

    @infer.track("tts")
    async def asynth(text: str) -> str:
        req = current_request()
        assert req is not None
        req.produced(len(text), unit="characters")
        return text[::-1]

    @infer.track("music")
    def stream(n: int) -> Iterator[int]:
        clock.advance(0.2)
        for i in range(n):
            yield i
            clock.advance(1.0)

    @infer.track("music")
    async def astream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            clock.advance(0.05)
            yield i

    assert synth("hi") == "HI"
    assert asyncio.run(asynth("abc")) == "cba"
    assert list(stream(3)) == [0, 1, 2]
    early = stream(10)
    assert next(early) == 0
    early.close()  # the consumer went away mid-stream

    async def consume() -> list[int]:
        return [i async for i in astream(4)]

    assert asyncio.run(consume()) == [0, 1, 2, 3]
    got = scrape(reg)
    assert value(got, REQUESTS, model="tts", outcome="success") == 2
    assert value(got, f"{STAGE}_sum", model="tts", stage="inference") == pytest.approx(0.1)
    assert value(got, OUTPUT, model="tts", unit="characters") == 3
    assert value(got, REQUESTS, model="music", outcome="success") == 2
    assert value(got, REQUESTS, model="music", outcome="cancelled") == 1
    assert value(got, CANCELLATIONS, model="music", stage="none") == 1
    assert value(got, f"{FIRST_CHUNK}_count", model="music") == 3
    assert value(got, f"{FIRST_CHUNK}_sum", model="music") == pytest.approx(0.2 + 0.2 + 0.05)
    # Full stream: 0.2 s to the first chunk, then 1 s after each of 3 chunks.
    assert value(got, f"{DURATION}_sum", model="music", outcome="success") == pytest.approx(
        3.2 + 0.2
    )
    assert value(got, IN_FLIGHT, model="music") == 0


def test_queue_depth_batches_and_rejections() -> None:
    reg = CollectorRegistry()
    infer = InferenceMetrics(reg)
    high = infer.queue_depth("high")
    high.inc()
    high.inc(3)
    high.dec()
    with infer.queue_depth("low"):
        assert value(scrape(reg), QUEUE, priority="low") == 1
    infer.queue_depth("batch").set(7)
    infer.batch("bark", size=8, wait_seconds=0.012)
    infer.batch("bark", size=3)
    infer.rejected("bark")
    infer.rejected("bark", 2)
    got = scrape(reg)
    assert value(got, QUEUE, priority="high") == 3
    assert value(got, QUEUE, priority="low") == 0
    assert value(got, QUEUE, priority="batch") == 7
    size = "inferwatch_batch_requests"
    assert [value(got, f"{size}_bucket", le=le, model="bark") for le in ("2.0", "4.0", "8.0")] == [
        0,
        1,
        2,
    ]
    assert value(got, f"{size}_sum", model="bark") == 11
    wait = "inferwatch_batch_wait_seconds"
    assert value(got, f"{wait}_count", model="bark") == 1
    assert value(got, f"{wait}_bucket", le="0.01", model="bark") == 0
    assert value(got, f"{wait}_bucket", le="0.025", model="bark") == 1
    assert value(got, REQUESTS, model="bark", outcome="rejected") == 3
    assert value(got, f"{DURATION}_count", model="bark", outcome="rejected") is None


def test_concurrent_requests_are_exact() -> None:
    reg = CollectorRegistry()
    infer = InferenceMetrics(reg)
    threads, per_thread = 8, 250
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for n in range(per_thread):
            with infer.request(f"m{n % 2}") as req, req.queued("p"):
                req.produced(1, unit="frames")
                req.first_chunk()

    # A thread switch may come between any two bytecodes of the facade and of the metrics.
    with switching_inside(inference, counter, gauge, histogram):
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()

    async def many() -> None:
        async def one(n: int) -> None:
            async with infer.request(f"m{n % 2}") as req:
                await asyncio.sleep(0)
                req.produced(2, unit="frames")

        await asyncio.gather(*(one(n) for n in range(400)))

    asyncio.run(many())
    got = scrape(reg)
    each = threads * per_thread / 2 + 200
    for model in ("m0", "m1"):
        assert value(got, REQUESTS, model=model, outcome="success") == each
        assert value(got, f"{DURATION}_count", model=model, outcome="success") == each
        assert value(got, f"{STAGE}_count", model=model, stage="queue") == each - 200
        assert value(got, OUTPUT, model=model, unit="frames") == (each - 200) + 2 * 200
        assert value(got, IN_FLIGHT, model=model) == 0
    assert value(got, QUEUE, priority="p") == 0


def test_broken_histograms_are_counted_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = CollectorRegistry()
    http_metrics(reg)
    infer = InferenceMetrics(reg)

    def broken(self: HistogramChild, value: float, exemplar: object = None) -> None:
        raise RuntimeError("metrics backend down")

    monkeypatch.setattr(HistogramChild, "observe", broken)

    @infer.track("bark")
    def run(x: int) -> int:
        return x + 1

    assert [run(i) for i in range(3)] == [1, 2, 3]
    error = KeyError("user")
    with pytest.raises(KeyError) as raised, infer.request("bark") as req:
        with req.stage("inference"):
            req.first_chunk()
        raise error
    assert raised.value is error
    got = scrape(reg)
    # Counters still counted: the request counter is incremented before the histogram.
    assert value(got, REQUESTS, model="bark", outcome="success") == 3
    assert value(got, ERRORS, component="ai.inference.request") == 4
    assert value(got, ERRORS, component="ai.inference.stage") == 1
    assert value(got, ERRORS, component="ai.inference.first_chunk") == 1
    assert value(got, IN_FLIGHT, model="bark") == 0


def test_everything_broken_still_leaves_user_code_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("metrics backend down")

    for cls, method in [
        (CounterChild, "inc"),
        (GaugeChild, "inc"),
        (GaugeChild, "dec"),
        (GaugeChild, "set"),
        (HistogramChild, "observe"),
    ]:
        monkeypatch.setattr(cls, method, boom)
    infer = InferenceMetrics(CollectorRegistry(), clock=lambda: 1 / 0)

    @infer.track("bark")
    async def run() -> str:
        return "audio"

    @infer.track("bark")
    def stream() -> Iterator[str]:
        yield "chunk"

    assert asyncio.run(run()) == "audio"
    assert list(stream()) == ["chunk"]
    error = TimeoutError("user timeout")
    with pytest.raises(TimeoutError) as raised, infer.request("bark") as req:
        with req.queued("high"), req.stage("inference"):
            req.first_chunk()
            req.produced(-1)  # a negative count is a bug: reported, never raised
            req.set_outcome("no-such-outcome")
        raise error
    assert raised.value is error
    infer.queue_depth("x").inc()
    infer.batch("bark", size=2, wait_seconds=0.1)
    infer.rejected("bark")


class Voice(str, enum.Enum):  # str() is "Voice.BARK": the label is still "bark"
    BARK = "bark"


def test_children_resolved_once_per_label_whatever_the_spelling_and_bounded() -> None:
    reg = CollectorRegistry()
    infer = InferenceMetrics(reg, max_models=3)
    for model in ["bark", Voice.BARK, "musicgen", 1, True, *(f"m{i}" for i in range(300))]:
        with infer.request(model) as req, req.stage("inference"):  # type: ignore[arg-type]
            req.produced(2)
    got = scrape(reg)
    ok = {"outcome": "success"}
    # One child per label: an enum member is its characters; 1 and True are not "1".
    assert value(got, REQUESTS, model="bark", **ok) == 2
    assert value(got, REQUESTS, model="musicgen", **ok) == 1
    assert value(got, REQUESTS, model="1", **ok) == 1
    assert value(got, REQUESTS, model="_OTHER", **ok) == 301  # True and the 300 past the cap
    assert value(got, OUTPUT, model="_OTHER", unit="tokens") == 2 * 301
    assert value(got, f"{STAGE}_count", model="_OTHER", stage="inference") == 301
    # The children kept are bounded by the labels, not by the names callers pass, and they
    # are the registry's: a second facade shares them.
    assert sorted(infer._models._entries) == ["1", "_OTHER", "bark", "musicgen"]
    assert len(infer._models("anything-new").stages._entries) == 1
    assert InferenceMetrics(reg)._models is infer._models
