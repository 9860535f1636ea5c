"""What monitoring a fleet costs Prometheus: series and samples/s per monitored replica with
the default metric set, Prometheus's memory and CPU for 1, 10 and 50 simulated replicas, and
an extrapolation to 1,000.

    .venv/bin/python benchmarks/capacity.py --markdown

How:

- A real demo service (``inferwatch demo``, in-memory cache and SQLite) is driven by the
  tests' traffic mix until every route, status, model, pool, cache and job has reported
  once; its ``/metrics`` is then recorded. That exposition is one replica's default metric
  set: its sample lines are the series one replica adds.
- Each simulated replica is a small HTTP server (all in this process, one thread each)
  answering ``/metrics`` with the recorded exposition, its counters, histogram buckets,
  counts and sums advanced by one every scrape, as a live service's move (values that
  never change would compress to nothing and flatter Prometheus).
- A real Prometheus (Debian's package) scrapes N of them as one job, every
  ``--scrape-interval`` (15 s, the production interval), and evaluates the project's
  recording and alerting rules (``alerts/*.yaml``) at the same interval. After a warm-up
  of two scrape intervals, its process CPU time and resident memory are read with psutil
  over ``--window`` seconds, and its head series and appended samples from its own
  ``/metrics``.
- Figures are of one machine and what else it runs; the CPU figure is the mean over the
  window, in cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.support

from tests.support.traffic import Traffic  # noqa: E402

INFERWATCH = Path(sys.executable).parent / "inferwatch"
# Sample lines whose value only grows: advanced every scrape.
_COUNTER = re.compile(r"^(\S+?)(_total|_count|_sum|_bucket|_created)?(\{.*\})? (\S+)(.*)$")
EXTRAPOLATE_TO = 1000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.2)


def record_exposition(seconds: float) -> str:
    """The demo's /metrics after ``seconds`` of the tests' traffic mix."""
    port = free_port()
    demo = subprocess.Popen(
        [str(INFERWATCH), "demo", "--host", "127.0.0.1", "--port", str(port),
         "--time-scale", "0.01"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        with Traffic(base, workers=3):
            time.sleep(seconds)
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            return response.read().decode()
    finally:
        demo.terminate()
        demo.wait(timeout=30)


def series_of(exposition: str) -> int:
    return sum(1 for line in exposition.splitlines() if line and not line.startswith("#"))


class Replica:
    """The recorded exposition, its monotonic samples advanced by one per scrape."""

    def __init__(self, exposition: str) -> None:
        self.lines: list[tuple[str, float | None, str]] = []
        for line in exposition.splitlines():
            found = _COUNTER.match(line) if line and not line.startswith("#") else None
            if found and found.group(2) and found.group(2) != "_created":
                head = f"{found.group(1)}{found.group(2)}{found.group(3) or ''} "
                self.lines.append((head, float(found.group(4)), found.group(5)))
            else:
                self.lines.append((line, None, ""))
        self.scrapes = 0
        self._lock = threading.Lock()

    def body(self) -> bytes:
        with self._lock:
            self.scrapes += 1
            n = self.scrapes
        out = [
            line if value is None else f"{line}{value + n}{tail}"
            for line, value, tail in self.lines
        ]
        return ("\n".join(out) + "\n").encode()


@contextlib.contextmanager
def replicas(exposition: str, count: int) -> Iterator[list[str]]:
    """``count`` HTTP servers of the recorded exposition; their host:port targets."""
    servers: list[ThreadingHTTPServer] = []

    def handler(replica: Replica) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                body = replica.body()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    try:
        for _ in range(count):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler(Replica(exposition)))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        yield [f"127.0.0.1:{s.server_address[1]}" for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@dataclass
class Measured:
    replicas: int
    head_series: int
    samples_per_second: float
    rss_mib: float
    cpu_cores: float


def _prometheus_metric(url: str, name: str) -> float:
    """The sum of Prometheus's own ``name`` over its label sets (2.42 labels appended
    samples by type)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in response.read().decode().splitlines()
            if line.startswith((f"{name} ", f"{name}{{"))
        ]
    if not values:
        raise KeyError(name)
    return sum(values)


def wait_scraped(url: str, series: int, timeout: float) -> None:
    """Until Prometheus holds ``series`` head series: every target scraped once."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(KeyError, OSError):
            if _prometheus_metric(url, "prometheus_tsdb_head_series") >= series:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Prometheus did not reach {series} series in {timeout:g} s")
        time.sleep(0.5)


def measure(exposition: str, count: int, scrape_interval: float, window: float) -> Measured:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("prometheus not found; install it with: sudo apt-get install prometheus")
    with (
        tempfile.TemporaryDirectory(prefix="inferwatch-capacity-") as tmp,
        replicas(exposition, count) as targets,
    ):
        root = Path(tmp)
        (root / "rules").mkdir()
        for name in ("recording_rules.yaml", "alert_rules.yaml"):
            shutil.copy(REPO / "alerts" / name, root / "rules" / name)
        interval = f"{scrape_interval:g}s"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": ["rules/*.yaml"],
            "scrape_configs": [
                {"job_name": "inferwatch-api", "static_configs": [{"targets": targets}]}
            ],
        }
        (root / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [prometheus, f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_http(f"{url}/-/ready")
            wait_scraped(url, count * series_of(exposition), 120 + 4 * scrape_interval)
            time.sleep(scrape_interval)  # and every rule group run once
            proc = psutil.Process(process.pid)
            cpu_before = sum(proc.cpu_times()[:2])
            samples_before = _prometheus_metric(url, "prometheus_tsdb_head_samples_appended_total")
            began = time.monotonic()
            time.sleep(window)
            took = time.monotonic() - began
            cpu = (sum(proc.cpu_times()[:2]) - cpu_before) / took
            samples = _prometheus_metric(url, "prometheus_tsdb_head_samples_appended_total")
            head = _prometheus_metric(url, "prometheus_tsdb_head_series")
            rss = proc.memory_info().rss / 2**20
        finally:
            process.terminate()
            process.wait(timeout=60)
    return Measured(count, int(head), (samples - samples_before) / took, rss, cpu)


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of ys over xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - slope * mx, slope


def report(series: int, scrape_interval: float, rows: list[Measured]) -> str:
    xs = [float(r.replicas) for r in rows]
    rss0, rss1 = fit(xs, [r.rss_mib for r in rows])
    cpu0, cpu1 = fit(xs, [r.cpu_cores for r in rows])
    head0, head1 = fit(xs, [float(r.head_series) for r in rows])
    n = EXTRAPOLATE_TO
    lines = [
        f"One replica exposes **{series} series** with the default metric set: "
        f"**{series / scrape_interval:.0f} samples/s** at a {scrape_interval:g} s scrape "
        "interval.",
        "",
        "| replicas | head series | samples/s appended | Prometheus RSS (MiB) | CPU (cores) |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r.replicas} | {r.head_series} | {r.samples_per_second:.0f} | "
            f"{r.rss_mib:.0f} | {r.cpu_cores:.3f} |"
            for r in rows
        ),
        f"| {n} (extrapolated) | {head0 + head1 * n:.0f} | "
        f"{(head0 + head1 * n) / scrape_interval:.0f} | {rss0 + rss1 * n:.0f} | "
        f"{cpu0 + cpu1 * n:.2f} |",
        "",
        f"Per replica: {head1:.0f} head series (recorded series included), "
        f"{rss1:.2f} MiB and {cpu1 * 1000:.2f} millicores, the slopes of a least-squares line "
        "through the measured rows; the 1,000-replica row is that line.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,10,50", help="comma-separated counts")
    parser.add_argument("--scrape-interval", type=float, default=15.0, metavar="S")
    parser.add_argument("--window", type=float, default=60.0, metavar="S", help="measured")
    parser.add_argument("--traffic", type=float, default=20.0, metavar="S", help="recording")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args()
    exposition = record_exposition(args.traffic)
    series = series_of(exposition)
    print(f"recorded: {series} series per replica", file=sys.stderr)
    rows = []
    for count in (int(c) for c in args.replicas.split(",")):
        rows.append(measure(exposition, count, args.scrape_interval, args.window))
        print(f"measured: {rows[-1]}", file=sys.stderr)
    text = report(series, args.scrape_interval, rows)
    print(text if args.markdown else json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
