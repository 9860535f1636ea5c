"""Per-request cost of inferwatch's HTTP middleware over a bare FastAPI app, next to its peers.

Every variant is a fresh FastAPI app with the same routes, driven in-process: the ASGI app is
awaited directly with prebuilt scopes and a no-op ``send``, so no socket, server or client
is timed. Each round interleaves the variants in slices of 100 requests (the order rotated
every slice), timed in thread CPU time; the overhead of a variant is the median over rounds of
its per-request time minus the bare app's time in the same round, which cancels most of the
drift of a busy machine. Every figure is reported as a ratio with its spread over rounds (to
the bare request, and inferwatch's overhead to each peer's), never as a verdict against an
absolute target: absolute microseconds depend on the machine and its load.

The measurement runs twice: in this process (single-process mode), and in a child process
with ``PROMETHEUS_MULTIPROC_DIR`` set before anything is imported (multiprocess mode, each
value also written to the directory's files). There the peers run on prometheus_client's own
multiprocess values, in files of their own, as they would in a process without inferwatch;
OpenTelemetry has no multiprocess mode and sits that run out.

    .venv/bin/python benchmarks/http_overhead.py [--rounds N] [--requests N] [--mode M] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
App = Callable[[dict[str, Any], Receive, Callable[[Message], Awaitable[None]]], Awaitable[None]]

BARE = "bare FastAPI"
SLICE = 100  # requests one variant serves before the next takes over
DEFAULT_ROUNDS = 30
DEFAULT_REQUESTS = 2000
INFERWATCH = "inferwatch"
SINGLE, MULTIPROCESS = "single-process", "multiprocess"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The process identifier of the peers' prometheus_client values in multiprocess mode: their
# files (``counter_peers<pid>.db``) are theirs alone, never inferwatch's.
PEERS_FILES = "peers"


# -- the application every variant serves ----------------------------------------------------
class GenerateRequest(BaseModel):
    prompt: str
    voice: str = "alloy"
    max_seconds: float = 10.0


def build_app() -> FastAPI:
    """A small model-serving API; identical for every variant."""
    app = FastAPI()

    # async endpoints: sync ones would run in a thread pool whose hand-off dwarfs the
    # middleware cost we want to see.
    @app.get("/v1/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "name": f"item-{item_id}", "tags": ["tts", "en"]}

    @app.post("/v1/audio/generate")
    async def generate(request: GenerateRequest) -> dict[str, Any]:
        return {"job": "j-1", "voice": request.voice, "chars": len(request.prompt)}

    @app.get("/v1/audio/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(3):
                yield f"data: chunk {i}\n\n".encode()

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


def add_plain_metrics_route(app: FastAPI) -> None:
    """Variants without a Prometheus endpoint get one too, so every router holds the same
    number of routes (the 404 path is matched against all of them)."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse("")


# -- variants ----------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    short: str  # for the progress lines
    app: App
    count_series: Callable[[], int]
    note: str = ""
    times: list[float] = field(default_factory=list)  # µs per request, one per round


def prometheus_series(registry: Any, prefix: str = "") -> int:
    """Samples a scrape would return, without ``_created`` (inferwatch does not emit them
    and they are commonly disabled), optionally only for metrics starting with ``prefix``."""
    return sum(
        1
        for family in registry.collect()
        if family.name.startswith(prefix)
        for sample in family.samples
        if not sample.name.endswith("_created")
    )


def bare_variant() -> Variant:
    app = build_app()
    add_plain_metrics_route(app)
    return Variant(BARE, "bare", app, lambda: 0)


def inferwatch_variant() -> Variant:
    import inferwatch

    app = build_app()
    registry = CollectorRegistry()
    inferwatch.instrument_app(app, registry=registry)  # defaults: every HTTP metric on
    count = lambda: prometheus_series(registry)  # noqa: E731
    note = "default settings"
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        from inferwatch.metrics.multiprocess import CompactingCollector

        # The values are in the directory: count what a scrape of it gives for inferwatch's
        # HTTP families (the peers' files are there too).
        collector = CompactingCollector(None, path=directory)
        count = lambda: prometheus_series(collector, "http_server_")  # noqa: E731
        note += "; its own multiprocess store"
    return Variant(INFERWATCH, "inferwatch", app, count, note)


def peers_use_prometheus_client_values() -> None:
    """In multiprocess mode, give the peers prometheus_client's own file-backed values (as in
    a process without inferwatch, whose import made its store prometheus_client's value
    class), writing files of their own."""
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue(lambda: f"{PEERS_FILES}{os.getpid()}")


def instrumentator_variant() -> Variant:
    from prometheus_fastapi_instrumentator import Instrumentator

    app = build_app()
    registry = CollectorRegistry()
    Instrumentator(registry=registry).instrument(app).expose(app)
    return Variant(
        "prometheus-fastapi-instrumentator",
        "instrumentator",
        app,
        lambda: prometheus_series(registry),
        "default metrics",
    )


def starlette_exporter_variant() -> Variant:
    from prometheus_client import REGISTRY
    from starlette_exporter import PrometheusMiddleware, handle_metrics

    app = build_app()
    app.add_middleware(PrometheusMiddleware)
    app.add_route("/metrics", handle_metrics)
    # starlette-exporter keeps its metrics on the class, in the global registry: count
    # only its own families there.
    return Variant(
        "starlette-exporter",
        "starlette-exporter",
        app,
        lambda: prometheus_series(REGISTRY, "starlette_"),
        "default metrics; global registry only",
    )


def build_variants(multiprocess: bool) -> list[Variant]:
    variants = [bare_variant(), inferwatch_variant()]
    if multiprocess:
        peers_use_prometheus_client_values()
    peers = [instrumentator_variant(), starlette_exporter_variant()]
    if multiprocess:
        for v in peers:
            v.note += "; prometheus_client's multiprocess values"
    else:  # OpenTelemetry has no multiprocess mode
        peers += [otel_variant(tracing=False), otel_variant(tracing=True)]
    return variants + peers


def otel_variant(*, tracing: bool) -> Variant:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import NoOpTracerProvider

    class DiscardingExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    # A pull reader: metrics are aggregated exactly as for a periodic exporter, but no
    # background thread wakes up during the other variants' rounds.
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider: Any
    if tracing:
        # Spans are built, ended and handed to a processor, then dropped: the in-request cost
        # of tracing without any export work (a BatchSpanProcessor adds its thread on top).
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
    else:
        tracer_provider = NoOpTracerProvider()

    app = build_app()
    add_plain_metrics_route(app)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, meter_provider=meter_provider
    )

    def count() -> int:
        data = reader.get_metrics_data()
        series = 0
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        # as Prometheus would store it: a series per bucket, plus sum and count
                        buckets = getattr(point, "bucket_counts", None)
                        series += len(buckets) + 2 if buckets is not None else 1
        return series

    if tracing:
        name, short, note = "opentelemetry (metrics + tracing)", "otel+trace", "SDK tracer"
    else:
        name, short, note = "opentelemetry (metrics only)", "otel", "no-op tracer"
    return Variant(name, short, app, count, note + "; in-memory metric reader, no export")


# -- the request mix ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    scope: dict[str, Any]
    message: Message  # the request body, as one http.request message
    expected_status: int

    def receive(self) -> Receive:
        """A fresh ``receive`` for one run of this request."""
        return ServerReceive(self.message)


class ServerReceive:
    """``receive`` as an ASGI server gives it (uvicorn's, for one): the request body once,
    then a wait for the next event, here a disconnect that never comes. Nothing in the apps
    waits for it (spec 2.4: no disconnect listener); a middleware that asks without waiting
    whether the client is gone is told it would wait, as a real server tells it."""

    __slots__ = ("_message",)

    def __init__(self, message: Message) -> None:
        self._message: Message | None = message

    async def __call__(self) -> Message:
        message = self._message
        if message is not None:
            self._message = None
            return message  # never mutated downstream, so one dict serves every request
        await asyncio.get_running_loop().create_future()  # never set
        raise AssertionError("unreachable: nothing sets the future")


def make_request(method: str, path: str, body: bytes = b"", status: int = 200) -> Request:
    headers = [(b"host", b"api.example.com"), (b"user-agent", b"bench/1.0")]
    if body:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    scope = {
        "type": "http",
        # spec 2.4: StreamingResponse streams inline instead of starting a task group to
        # listen for disconnects, which would only add event-loop noise to every variant.
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    return Request(scope, message, status)


def request_mix(n: int) -> list[Request]:
    """A deterministic block of 20 requests repeated: 60 % JSON GET, 20 % POST with a JSON
    body, 10 % streamed, 10 % unmatched (404)."""
    body = json.dumps({"prompt": "Hello there, this is a test.", "voice": "nova"}).encode()
    block = [make_request("GET", f"/v1/items/{i}") for i in range(1, 13)]
    block += [make_request("POST", "/v1/audio/generate", body) for _ in range(4)]
    block += [make_request("GET", "/v1/audio/stream") for _ in range(2)]
    block += [make_request("GET", f"/v1/missing/{i}", status=404) for i in range(2)]
    random.Random(7).shuffle(block)
    return [block[i % len(block)] for i in range(n)]


async def _discard(message: Message) -> None:
    pass


async def drive(app: App, requests: Sequence[Request]) -> float:
    """Serve ``requests`` one after another; return CPU µs per request.

    The clock is this thread's CPU time, not wall time: nothing here waits, so the two differ
    only by the time other processes held the CPU, which is noise on a shared machine.
    """
    start = time.thread_time_ns()
    for r in requests:
        # Starlette writes into the scope (route, path_params, ...): each request gets a copy.
        await app(dict(r.scope), r.receive(), _discard)
    return (time.thread_time_ns() - start) / len(requests) / 1000


async def check(variant: Variant, requests: Sequence[Request]) -> None:
    """Fail loudly if a variant does not serve the mix like the bare app does."""
    for r in requests:
        status: list[int] = []
        body: list[bytes] = []

        async def send(
            message: Message, status: list[int] = status, body: list[bytes] = body
        ) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await variant.app(dict(r.scope), r.receive(), send)
        if status != [r.expected_status] or not b"".join(body):
            raise SystemExit(f"{variant.name}: {r.scope['method']} {r.scope['path']} -> {status}")


# -- statistics --------------------------------------------------------------------------------
def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


@dataclass
class Spread:
    """The median of per-round figures and their interquartile range."""

    median: float
    q1: float
    q3: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        q1, med, q3 = quartiles(values)
        return cls(med, q1, q3)

    def show(self, fmt: str = ".1f", suffix: str = "") -> str:
        return f"{self.median:{fmt}}{suffix} ({self.q1:{fmt}} .. {self.q3:{fmt}})"


@dataclass
class Row:
    name: str
    per_request: float
    overhead: Spread | None = None
    of_bare: Spread | None = None  # overhead / bare request, per round
    ours_over_this: Spread | None = None  # inferwatch's overhead / this one's, per round
    series: int = 0
    note: str = ""


def summarize(variants: Sequence[Variant]) -> list[Row]:
    bare = variants[0].times
    ours = next(v for v in variants if v.name == INFERWATCH)
    ours_diffs = [t - b for t, b in zip(ours.times, bare, strict=True)]
    rows = [Row(variants[0].name, statistics.median(bare))]
    for v in variants[1:]:
        diffs = [t - b for t, b in zip(v.times, bare, strict=True)]  # paired by round
        rows.append(
            Row(
                v.name,
                statistics.median(v.times),
                Spread.of(diffs),
                Spread.of([d / b for d, b in zip(diffs, bare, strict=True)]),
                None
                if v is ours
                else Spread.of([o / d for o, d in zip(ours_diffs, diffs, strict=True)]),
                v.count_series(),
                v.note,
            )
        )
    return rows


def markdown(mode: str, rows: Sequence[Row]) -> str:
    lines = [
        f"{mode}:",
        "",
        "| variant | µs / request | overhead µs, median (IQR) | overhead / bare request "
        "| inferwatch's overhead / this one's | series exposed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.overhead is None or r.of_bare is None:
            lines.append(f"| {r.name} | {r.per_request:.1f} | — | — | — | — |")
            continue
        versus = r.ours_over_this.show(".2f", "x") if r.ours_over_this else "—"
        lines.append(
            f"| {r.name} | {r.per_request:.1f} | {r.overhead.show()} | "
            f"{r.of_bare.show('.2f', 'x')} | {versus} | {r.series} |"
        )
    peers = [r for r in rows if r.ours_over_this is not None and r.overhead is not None]
    cheapest = min(peers, key=lambda r: r.overhead.median)  # type: ignore[union-attr]
    assert cheapest.ours_over_this is not None
    notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(
        [
            *lines,
            "",
            f"inferwatch's overhead is {cheapest.ours_over_this.show('.2f', 'x')} the "
            f"cheapest peer's ({cheapest.name}), median (interquartile range) of the "
            "per-round ratios.",
            "",
            *notes,
        ]
    )


def explanation(rounds: int, requests: int) -> str:
    return (
        f"{rounds} interleaved rounds of {requests} requests per variant (60 % JSON GET, "
        "20 % JSON POST, 10 % streamed, 10 % 404), timed in thread CPU time. Overhead: "
        "per-round difference to the bare app in the same round; every ratio is taken round "
        "by round, then its median and interquartile range (in brackets) are given. Series: "
        "samples one scrape returns after the run, `_created` excluded (OTel histograms "
        "counted as Prometheus stores them: a series per bucket plus sum and count)."
    )


def environment() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    packages = [
        "fastapi",
        "starlette",
        "prometheus-client",
        "prometheus-fastapi-instrumentator",
        "starlette-exporter",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-fastapi",
    ]
    versions = []
    for p in packages:
        try:
            versions.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{p} (missing)")
    return f"Python {platform.python_version()}, {cpu}; " + ", ".join(versions) + "."


# -- main --------------------------------------------------------------------------------------
async def run(
    variants: list[Variant], rounds: int, per_round: int, log: Callable[[str], None]
) -> None:
    requests = request_mix(per_round)
    for v in variants:
        await check(v, requests[:20])
        await drive(v.app, requests[: min(per_round, 2000)])  # warm caches and lazy setup
    # Long-lived objects (apps, pydantic models) out of the collector's way: each batch then
    # pays only for collecting the garbage it made itself.
    gc.collect()
    gc.freeze()
    # A round interleaves the variants slice by slice (order rotated every slice), so a burst
    # of load from elsewhere on the machine lands on all of them rather than on one.
    slices = [requests[i : i + SLICE] for i in range(0, per_round, SLICE)]
    turn = 0
    for r in range(rounds):
        spent = dict.fromkeys([v.name for v in variants], 0.0)
        for chunk in slices:
            shift = turn % len(variants)
            turn += 1
            for v in variants[shift:] + variants[:shift]:
                gc.collect()
                spent[v.name] += await drive(v.app, chunk) * len(chunk)
        for v in variants:
            v.times.append(spent[v.name] / per_round)
        log(
            f"round {r + 1:>3}/{rounds}: "
            + "  ".join(f"{v.short} {v.times[-1]:.1f}" for v in variants)
            + " µs/req"
        )


def measure(
    multiprocess: bool, rounds: int, per_round: int, log: Callable[[str], None]
) -> list[Row]:
    variants = build_variants(multiprocess)
    asyncio.run(run(variants, rounds, per_round, log))
    return summarize(variants)


def measure_in_child(rounds: int, per_round: int) -> list[Row]:
    """The multiprocess run, in a child process whose environment names a fresh directory
    before Python starts (prometheus_client picks its value class when first imported)."""
    with tempfile.TemporaryDirectory(prefix="iw-http-multiproc-") as directory:
        child = subprocess.run(
            [sys.executable, __file__, "--child", "--rounds", str(rounds), "--requests",
             str(per_round)],
            env={**os.environ, MULTIPROC_ENV: directory},
            stdout=subprocess.PIPE,
            check=True,
        )  # fmt: skip
    return [
        Row(
            r["name"],
            r["per_request"],
            *(Spread(**r[k]) if r[k] else None for k in ("overhead", "of_bare", "ours_over_this")),
            r["series"],
            r["note"],
        )
        for r in json.loads(child.stdout)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_REQUESTS,
        help=f"requests per variant per round (default {DEFAULT_REQUESTS})",
    )
    parser.add_argument(
        "--mode",
        choices=["both", "single", "multiprocess"],
        default="both",
        help="single-process, multiprocess or both runs (default both)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="progress to stderr, only the Markdown result to stdout (for the README)",
    )
    # The multiprocess run's child: progress to stderr, its rows as JSON to stdout.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 4 or args.requests < 20:
        parser.error("need at least 4 rounds and 20 requests per round")
    progress = sys.stderr if args.markdown or args.child else sys.stdout

    def log(line: str) -> None:
        print(line, file=progress, flush=True)

    if args.child:
        if not os.environ.get(MULTIPROC_ENV):
            parser.error(f"--child needs {MULTIPROC_ENV}")
        rows = measure(True, args.rounds, args.requests, log)
        print(json.dumps([dataclasses.asdict(r) for r in rows]))
        return 0

    started = time.monotonic()
    results = []
    if args.mode in ("both", "single"):
        log(f"{SINGLE}:")
        results.append((SINGLE, measure(False, args.rounds, args.requests, log)))
    if args.mode in ("both", "multiprocess"):
        log(f"{MULTIPROCESS} (child process, {MULTIPROC_ENV} set):")
        results.append((MULTIPROCESS, measure_in_child(args.rounds, args.requests)))
    log(f"done in {time.monotonic() - started:.0f} s\n")
    options = "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("rounds", args.rounds, DEFAULT_ROUNDS),
            ("requests", args.requests, DEFAULT_REQUESTS),
            ("mode", args.mode, "both"),
        )
        if value != default
    )
    command = f".venv/bin/python benchmarks/http_overhead.py{options} --markdown"
    parts = [f"`{command}`", ""]
    for mode, rows in results:
        parts += [markdown(mode, rows), ""]
    parts += [explanation(args.rounds, args.requests), "", environment()]
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
