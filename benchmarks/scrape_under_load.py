"""What a scrape costs a service while it serves: inferwatch next to
prometheus-fastapi-instrumentator, each with its default metric set.

The same FastAPI app (``tests/apps/route_matrix_app.py``: N route templates answering GET,
POST, PUT and DELETE with the status asked for) is instrumented once by each library and
served by real uvicorn (uvloop, httptools) in a process of its own, for 20 and for 200 route
templates. Before anything is measured every (method, route, status) of 4 methods x 5
statuses is requested once, so each server holds the series such a service would.

Then, round by round, each server in turn (the order rotated every round) gets ordinary
requests at a steady rate from a load client on loopback, first with nobody scraping (idle),
then with a scraper fetching ``/metrics`` every 0.5 s the way Prometheus does (OpenMetrics
preferred, gzip, one kept-alive connection): what a 15 s scrape interval does to a service,
compressed. Inside each server a task sleeps 10 ms in a loop and records how late it wakes
up (event-loop lag), and a ``gc`` callback records every collection's pause.

Reported per server: samples exposed (lines of one scrape), scrape duration (median, p90),
request latency p50/p99 idle and with the scraper, their ratio, the p99 of the requests
that overlapped a scrape, and the loop lag and gen-2 collections while scraped. Medians
and ratios only: the absolute figures depend on the machine and what else runs on it.

    nice .venv/bin/python benchmarks/scrape_under_load.py [--rounds N] [--seconds S] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.apps

from tests.apps import route_matrix_app  # noqa: E402

HOST = "127.0.0.1"
INFERWATCH = "inferwatch"
INSTRUMENTATOR = "prometheus-fastapi-instrumentator"
VARIANTS = (INFERWATCH, INSTRUMENTATOR)
DEFAULT_ROUTES = (20, 200)
DEFAULT_ROUNDS = 2
DEFAULT_SECONDS = 8.0  # per phase: idle, then scraped
DEFAULT_RATE = 100.0  # requests per second, all load threads together
LOAD_THREADS = 4
SCRAPE_INTERVAL = 0.5
SCRAPE_TIMEOUT = 30.0
LAG_SLEEP = 0.01
TARGET_RATIO = 1.5  # p99 while scraped / idle p99, inferwatch at 20 routes
# What Prometheus 2.x/3.x sends.
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
    "User-Agent": "Prometheus/3.0.0",
}


# -- the server side (a child process per variant) ---------------------------------------------
@dataclass
class Probes:
    """What the server measures about itself, handed over and reset on request."""

    lag: list[float] = field(default_factory=list)
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)  # (generation, seconds)

    def take(self) -> dict[str, Any]:
        lag, self.lag = self.lag, []  # the probes append to the new lists from now on
        pauses, self.gc_pauses = self.gc_pauses, []
        return {"lag": lag, "gc": pauses}


def build_app(variant: str, routes: int) -> Any:
    app = route_matrix_app.build(routes)
    if variant == INFERWATCH:
        import inferwatch

        inferwatch.instrument_app(app)
    else:
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app).expose(app)
    return app


def watch_gc(probes: Probes) -> None:
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            probes.gc_pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(callback)


async def measure_lag(probes: Probes) -> None:
    """Sleep 10 ms, again and again, and record how much later than asked each wake-up is:
    the time the loop spent on something else it could not interrupt."""
    while True:
        asked = time.perf_counter()
        await asyncio.sleep(LAG_SLEEP)
        probes.lag.append(time.perf_counter() - asked - LAG_SLEEP)


def answer_stats(probes: Probes, commands: IO[str], replies: IO[str]) -> None:
    """One JSON line of probe results for every line the parent writes."""
    for _ in commands:
        replies.write(json.dumps(probes.take()) + "\n")
        replies.flush()


def serve(variant: str, routes: int, port: int) -> None:
    import uvicorn

    probes = Probes()
    watch_gc(probes)
    config = uvicorn.Config(
        build_app(variant, routes), host=HOST, port=port, log_level="warning", access_log=False
    )
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # nothing else may write into the reply channel
    threading.Thread(target=answer_stats, args=(probes, sys.stdin, replies), daemon=True).start()

    async def main() -> None:
        probe = asyncio.create_task(measure_lag(probes))
        try:
            await uvicorn.Server(config).serve()
        finally:
            probe.cancel()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())


# -- the client side -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    variant: str
    routes: int
    port: int
    process: subprocess.Popen[str]

    @property
    def name(self) -> str:
        return f"{self.variant}, {self.routes} routes"

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())


@contextmanager
def started(variant: str, routes: int) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", variant, str(routes), str(port)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{variant} ({routes} routes) did not start") from None
                time.sleep(0.05)
        yield Server(variant, routes, port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def request(conn: http.client.HTTPConnection, method: str, path: str, **headers: str) -> bytes:
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    if response.getheader("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return body


def exercise(server: Server) -> None:
    """Every (method, route, status) once: the series the service holds from now on."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    for method, path, status in route_matrix_app.matrix(server.routes):
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        assert response.status == status, (server.name, method, path, response.status)
    conn.close()


def samples_exposed(server: Server) -> int:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=SCRAPE_TIMEOUT)
    body = request(conn, "GET", "/metrics", **SCRAPE_HEADERS).decode()
    conn.close()
    return sum(1 for line in body.splitlines() if line and not line.startswith("#"))


Interval = tuple[float, float]  # (start, end), perf_counter seconds


def load(
    server: Server, rate: float, index: int, stop: threading.Event, out: list[Interval]
) -> None:
    """Load thread ``index``: ordinary GETs on its own kept-alive connection, on a fixed
    schedule, staggered against the other threads'."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    period = LOAD_THREADS / rate
    due = time.perf_counter() + period * index / LOAD_THREADS
    i = index
    while not stop.is_set():
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        start = time.perf_counter()
        request(conn, "GET", route_matrix_app.path(i % server.routes) + "?status=200")
        out.append((start, time.perf_counter()))
        i += 1
        due = max(due + period, start)  # a late request does not make the next ones burst
    conn.close()


def scrape(server: Server, stop: threading.Event, out: list[Interval]) -> None:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=SCRAPE_TIMEOUT)
    due = time.perf_counter()
    while not stop.is_set():
        start = time.perf_counter()
        request(conn, "GET", "/metrics", **SCRAPE_HEADERS)
        out.append((start, time.perf_counter()))
        due += SCRAPE_INTERVAL
        # As Prometheus: the next scrape at the next tick of the interval, never two at once.
        while due < time.perf_counter():
            due += SCRAPE_INTERVAL
        stop.wait(due - time.perf_counter())
    conn.close()


@dataclass
class Phase:
    requests: list[Interval] = field(default_factory=list)
    scrapes: list[Interval] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    gc: list[tuple[int, float]] = field(default_factory=list)


def run_phase(server: Server, seconds: float, rate: float, scraped: bool, into: Phase) -> None:
    server.stats()  # drop what the probes saw before this phase
    stop = threading.Event()
    requests: list[Interval] = []
    threads = [
        threading.Thread(target=load, args=(server, rate, index, stop, requests))
        for index in range(LOAD_THREADS)
    ]
    scrapes: list[Interval] = []
    if scraped:
        threads.append(threading.Thread(target=scrape, args=(server, stop, scrapes)))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    stats = server.stats()
    into.requests += requests
    into.scrapes += scrapes
    into.lag += stats["lag"]
    into.gc += [tuple(pause) for pause in stats["gc"]]


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def overlapping(requests: Sequence[Interval], scrapes: Sequence[Interval]) -> list[float]:
    """Latencies of the requests that were in flight while a scrape was."""
    return [
        end - start
        for start, end in requests
        if any(s_start < end and start < s_end for s_start, s_end in scrapes)
    ]


@dataclass
class Result:
    server: str
    variant: str
    routes: int
    samples: int
    idle: Phase
    scraped: Phase

    def figures(self) -> dict[str, float]:
        idle = [end - start for start, end in self.idle.requests]
        busy = [end - start for start, end in self.scraped.requests]
        scrapes = [end - start for start, end in self.scraped.scrapes]
        gen2 = [pause for generation, pause in self.scraped.gc if generation == 2]
        idle_gen2 = [pause for generation, pause in self.idle.gc if generation == 2]
        return {
            "scrape_p50": statistics.median(scrapes) if scrapes else float("nan"),
            "scrape_p90": quantile(scrapes, 0.9),
            "scrapes": len(scrapes),
            "idle_p50": quantile(idle, 0.5),
            "idle_p99": quantile(idle, 0.99),
            "busy_p50": quantile(busy, 0.5),
            "busy_p99": quantile(busy, 0.99),
            "ratio": quantile(busy, 0.99) / quantile(idle, 0.99),
            "overlap_p99": quantile(overlapping(self.scraped.requests, self.scraped.scrapes), 0.99),
            "requests": len(busy),
            "idle_lag_p99": quantile(self.idle.lag, 0.99),
            "lag_p50": quantile(self.scraped.lag, 0.5),
            "lag_p99": quantile(self.scraped.lag, 0.99),
            "lag_max": max(self.scraped.lag, default=float("nan")),
            "gen2": len(gen2),
            "gen2_max": max(gen2, default=0.0),
            "idle_gen2": len(idle_gen2),
        }


def measure(routes: Sequence[int], rounds: int, seconds: float, rate: float, log) -> list[Result]:
    with ExitStack() as stack:
        servers = [stack.enter_context(started(v, n)) for n in routes for v in VARIANTS]
        results = []
        for server in servers:
            log(f"exercising {server.name}")
            exercise(server)
            samples_exposed(server)  # a first scrape builds what later scrapes reuse
            results.append(
                Result(server.name, server.variant, server.routes, samples_exposed(server),
                       Phase(), Phase())
            )  # fmt: skip
        for r in range(rounds):
            order = servers[r % len(servers) :] + servers[: r % len(servers)]
            for server in order:
                result = results[servers.index(server)]
                log(f"round {r + 1}/{rounds}: {server.name}")
                run_phase(server, seconds, rate, False, result.idle)
                run_phase(server, seconds, rate, True, result.scraped)
        return results


# -- report ---------------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def markdown(results: Sequence[Result], rounds: int, seconds: float, rate: float) -> str:
    rows = [
        "| server | samples | scrape median ms | scrape p90 ms | request p50 / p99 ms idle "
        "| request p50 / p99 ms scraped | p99 scraped / idle | p99 ms overlapping a scrape "
        "| loop lag p50 / p99 / max ms scraped (idle p99) | gen-2 GCs idle / scraped (max ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        f = result.figures()
        rows.append(
            f"| {result.server} | {result.samples:,} | {ms(f['scrape_p50'])} "
            f"| {ms(f['scrape_p90'])} | {ms(f['idle_p50'])} / {ms(f['idle_p99'])} "
            f"| {ms(f['busy_p50'])} / {ms(f['busy_p99'])} | {f['ratio']:.2f}x "
            f"| {ms(f['overlap_p99'])} "
            f"| {ms(f['lag_p50'])} / {ms(f['lag_p99'])} / {ms(f['lag_max'])} "
            f"({ms(f['idle_lag_p99'])}) | {f['idle_gen2']} / {f['gen2']} ({ms(f['gen2_max'])}) |"
        )
    lines = [
        *rows,
        "",
        f"{rounds} rounds; per round and server {seconds:g} s idle, then {seconds:g} s scraped "
        f"every {SCRAPE_INTERVAL:g} s (OpenMetrics, gzip); {rate:g} requests/s from "
        f"{LOAD_THREADS} kept-alive connections throughout. Loop lag: how late a 10 ms sleep "
        "in the server wakes up.",
    ]
    for result in results:
        if result.variant == INFERWATCH and result.routes == 20:
            ratio = result.figures()["ratio"]
            verdict = "met" if ratio <= TARGET_RATIO else f"missed by {ratio / TARGET_RATIO:.2f}x"
            lines += ["", f"inferwatch, 20 routes: p99 scraped / idle p99 = {ratio:.2f}x: "
                          f"target <= {TARGET_RATIO:g}x {verdict}"]  # fmt: skip
    versions = ", ".join(
        f"{p} {metadata.version(p)}"
        for p in ("fastapi", "uvicorn", "prometheus-client", INSTRUMENTATOR)
    )
    lines += ["", f"Python {platform.python_version()}, {platform.machine()}; {versions}."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per phase")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests per second")
    parser.add_argument(
        "--routes", type=lambda text: [int(n) for n in text.split(",")],
        default=list(DEFAULT_ROUTES), help="route template counts, comma-separated",
    )  # fmt: skip
    parser.add_argument("--markdown", action="store_true", help="only the table on stdout")
    parser.add_argument("--serve", nargs=3, metavar=("VARIANT", "ROUTES", "PORT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.serve:
        variant, routes, port = args.serve
        serve(variant, int(routes), int(port))
        return 0
    log: Callable[[str], None] = (
        (lambda text: print(text, file=sys.stderr)) if args.markdown else print
    )
    results = measure(args.routes, args.rounds, args.seconds, args.rate, log)
    print(markdown(results, args.rounds, args.seconds, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
