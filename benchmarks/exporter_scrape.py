"""Cost of one scrape of inferwatch's standalone exporter with every collector on, next to
prometheus_client's own default registry.

Each exporter runs in a child process of its own, started from this script, so its CPU time
is its own: the child reports ``time.process_time_ns()`` (every thread, nanosecond
resolution) on request through a pipe. The collectors are the real ones: host (psutil), GPU
through the simulated NVML of ``tests/fakes`` (no GPU here), and Redis and PostgreSQL
against real servers this script starts on free loopback ports. The result cache is off
(``cache_ttl=0``), so every scrape really collects. The client is ``http.client`` with the
headers Prometheus sends (OpenMetrics preferred, gzip); a round scrapes each exporter in
turn, the order rotated every round. After the rounds, Redis is stopped, then frozen with
SIGSTOP, to show what a dead or hung backend does to a scrape.

    .venv/bin/python benchmarks/exporter_scrape.py [--rounds N] [--scrapes N] [--gpus N]
        [--outage-scrapes N] [--markdown]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import importlib.util
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO

DEFAULT_ROUNDS = 20
DEFAULT_SCRAPES = 10  # per exporter per round: 200 scrapes each with the defaults
DEFAULT_GPUS = 2
DEFAULT_OUTAGE_SCRAPES = 20
FROZEN_SCRAPES = 3  # each one waits for the Redis client's socket timeout
WARMUP_SCRAPES = 5

# What Prometheus 2.x sends by default: OpenMetrics preferred, gzip accepted.
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.53.0",
}
BASELINE = "prometheus_client default registry"
SAMPLE = re.compile(r'^(inferwatch_\w+)(?:\{collector="(\w+)"\})? (\S+)', re.MULTILINE)
REPO = Path(__file__).resolve().parents[1]


# -- the exporter side: runs in a child process -----------------------------------------------
class _Setattr:
    """The one method of pytest's ``monkeypatch`` that ``FakeNvml.install`` uses; the
    patches live as long as the child process."""

    def setattr(self, target: object, name: str, value: object) -> None:
        setattr(target, name, value)


def nagle_disabled() -> bool:
    """Whether inferwatch's metrics server already sets TCP_NODELAY on its sockets: it
    does, since asyncio (under uvicorn) sets it on every TCP connection it accepts."""
    return True


def serve(
    kind: str, gpus: int, redis_url: str | None, postgres_url: str | None, nodelay: bool
) -> int:
    """Serve one exporter on a free loopback port, print the port, then answer ``cpu`` lines
    on stdin with this process's CPU time in ns until stdin closes."""
    if kind == "baseline":
        from prometheus_client import start_http_server

        # The default registry: ProcessCollector, PlatformCollector and GCCollector.
        server, _ = start_http_server(0, addr="127.0.0.1")
        port = server.server_port
    else:
        sys.path.insert(0, str(REPO))  # for tests.fakes
        from inferwatch.exporters import ExporterConfig, start_exporter
        from tests.fakes.fake_nvml import FakeGpu, FakeNvml

        FakeNvml([FakeGpu(f"GPU-{i:08x}-bench") for i in range(gpus)]).install(_Setattr())
        # Defaults as `inferwatch exporter` has them, but no result cache: every scrape
        # collects. The collectors come from the URLs, exactly as on the command line.
        config = ExporterConfig(
            host="127.0.0.1", port=0, cache_ttl=0.0, redis_url=redis_url, postgres_url=postgres_url
        )
        port = start_exporter(config).port
    print(port, flush=True)
    for line in sys.stdin:
        if line.strip() == "cpu":
            print(time.process_time_ns(), flush=True)
    return 0


# -- backends: real servers on free loopback ports --------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:g} s")
        time.sleep(0.05)


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Redis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: redis_answers(self.port), 10, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server only dies once resumed
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP: the kernel still accepts connections, nothing ever answers (a hung
        server, the worst case for a client)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)


def find_pg_ctl() -> str | None:
    with suppress(OSError, subprocess.CalledProcessError):
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if os.access(Path(bindir, "pg_ctl"), os.X_OK):
            return str(Path(bindir, "pg_ctl"))
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    return str(found[-1]) if found else shutil.which("pg_ctl")


class Postgres:
    """A throw-away cluster. initdb and postgres refuse to run as root, so as root every
    pg_ctl call runs as the ``postgres`` system user, which then owns the cluster's directory."""

    def __init__(self, directory: Path, pg_ctl: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.data = directory / "data"
        self.pg_ctl = pg_ctl
        self.started = False
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(directory, user.pw_uid, user.pw_gid)
            self.as_postgres = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        # cwd /: the postgres user may not be able to enter ours.
        subprocess.run(
            [*self.as_postgres, self.pg_ctl, *args], cwd="/", check=True, capture_output=True
        )

    def start(self) -> None:
        self._pg_ctl("initdb", "-s", "-D", str(self.data), "-o", "-A trust -U postgres --no-sync")
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.directory} -c fsync=off "
            "-c max_connections=20 -c shared_buffers=16MB"
        )
        log = str(self.directory / "postgres.log")
        self._pg_ctl("start", "-s", "-w", "-D", str(self.data), "-l", log, "-o", options)
        self.started = True

    def stop(self) -> None:
        if self.started:
            self._pg_ctl("stop", "-s", "-D", str(self.data), "-m", "immediate")
            self.started = False


def backend_status() -> dict[str, str]:
    """Why a backend collector cannot be measured here, or "" when it can."""
    status = {}
    for name, package, program in (
        ("redis", "redis", shutil.which("redis-server")),
        ("postgres", "psycopg", find_pg_ctl()),
    ):
        if importlib.util.find_spec(f"inferwatch.exporters.{name}") is None:
            status[name] = "no such collector in this version"
        elif importlib.util.find_spec(package) is None:
            status[name] = f"Python package {package} not installed"
        elif program is None:
            status[name] = "server not installed"
        else:
            status[name] = ""
    return status


# -- the scraping side --------------------------------------------------------------------------
@dataclass
class Scrape:
    seconds: float
    body: bytes  # decompressed
    wire_bytes: int

    def values(self) -> dict[tuple[str, str], float]:
        """inferwatch samples without labels or with only a ``collector`` label."""
        text = self.body.decode()
        return {(m[1], m[2] or ""): float(m[3]) for m in SAMPLE.finditer(text)}

    def series(self) -> int:
        """Sample lines, ``_created`` excluded (Prometheus drops them by default)."""
        return sum(
            1
            for line in self.body.decode().splitlines()
            if line and not line.startswith("#") and "_created" not in line.split(" ", 1)[0]
        )


@dataclass
class Target:
    name: str
    short: str
    collectors: str
    proc: subprocess.Popen[str]
    port: int
    conn: http.client.HTTPConnection
    latencies: list[float] = field(default_factory=list)  # s per scrape
    cpu: list[float] = field(default_factory=list)  # s per scrape, one per round
    durations: dict[str, list[float]] = field(default_factory=dict)  # collector -> s
    failures: dict[str, int] = field(default_factory=dict)
    last: Scrape | None = None

    def cpu_ns(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def scrape(self) -> Scrape:
        start = time.perf_counter()
        self.conn.request("GET", "/metrics", headers=SCRAPE_HEADERS)
        response = self.conn.getresponse()
        raw = response.read()
        seconds = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}")
        # Decompressing is the scraper's cost, not the exporter's: outside the timing.
        gzipped = response.getheader("Content-Encoding") == "gzip"
        body = gzip.decompress(raw) if gzipped else raw
        self.last = Scrape(seconds, body, len(raw))
        return self.last

    def record(self, scrape: Scrape) -> None:
        self.latencies.append(scrape.seconds)
        for (name, collector), value in scrape.values().items():
            if name == "inferwatch_exporter_collector_duration_seconds":
                self.durations.setdefault(collector, []).append(value)
            elif name == "inferwatch_exporter_collector_success" and value != 1:
                self.failures[collector] = self.failures.get(collector, 0) + 1


def start_target(
    name: str, short: str, collectors: str, argv: Sequence[str], log_file: IO[str]
) -> Target:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log_file,  # collector warnings (the outage) would garble the progress lines
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"{name} did not start (see its log)")
    port = int(line)
    # One kept-alive connection, as Prometheus holds one per target; http.client reopens
    # it by itself when a server closes it after each response (prometheus_client's does).
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return Target(name, short, collectors, proc, port, conn)


def stop_target(target: Target) -> None:
    target.conn.close()
    with suppress(OSError):
        assert target.proc.stdin is not None
        target.proc.stdin.close()
    try:
        target.proc.wait(5)
    except subprocess.TimeoutExpired:
        target.proc.kill()
        target.proc.wait()


# -- statistics ---------------------------------------------------------------------------------
def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def widest(targets: Sequence[Target]) -> Target:
    """The unpatched inferwatch exporter with the most collectors."""
    return next((t for t in targets if t.short == "all"), targets[1])


@dataclass
class Outage:
    scenario: str
    latencies: list[float]
    redis_durations: list[float]
    redis_success: list[float]
    redis_up: list[float]
    others_ok: bool
    recovered_after: int | None  # scrapes until redis_up 1 again


# -- the run ------------------------------------------------------------------------------------
def run_rounds(
    targets: Sequence[Target], rounds: int, per_round: int, log: Callable[[str], None]
) -> None:
    for t in targets:
        for _ in range(WARMUP_SCRAPES):  # NVML init, first psutil reads, backend connections
            t.scrape()
    for r in range(rounds):
        shift = r % len(targets)
        for t in [*targets[shift:], *targets[:shift]]:
            before = t.cpu_ns()
            scrapes = [t.scrape() for _ in range(per_round)]
            t.cpu.append((t.cpu_ns() - before) / 1e9 / per_round)
            for s in scrapes:
                t.record(s)
        log(
            f"round {r + 1:>3}/{rounds}: "
            + "  ".join(
                f"{t.short} {ms(statistics.median(t.latencies[-per_round:]))} ms "
                f"(cpu {ms(t.cpu[-1])})"
                for t in targets
            )
        )


def outage(target: Target, scenario: str, scrapes: int) -> Outage:
    latencies, durations, success, up = [], [], [], []
    others_ok = True
    for _ in range(scrapes):
        s = target.scrape()
        values = s.values()
        latencies.append(s.seconds)
        durations.append(values[("inferwatch_exporter_collector_duration_seconds", "redis")])
        success.append(values[("inferwatch_exporter_collector_success", "redis")])
        up.append(values.get(("inferwatch_redis_up", ""), float("nan")))
        others_ok &= all(
            v == 1
            for (name, collector), v in values.items()
            if name == "inferwatch_exporter_collector_success" and collector != "redis"
        )
    return Outage(scenario, latencies, durations, success, up, others_ok, None)


def recovery(target: Target, limit: int = 50) -> int | None:
    """Scrapes until ``inferwatch_redis_up`` is 1 again (None: not within ``limit``)."""
    for n in range(1, limit + 1):
        if target.scrape().values().get(("inferwatch_redis_up", "")) == 1:
            return n
        time.sleep(0.05)
    return None


def markdown(
    command: str,
    targets: Sequence[Target],
    status: dict[str, str],
    outages: Sequence[Outage],
    args: argparse.Namespace,
) -> str:
    base = targets[0]
    base_cpu = statistics.median(base.cpu)
    lines = [
        f"`{command}`",
        "",
        "| exporter | collectors | series | body KiB (gzip on the wire) | latency median ms "
        "| p90 ms | IQR ms | exporter CPU ms / scrape | CPU IQR | CPU vs baseline |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in targets:
        assert t.last is not None
        q1, med, q3 = quartiles(t.latencies)
        c1, cmed, c3 = quartiles(t.cpu)
        lines.append(
            f"| {t.name} | {t.collectors} | {t.last.series()} | "
            f"{len(t.last.body) / 1024:.1f} ({t.last.wire_bytes / 1024:.1f}) | {ms(med)} | "
            f"{ms(p90(t.latencies))} | {ms(q1)} .. {ms(q3)} | {ms(cmed)} | "
            f"{ms(c1)} .. {ms(c3)} | {cmed / base_cpu:.1f}x |"
        )
    full = widest(targets)
    lines += [
        "",
        f"Per collector, {full.name} ({len(full.latencies)} scrapes), from its own "
        "`inferwatch_exporter_collector_duration_seconds` (collectors run in parallel threads, "
        "so the scrape takes about as long as the slowest one):",
        "",
        "| collector | run median ms | p90 ms | max ms | failed runs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in full.durations.items():
        lines.append(
            f"| {name} | {ms(statistics.median(values))} | {ms(p90(values))} | "
            f"{ms(max(values))} | {full.failures.get(name, 0)} |"
        )
    for name, why in status.items():
        if why:
            lines.append(f"| {name} | not available: {why} | — | — | — |")
    if outages:
        from inferwatch.exporters.collector import DEFAULT_TIMEOUT

        client = redis_client_timeout()
        lines += [
            "",
            f"Redis down, same exporter (default collector timeout {DEFAULT_TIMEOUT:g} s"
            + (
                f"; the Redis client's socket timeout derived from it: {client:g} s"
                if client
                else ""
            )
            + "):",
            "",
            "| redis | scrapes | latency median ms | max ms | redis collector run ms (median) "
            "| redis success | `inferwatch_redis_up` | other collectors | back to up 1 after |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for o in outages:
            lines.append(
                f"| {o.scenario} | {len(o.latencies)} | {ms(statistics.median(o.latencies))} | "
                f"{ms(max(o.latencies))} | {ms(statistics.median(o.redis_durations))} | "
                f"{max(o.redis_success):g} | {max(o.redis_up):g} | "
                f"{'all success 1' if o.others_ok else 'SOME FAILED'} | "
                f"{o.recovered_after if o.recovered_after is not None else 'not within 50'} "
                "scrape(s) |"
            )
    lines += [
        "",
        f"{args.rounds} rounds of {args.scrapes} scrapes per exporter, the exporters taking "
        "turns (order rotated every round), each in its own process on a loopback port, "
        "scraped over one kept-alive HTTP/1.1 connection with Prometheus's `Accept` "
        "(OpenMetrics) and `Accept-Encoding: gzip` headers. Latency: request sent to body "
        "read, per scrape, over all scrapes. Exporter CPU: the exporter process's CPU time "
        "(all threads) per scrape, per round; median and interquartile range over rounds. "
        "The inferwatch exporters run with `cache_ttl=0`, so every scrape runs every "
        "collector. Series: sample lines of one scrape, `_created` excluded.",
        "",
        f"- {BASELINE}: `start_http_server` with its `ProcessCollector`, `PlatformCollector` "
        "and `GCCollector`. It answers HTTP/1.0 and closes the connection, so each of its "
        "scrapes includes a TCP connect. It is the only peer measured: no other exporter "
        "(node_exporter, redis_exporter, postgres_exporter, dcgm-exporter) is installable "
        "on this machine.",
        *(
            [
                "- *TCP_NODELAY set*: the same exporter with `disable_nagle_algorithm = True` "
                "on inferwatch's metrics request handler, patched in by this script. The "
                "handler writes the headers and the body in two `send`s; on a kept-alive "
                "connection Nagle's algorithm holds the body back until the scraper ACKs the "
                "headers, which Linux delays by up to 40 ms.",
            ]
            if any(t.short == "all+nodelay" for t in targets)
            else []
        ),
        f"- GPU: {args.gpus} simulated GPUs through the fake NVML in `tests/fakes` (no GPU "
        "here). Its calls are Python functions, so the GPU collector's figures are the "
        "collector's own work only; real NVML calls add driver time on top.",
        "- Redis and PostgreSQL: local `redis-server` and a throw-away PostgreSQL cluster "
        "started by the script on free loopback ports (no password, so no auth cost per "
        "connect; connections are kept across scrapes anyway).",
        "",
        environment(),
    ]
    return "\n".join(lines)


def redis_client_timeout() -> float | None:
    """The socket timeout the Redis collector derives from the default collector timeout."""
    from inferwatch.exporters.config import ExporterConfig
    from inferwatch.exporters.redis import build

    return getattr(build(ExporterConfig(redis_url="redis://127.0.0.1:1/0")), "_timeout", None)


def environment() -> str:
    cpu = platform.processor() or platform.machine()
    with suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    versions = []
    for p in ("prometheus-client", "psutil", "nvidia-ml-py", "redis", "psycopg"):
        try:
            versions.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{p} (missing)")
    servers = []
    with suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True
        ).stdout
        servers.append("Redis " + out.split("v=", 1)[1].split()[0])
    pg_ctl = find_pg_ctl()
    with suppress(OSError, subprocess.CalledProcessError, IndexError):
        if pg_ctl:
            out = subprocess.run(
                [pg_ctl, "--version"], capture_output=True, text=True, check=True
            ).stdout
            servers.append("PostgreSQL " + out.split("(PostgreSQL)", 1)[1].split()[0])
    return (
        f"Python {platform.python_version()}, {cpu}, {os.cpu_count()} CPUs; "
        + ", ".join(versions + servers)
        + "."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="default %(default)s")
    parser.add_argument(
        "--scrapes",
        type=int,
        default=DEFAULT_SCRAPES,
        help="scrapes per exporter per round (default %(default)s)",
    )
    parser.add_argument(
        "--gpus", type=int, default=DEFAULT_GPUS, help="simulated GPUs (default %(default)s)"
    )
    parser.add_argument(
        "--outage-scrapes",
        type=int,
        default=DEFAULT_OUTAGE_SCRAPES,
        help="scrapes with Redis stopped (default %(default)s)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="progress to stderr, only the Markdown result to stdout (for the README)",
    )
    # the child-process side; not for people
    parser.add_argument("--serve", choices=["baseline", "inferwatch"], help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--postgres-url", help=argparse.SUPPRESS)
    parser.add_argument("--nodelay", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.gpus, args.redis_url, args.postgres_url, args.nodelay)
    if args.rounds < 4 or args.scrapes < 1 or args.gpus < 0 or args.outage_scrapes < 1:
        parser.error("need at least 4 rounds, 1 scrape per round and 1 outage scrape")
    progress = sys.stderr if args.markdown else sys.stdout

    def log(line: str) -> None:
        print(line, file=progress, flush=True)

    started = time.monotonic()
    status = backend_status()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iw-bench-")))
        redis: Redis | None = None
        postgres: Postgres | None = None
        if not status["redis"]:
            redis = Redis(tmp)
            stack.callback(redis.stop)
            redis.start()
            log(f"redis-server on 127.0.0.1:{redis.port}")
        if not status["postgres"]:
            # Its own directory straight under the system temp dir: as root it is handed to
            # the postgres user, who could not enter ours (mode 0700).
            pg_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iw-bench-pg-")))
            postgres = Postgres(pg_dir, find_pg_ctl() or "pg_ctl")
            stack.callback(postgres.stop)
            try:
                postgres.start()
                log(f"postgres on 127.0.0.1:{postgres.port}")
            except subprocess.CalledProcessError as exc:
                status["postgres"] = f"could not start it ({exc.stderr.decode().strip()[:200]})"
                postgres = None

        child_log = stack.enter_context(open(tmp / "exporters.log", "w"))
        gpus = ["--gpus", str(args.gpus)]
        specs: list[tuple[str, str, str, list[str]]] = [
            (BASELINE, "baseline", "process, platform, gc", ["--serve", "baseline"]),
            ("inferwatch exporter (defaults)", "defaults", "host, gpu",
             ["--serve", "inferwatch", *gpus]),
        ]  # fmt: skip
        backends = []
        full = ["--serve", "inferwatch", *gpus]
        if redis is not None:
            backends.append("redis")
            full += ["--redis-url", redis.url]
        if postgres is not None:
            backends.append("postgres")
            full += ["--postgres-url", postgres.url]
        if backends:
            names = ", ".join(["host", "gpu", *backends])
            specs.append(("inferwatch exporter (every collector)", "all", names, full))
            if not nagle_disabled():
                specs.append(
                    ("same, TCP_NODELAY set (proposed fix)", "all+nodelay", names,
                     [*full, "--nodelay"])
                )  # fmt: skip
        targets: list[Target] = []
        try:
            for name, short, collectors, child_argv in specs:
                target = start_target(name, short, collectors, child_argv, child_log)
                stack.callback(stop_target, target)
                targets.append(target)
            run_rounds(targets, args.rounds, args.scrapes, log)
            outages: list[Outage] = []
            if redis is not None:
                log("redis stopped ...")
                redis.stop()
                shipped = widest(targets)
                stopped = outage(shipped, "stopped (connection refused)", args.outage_scrapes)
                redis.start()
                stopped.recovered_after = recovery(shipped)
                outages.append(stopped)
                log(f"redis frozen with SIGSTOP for {FROZEN_SCRAPES} scrapes ...")
                with redis.frozen():
                    frozen = outage(
                        shipped, "frozen (SIGSTOP: accepts, never answers)", FROZEN_SCRAPES
                    )
                frozen.recovered_after = recovery(shipped)
                outages.append(frozen)
        except RuntimeError:
            child_log.flush()
            sys.stderr.write((tmp / "exporters.log").read_text())
            raise
        log(f"done in {time.monotonic() - started:.0f} s\n")
        options = "".join(
            f" --{name.replace('_', '-')} {getattr(args, name)}"
            for name, default in (
                ("rounds", DEFAULT_ROUNDS),
                ("scrapes", DEFAULT_SCRAPES),
                ("gpus", DEFAULT_GPUS),
                ("outage_scrapes", DEFAULT_OUTAGE_SCRAPES),
            )
            if getattr(args, name) != default
        )
        command = f".venv/bin/python benchmarks/exporter_scrape.py{options} --markdown"
        print(markdown(command, targets, status, outages, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
