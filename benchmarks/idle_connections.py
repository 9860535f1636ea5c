"""Scrapes and service requests while idle connections are held against a service's metrics
port: inferwatch's ``start_metrics_server`` next to prometheus_client's ``start_http_server``.

Each (server, N) cell starts a fresh host service: ``tests/apps/metrics_port_app.py`` under
uvicorn with ``ulimit -n 1024``, its metrics on a port of their own served by one of the two.
This script then holds N connections to the metrics port that each sent half a request head
(``tests/support/flood.py``: a patient attacker that replaces handshakes the server's kernel
dropped), and while it holds them sends as many scrapes of the metrics port as requests to
the service's own port, each over a new connection with a timeout, several at a time. It
reports how many connections the server was offered, the success and median latency of both
kinds of request, and the service's open descriptors and connections on the metrics port.

    .venv/bin/python benchmarks/idle_connections.py [--connections 0,100,1000,2000]
        [--requests N] [--timeout SECONDS] [--settle SECONDS] [--markdown]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TextIO

import psutil
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.support and tests.apps

from tests.support.flood import NOFILE, Flood, half_sent, limited  # noqa: E402
from tests.support.server import LOOPBACK, free_port  # noqa: E402

SERVERS = {
    "inferwatch": "inferwatch `start_metrics_server`",
    "prometheus_client": "prometheus_client `start_http_server`",
}
DEFAULT_CONNECTIONS = (0, 100, 1000, 2000)
DEFAULT_REQUESTS = 50  # of each kind per cell
DEFAULT_TIMEOUT = 2.0
DEFAULT_SETTLE = 15.0
CONCURRENCY = 8
WARMUP = 5  # requests of each kind before the idle connections are opened
START_TIMEOUT = 60.0


@dataclass
class Host:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int

    def descriptors(self) -> int:
        return psutil.Process(self.process.pid).num_fds()

    def held(self) -> int:
        """Connections the service holds on its metrics port (accepted, not listening)."""
        return sum(
            1
            for c in psutil.Process(self.process.pid).net_connections(kind="tcp")
            if c.laddr and c.laddr.port == self.metrics_port and c.status != psutil.CONN_LISTEN
        )


def get(port: int, path: str, timeout: float) -> int:
    """GET over a new connection; the status, or 0 when it failed or timed out."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if path == "/metrics" and response.status == 200:
            list(text_string_to_metric_families(body.decode()))  # a scrape must parse
        return response.status
    except (OSError, http.client.HTTPException, ValueError):
        return 0
    finally:
        conn.close()


@contextmanager
def host(kind: str, log: Path) -> Iterator[Host]:
    port, metrics_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "uvicorn", "tests.apps.metrics_port_app:app",
        "--app-dir", str(REPO), "--host", LOOPBACK, "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    env = {
        **os.environ,
        "METRICS_PORT": str(metrics_port),
        "METRICS_SERVER": kind,
        "PROMETHEUS_MULTIPROC_DIR": "",
    }
    with open(log, "ab") as out:  # appended to by every cell's service
        process = subprocess.Popen(limited(command), env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while get(port, "/healthz", 1.0) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} host service did not start; see {log}")
            time.sleep(0.05)
        yield Host(process, port, metrics_port)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Cell:
    server: str
    connections: int
    offered: int
    scrapes: list[tuple[int, float]]
    requests: list[tuple[int, float]]
    descriptors: int
    held: int


def timed(port: int, path: str, timeout: float) -> tuple[int, float]:
    started = time.perf_counter()
    status = get(port, path, timeout)
    return status, time.perf_counter() - started


def measure(kind: str, connections: int, args: argparse.Namespace, log: Path) -> Cell:
    with ExitStack() as stack:
        service = stack.enter_context(host(kind, log))
        for _ in range(WARMUP):  # imports, first renders, first connections
            get(service.metrics_port, "/metrics", args.timeout)
            get(service.port, "/v1/ping", args.timeout)
        flood = (
            stack.enter_context(half_sent(service.metrics_port, connections, settle=args.settle))
            if connections
            else Flood(0)
        )
        # Scrapes and service requests interleaved, so both see the same moments.
        work = [(service.metrics_port, "/metrics"), (service.port, "/v1/ping")] * args.requests
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(lambda w: timed(*w, args.timeout), work))
        return Cell(
            SERVERS[kind],
            connections,
            flood.held,
            results[0::2],
            results[1::2],
            service.descriptors(),
            service.held(),
        )


def ok(results: Sequence[tuple[int, float]]) -> str:
    return f"{sum(1 for status, _ in results if status == 200)}/{len(results)}"


def median_ms(results: Sequence[tuple[int, float]]) -> str:
    good = [seconds for status, seconds in results if status == 200]
    return f"{statistics.median(good) * 1000:.1f}" if good else "-"


def markdown(cells: Sequence[Cell], command: str, args: argparse.Namespace) -> str:
    lines = [
        f"`{command}`",
        "",
        "| metrics server | idle connections | offered to it | scrapes OK | scrape median ms "
        "| service requests OK | service median ms | service fds | held on metrics port |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in cells:
        lines.append(
            f"| {c.server} | {c.connections} | {c.offered} | {ok(c.scrapes)} "
            f"| {median_ms(c.scrapes)} | {ok(c.requests)} | {median_ms(c.requests)} "
            f"| {c.descriptors} | {c.held} |"
        )
    lines += [
        "",
        f"- The service runs with `ulimit -n {NOFILE}`. Idle connections each sent "
        "`GET /metrics HTTP/1.1\\r\\n` and nothing more; a handshake the server's kernel "
        f"dropped is retried, for up to {args.settle:g} s (*offered to it*: connections the "
        "server accepted or closed, as the kernel says).",
        f"- While they are held: {args.requests} scrapes and {args.requests} requests to "
        f"`GET /v1/ping` on the service's own port, interleaved, {CONCURRENCY} at a time, each "
        f"over a new connection with a {args.timeout:g} s timeout. A scrape counts as OK when "
        "it returns 200 and parses; medians are of the successful ones.",
        f"- Before the idle connections are opened, {WARMUP} untimed requests of each kind. "
        "*service fds* and *held on metrics port*: read from the service process (psutil) "
        "after the timed requests.",
        f"- inferwatch's limits are its defaults: {defaults()}.",
        "",
        environment(),
    ]
    return "\n".join(lines)


def defaults() -> str:
    from inferwatch.exposition import ServerLimits

    limits = ServerLimits()
    return (
        f"{limits.request_timeout:g} s to send a request, {limits.idle_timeout:g} s idle, "
        f"{limits.max_connections} connections"
    )


def environment() -> str:
    cpu = platform.processor() or platform.machine()
    with suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    versions = [f"{p} {metadata.version(p)}" for p in ("prometheus-client", "uvicorn", "h11")]
    return (
        f"Python {platform.python_version()}, {cpu}, {os.cpu_count()} CPUs, "
        f"Linux {platform.release()}; " + ", ".join(versions) + "."
    )


def report(cell: Cell, out: TextIO) -> None:
    print(
        f"{cell.server}, {cell.connections} idle: offered {cell.offered}, "
        f"scrapes {ok(cell.scrapes)}, service {ok(cell.requests)}, fds {cell.descriptors}",
        file=out,
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--connections",
        default=",".join(map(str, DEFAULT_CONNECTIONS)),
        help="idle connections per cell, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_REQUESTS,
        help="scrapes, and as many service requests, per cell (default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per request (default %(default)s)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=DEFAULT_SETTLE,
        help="seconds to get the idle connections to the server (default %(default)s)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="progress to stderr, only the Markdown result to stdout (for the README)",
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.connections.split(",") if n.strip()]
    if args.requests < 1 or args.timeout <= 0 or args.settle <= 0 or min(counts) < 0:
        parser.error("need at least 1 request, a positive timeout and settle time")
    progress = sys.stderr if args.markdown else sys.stdout
    cells = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="iw-idle-") as tmp:
        log = Path(tmp) / "hosts.log"
        try:
            for kind in SERVERS:
                for n in counts:
                    cells.append(measure(kind, n, args, log))
                    report(cells[-1], progress)
        except RuntimeError:
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
            raise
    print(f"done in {time.monotonic() - started:.0f} s\n", file=progress, flush=True)
    options = "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("connections", args.connections, ",".join(map(str, DEFAULT_CONNECTIONS))),
            ("requests", args.requests, DEFAULT_REQUESTS),
            ("timeout", args.timeout, DEFAULT_TIMEOUT),
            ("settle", args.settle, DEFAULT_SETTLE),
        )
        if value != default
    )
    print(markdown(cells, f".venv/bin/python benchmarks/idle_connections.py{options}", args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
