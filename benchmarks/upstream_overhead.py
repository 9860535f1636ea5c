"""Per-call cost of inferwatch's dependency instrumentation (``inferwatch.ai.Upstream``) over
the same call made without it.

Cases, each a pair run in batches of ``--calls`` in a tight loop, in-process:

- an httpx request through ``Upstream.transport()`` (timing, labels, breaker permit) over the
  same request through the bare transport; the wire is ``httpx.MockTransport``, so only
  httpx's own work and the instrumentation's are timed;
- the reference for it: the duration histogram written by hand with prometheus_client in
  httpx event hooks (no breaker), as services commonly do;
- a call through ``Upstream.retrying()`` (tenacity with inferwatch's hooks, the outcome
  counted) over the same function under plain ``tenacity.retry`` with the same policy.

Each round runs every pair (bare and instrumented alternating which goes first), timed in
thread CPU time; a case's overhead is the median over rounds of its per-call time minus the
bare call's in the same round.

    .venv/bin/python benchmarks/upstream_overhead.py [--rounds N] [--calls N]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

import httpx
import prometheus_client
import tenacity
from prometheus_client import CollectorRegistry

from inferwatch.ai import Upstream
from inferwatch.metrics.buckets import DURATION_SECONDS

Batch = Callable[[int], None]


@dataclass
class Case:
    name: str
    bare: Batch
    instrumented: Batch
    bare_times: list[float] = field(default_factory=list)  # µs per call, one per round
    times: list[float] = field(default_factory=list)

    def overhead(self) -> float:
        return statistics.median(t - b for t, b in zip(self.times, self.bare_times, strict=True))


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


def loop(call: Callable[[], object]) -> Batch:
    def run(n: int) -> None:
        for _ in range(n):
            call()

    return run


def cases() -> tuple[list[Case], list[Callable[[], None]]]:
    registry = CollectorRegistry()
    tts = Upstream("tts", registry)
    bare = httpx.Client(base_url="http://tts.internal", transport=httpx.MockTransport(_answer))
    timed = httpx.Client(
        base_url="http://tts.internal", transport=tts.transport(httpx.MockTransport(_answer))
    )
    hand = prometheus_client.Histogram(
        "hand_http_client_request_duration_seconds", "By hand.",
        ["peer", "http_request_method", "http_response_status_code"],
        buckets=DURATION_SECONDS, registry=CollectorRegistry(),
    )  # fmt: skip

    def started(request: httpx.Request) -> None:
        request.extensions["started"] = time.perf_counter()

    def answered(response: httpx.Response) -> None:
        seconds = time.perf_counter() - response.request.extensions["started"]
        hand.labels("tts", response.request.method, str(response.status_code)).observe(seconds)

    by_hand = httpx.Client(
        base_url="http://tts.internal",
        transport=httpx.MockTransport(_answer),
        event_hooks={"request": [started], "response": [answered]},
    )
    policy = {"stop": tenacity.stop_after_attempt(3), "wait": tenacity.wait_none()}

    def work() -> int:
        return 1

    plain = tenacity.retry(**policy)(work)
    counted = tts.retrying(**policy)(work)
    return [
        Case("request through `Upstream.transport()`", loop(lambda: bare.get("/v1/speech")),
             loop(lambda: timed.get("/v1/speech"))),
        Case("reference: prometheus_client by hand in httpx event hooks",
             loop(lambda: bare.get("/v1/speech")), loop(lambda: by_hand.get("/v1/speech"))),
        Case("call through `Upstream.retrying()` (over `tenacity.retry`)", loop(plain),
             loop(counted)),
    ], [bare.close, timed.close, by_hand.close]  # fmt: skip


def timed(batch: Batch, calls: int) -> float:
    start = time.thread_time()
    batch(calls)
    return (time.thread_time() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    found, closers = cases()
    for case in found:  # warm up: children created, code paths compiled
        case.bare(200)
        case.instrumented(200)
    gc.disable()
    try:
        for n in range(args.rounds):
            for case in found:
                pair = [("bare", case.bare), ("instrumented", case.instrumented)]
                for which, batch in pair if n % 2 else reversed(pair):
                    result = timed(batch, args.calls)
                    (case.bare_times if which == "bare" else case.times).append(result)
                gc.collect()
    finally:
        gc.enable()
        for close in closers:
            close()
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("httpx", "tenacity"))
    print(f"Python {platform.python_version()}, {versions}; {args.rounds} rounds of "
          f"{args.calls} calls, thread CPU time, median over rounds\n")  # fmt: skip
    print("| Case | Bare call | Overhead per call |")
    print("|---|---|---|")
    for case in found:
        print(f"| {case.name} | {statistics.median(case.bare_times):.1f} µs "
              f"| {case.overhead():.1f} µs |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
