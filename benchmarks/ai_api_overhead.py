"""Per-call cost of inferwatch's AI APIs (inference requests, model loads, caches) over the
same work done without instrumentation.

Every case is a pair: a bare call and the same call instrumented, each run in batches of
``--calls`` in a tight loop, in-process. Each round runs every pair (the order of the pairs
rotated every round, bare and instrumented alternating which goes first), timed in thread CPU
time; the overhead of a case is the median over rounds of its per-call time minus the bare
call's time in the same round. Async functions are driven without an event loop (they never
suspend), so no scheduler cost hides the instrumentation's. Two inference cases have a
peer, the same bookkeeping written by hand with prometheus_client (the same observations,
the same ``labels()`` lookups): the report gives the ratio of the two overheads, round by
round.

    .venv/bin/python benchmarks/ai_api_overhead.py [--rounds N] [--calls N] [--markdown]
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry

from inferwatch.ai import CacheMetrics, InferenceMetrics, ModelMetrics, instrumented_cache
from inferwatch.ai.buckets import FIRST_CHUNK_SECONDS, INFERENCE_SECONDS

DEFAULT_ROUNDS = 30
DEFAULT_CALLS = 10_000
MODEL = "tts-large"
CACHE_SIZE = 1024

Batch = Callable[[int], None]


@dataclass
class Case:
    name: str
    baseline: str
    bare: Batch
    instrumented: Batch
    note: str = ""
    peer: str = ""  # the name of the case that does the same by hand with prometheus_client
    bare_times: list[float] = field(default_factory=list)  # µs per call, one per round
    times: list[float] = field(default_factory=list)

    def overheads(self) -> list[float]:
        """Per round: instrumented minus bare, both timed in the same round."""
        return [t - b for t, b in zip(self.times, self.bare_times, strict=True)]


def loop(call: Callable[[], object]) -> Batch:
    """``n`` calls of ``call``; bare and instrumented share this loop, so it cancels out."""

    def run(n: int) -> None:
        for _ in range(n):
            call()

    return run


def async_loop(call: Callable[[], Coroutine[Any, Any, object]]) -> Batch:
    async def batch(n: int) -> None:
        for _ in range(n):
            await call()

    def run(n: int) -> None:
        # Driven by hand: nothing awaits a real future, so one send() runs the batch to the
        # end, with no event loop in the timing.
        coro = batch(n)
        try:
            coro.send(None)
        except StopIteration:
            return
        coro.close()
        raise RuntimeError("the benchmark coroutine suspended")

    return run


def noop() -> None:
    pass


async def anoop() -> None:
    pass


def work(x: int) -> int:
    """The cached function's body: as cheap as possible, so only the caching shows."""
    return x


# -- the cases ----------------------------------------------------------------------------------
def inference_cases(registry: CollectorRegistry) -> list[Case]:
    infer = InferenceMetrics(registry)

    def request() -> None:
        with infer.request(MODEL):
            noop()

    def request_stage() -> None:
        with infer.request(MODEL) as r, r.stage("inference"):
            noop()

    def request_streamed() -> None:
        with infer.request(MODEL) as r:
            with r.stage("inference"):
                noop()
            r.first_chunk()
            r.produced(24, "tokens")

    by_hand = HandWritten(CollectorRegistry())
    tracked = infer.track(MODEL)(noop)
    atracked = infer.track(MODEL)(anoop)
    request_name = "`with infer.request(m)`"
    streamed_name = "request + stage + `first_chunk()` + `produced(24)`"
    return [
        Case(request_name, "no-op call", loop(noop), loop(request), peer=by_hand.REQUEST),
        Case(
            '`with infer.request(m) as r, r.stage("inference")`',
            "no-op call",
            loop(noop),
            loop(request_stage),
        ),
        Case(
            streamed_name,
            "no-op call",
            loop(noop),
            loop(request_streamed),
            "a streamed request's full bookkeeping",
            peer=by_hand.STREAMED,
        ),
        Case("`@infer.track(m)` sync function", "plain sync function", loop(noop), loop(tracked)),
        Case(
            "`@infer.track(m)` async function",
            "plain async function",
            async_loop(anoop),
            async_loop(atracked),
        ),
        Case(
            by_hand.REQUEST,
            "no-op call",
            loop(noop),
            loop(by_hand.request),
            "not inferwatch: the same metrics by hand, 4 `labels()` lookups",
        ),
        Case(
            by_hand.STREAMED,
            "no-op call",
            loop(noop),
            loop(by_hand.streamed),
            "not inferwatch: the same metrics by hand, 7 `labels()` lookups",
        ),
    ]


class HandWritten:
    """What ``infer.request`` records, written by hand with prometheus_client: the same
    families, labels and buckets, each value looked up with ``labels()`` where it is written
    (as the facade did before it cached its children), the outcome from try/except."""

    REQUEST = "reference: prometheus_client by hand, the request's bookkeeping"
    STREAMED = "reference: prometheus_client by hand, the streamed request's bookkeeping"

    def __init__(self, registry: CollectorRegistry) -> None:
        pc = prometheus_client
        self.requests = pc.Counter("hw_requests", "R.", ["model", "outcome"], registry=registry)
        self.duration = pc.Histogram(
            "hw_duration_seconds", "D.", ["model", "outcome"], buckets=INFERENCE_SECONDS,
            registry=registry,
        )  # fmt: skip
        self.in_flight = pc.Gauge("hw_in_flight", "F.", ["model"], registry=registry)
        self.stage = pc.Histogram(
            "hw_stage_seconds", "S.", ["model", "stage"], buckets=INFERENCE_SECONDS,
            registry=registry,
        )  # fmt: skip
        self.first = pc.Histogram(
            "hw_first_chunk_seconds", "C.", ["model"], buckets=FIRST_CHUNK_SECONDS,
            registry=registry,
        )  # fmt: skip
        self.output = pc.Counter("hw_output", "O.", ["model", "unit"], registry=registry)

    def request(self, work: Callable[[], None] = noop) -> None:
        self.in_flight.labels(MODEL).inc()
        start = time.perf_counter()
        outcome = "success"
        try:
            work()
        except Exception:
            outcome = "server_error"
            raise
        finally:
            self.in_flight.labels(MODEL).dec()
            elapsed = time.perf_counter() - start
            self.requests.labels(MODEL, outcome).inc()
            self.duration.labels(MODEL, outcome).observe(elapsed)

    def streamed(self) -> None:
        self.request(self._streamed_work)

    def _streamed_work(self) -> None:
        started = time.perf_counter()
        noop()
        self.stage.labels(MODEL, "inference").observe(time.perf_counter() - started)
        self.first.labels(MODEL).observe(time.perf_counter() - started)
        self.output.labels(MODEL, "tokens").inc(24)


def model_cases(registry: CollectorRegistry) -> list[Case]:
    models = ModelMetrics(registry)

    def load() -> None:
        with models.loading(MODEL, device="cuda:0"):
            noop()

    def load_phases() -> None:
        with models.loading(MODEL, device="cuda:0") as m:
            with m.phase("deserialize"):
                noop()
            with m.phase("to_device"):
                noop()

    return [
        Case('`with models.loading(m, device="cuda:0")`', "no-op call", loop(noop), loop(load)),
        Case("same + 2 `load.phase()`", "no-op call", loop(noop), loop(load_phases)),
    ]


def cache_cases(registry: CollectorRegistry) -> list[Case]:
    cached = instrumented_cache("embeddings", max_size=CACHE_SIZE, registry=registry)(work)
    lru = functools.lru_cache(maxsize=CACHE_SIZE)(work)
    memo: dict[int, int] = {}

    def by_hand(x: int) -> int:
        # A hand-written memo, the other usual way to cache without a library.
        try:
            return memo[x]
        except KeyError:
            value = memo[x] = work(x)
            return value

    for f in (cached, lru, by_hand):
        f(7)  # the hit cases always ask for this key

    # Misses: every call a new key, so the full cache evicts one entry per call (the steady
    # state of a cache whose working set is larger than it).
    keys = itertools.count(1_000_000)
    miss_cached = instrumented_cache("prompts", max_size=CACHE_SIZE, registry=registry)(work)
    miss_lru = functools.lru_cache(maxsize=CACHE_SIZE)(work)
    for k in range(CACHE_SIZE):
        miss_cached(k)
        miss_lru(k)

    metrics = CacheMetrics("kv", registry)
    # What counting a hit costs with prometheus_client directly, for reference.
    peer = prometheus_client.Counter(
        "bench_cache_gets", "Cache gets.", ["cache", "result"], registry=CollectorRegistry()
    )
    return [
        Case(
            "`@instrumented_cache` hit",
            "`@functools.lru_cache` hit",
            loop(lambda: lru(7)),
            loop(lambda: cached(7)),
        ),
        Case(
            "`@instrumented_cache` hit",
            "hand-written dict memo, hit",
            loop(lambda: by_hand(7)),
            loop(lambda: cached(7)),
        ),
        Case(
            "`@instrumented_cache` miss (full cache: evicts one)",
            "`@functools.lru_cache` miss (full)",
            loop(lambda: miss_lru(next(keys))),
            loop(lambda: miss_cached(next(keys))),
            "the function itself costs nothing: this is all bookkeeping",
        ),
        Case("`CacheMetrics.hit()`", "no-op call", loop(noop), loop(metrics.hit)),
        Case(
            "reference: prometheus_client `Counter.labels(c, r).inc()`",
            "no-op call",
            loop(noop),
            loop(lambda: peer.labels("kv", "hit").inc()),
            "not inferwatch: the cheapest way to count a hit without it",
        ),
    ]


# -- the run ------------------------------------------------------------------------------------
def timed(batch: Batch, n: int) -> float:
    """CPU µs per call of this thread: nothing here waits, so wall time would only add the
    time other processes held the CPU."""
    gc.collect()  # each batch then pays only for collecting its own garbage
    start = time.thread_time_ns()
    batch(n)
    return (time.thread_time_ns() - start) / n / 1000


def run(cases: Sequence[Case], rounds: int, calls: int, log: Callable[[str], None]) -> None:
    for c in cases:
        c.bare(calls // 10)  # warm-up: first-use label bookkeeping, specialised bytecode
        c.instrumented(calls // 10)
    gc.collect()
    gc.freeze()  # registries and caches out of the collector's way
    for r in range(rounds):
        shift = r % len(cases)
        for c in [*cases[shift:], *cases[:shift]]:
            if r % 2:
                instrumented = timed(c.instrumented, calls)
                bare = timed(c.bare, calls)
            else:
                bare = timed(c.bare, calls)
                instrumented = timed(c.instrumented, calls)
            c.bare_times.append(bare)
            c.times.append(instrumented)
        log(
            f"round {r + 1:>3}/{rounds}: "
            + "  ".join(f"{c.times[-1] - c.bare_times[-1]:.2f}" for c in cases)
            + " µs overhead"
        )


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def markdown(cases: Sequence[Case], command: str, rounds: int, calls: int) -> str:
    lines = [
        f"`{command}`",
        "",
        "| instrumented call | baseline | baseline µs | instrumented µs | overhead µs (median) "
        "| overhead IQR | vs baseline |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        q1, med, q3 = quartiles(c.overheads())  # paired by round
        bare = statistics.median(c.bare_times)
        lines.append(
            f"| {c.name} | {c.baseline} | {bare:.2f} | {statistics.median(c.times):.2f} | "
            f"{med:.2f} | {q1:.2f} .. {q3:.2f} | {statistics.median(c.times) / bare:.1f}x |"
        )
    notes = [f"- {c.name} vs {c.baseline}: {c.note}" for c in cases if c.note]
    return "\n".join(
        [
            *lines,
            "",
            *peer_ratios(cases),
            "",
            f"{rounds} interleaved rounds of {calls} calls per variant, timed in thread CPU "
            "time; µs per call, including the benchmark's loop and the call itself (the same "
            "for both variants). Overhead: per-round difference to the baseline in the same "
            "round; median and interquartile range over rounds. The facades record into one "
            "`CollectorRegistry`, one model label, default buckets.",
            "",
            *notes,
            "",
            environment(),
        ]
    )


def peer_ratios(cases: Sequence[Case]) -> list[str]:
    """For each case with a peer: its overhead over the peer's, per round (both measured in
    the same round), median and interquartile range."""
    by_name = {c.name: c for c in cases}
    lines = [
        "| inferwatch | the same by hand with prometheus_client | overhead ratio (median) "
        "| ratio IQR |",
        "|---|---|---:|---:|",
    ]
    for c in cases:
        peer = by_name.get(c.peer)
        if peer is None:
            continue
        ratios = [
            ours / theirs for ours, theirs in zip(c.overheads(), peer.overheads(), strict=True)
        ]
        q1, med, q3 = quartiles(ratios)
        lines.append(f"| {c.name} | {peer.name} | {med:.2f}x | {q1:.2f} .. {q3:.2f} |")
    return lines if len(lines) > 2 else []


def environment() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return (
        f"Python {platform.python_version()}, {cpu}; "
        f"prometheus-client {metadata.version('prometheus-client')}."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=DEFAULT_CALLS,
        help=f"calls per variant per round (default {DEFAULT_CALLS})",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="progress to stderr, only the Markdown result to stdout (for the README)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 4 or args.calls < 100:
        parser.error("need at least 4 rounds and 100 calls per round")
    progress = sys.stderr if args.markdown else sys.stdout

    def log(line: str) -> None:
        print(line, file=progress, flush=True)

    started = time.monotonic()
    registry = CollectorRegistry()
    cases = [*inference_cases(registry), *model_cases(registry), *cache_cases(registry)]
    run(cases, args.rounds, args.calls, log)
    log(f"done in {time.monotonic() - started:.0f} s\n")
    options = "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("rounds", args.rounds, DEFAULT_ROUNDS),
            ("calls", args.calls, DEFAULT_CALLS),
        )
        if value != default
    )
    command = f".venv/bin/python benchmarks/ai_api_overhead.py{options} --markdown"
    print(markdown(cases, command, args.rounds, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
