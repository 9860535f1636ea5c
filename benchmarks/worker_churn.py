"""Series, scrape time and directory size of multiprocess mode under worker churn, inferwatch
next to prometheus_client's own multiprocess mode.

Each variant is a real ``uvicorn --workers N`` server with a fresh ``PROMETHEUS_MULTIPROC_DIR``.
Every round sends requests with new random model names and raises new exception types, then
SIGKILLs every worker and waits until uvicorn's supervisor has replaced them all; then it
counts the series of one scrape, times several scrapes and measures the directory. The two
servers run side by side and take turns round by round.

``--scrape``: the cost of a scrape for the same series. Both servers record exactly the same
families, labels and buckets (every worker records the whole set when it starts, through
inferwatch's metric classes or prometheus_client's), so only the reading and rendering
differ. Scrapes are timed with every worker alive, then again as workers are SIGKILLed and
replaced, up to ``--restarts`` worker restarts.

    .venv/bin/python benchmarks/worker_churn.py [--rounds N] [--workers N] [--markdown]
    .venv/bin/python benchmarks/worker_churn.py --scrape [--restarts N] [--markdown]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VARIANT_ENV = "WORKER_CHURN_VARIANT"
INFERWATCH = "inferwatch"
PROMETHEUS_CLIENT = "prometheus_client"
# --scrape: the same series through either library
FIXED = "-fixed"
DEFAULT_RESTARTS = 50
DEFAULT_SCRAPE_TIMES = 15
FIXED_ROUTES = 20
CPU_HEADER = b"x-scrape-cpu-seconds"
WARM_UP_SCRAPES = 3  # per worker, before each checkpoint's timed scrapes
FIXED_MODELS = 50
# Bounds written out here, not imported from inferwatch: importing it into the
# prometheus_client workers would give them inferwatch's value store.
FIXED_DURATION_BUCKETS = tuple(0.005 * 2**i for i in range(22))
FIXED_SIZE_BUCKETS = tuple(float(64 * 4**i) for i in range(13))
DEFAULT_ROUNDS = 10
DEFAULT_WORKERS = 4
DEFAULT_MODELS = 400
DEFAULT_ERRORS = 100
DEFAULT_SCRAPES = 5
HOST = "127.0.0.1"


# -- the application, one per variant (imported by each uvicorn worker) ----------------------
class ChurnError(Exception):
    """Base of the exception classes /raise creates, one per name."""


def build_inferwatch_app() -> Any:
    from fastapi import FastAPI

    import inferwatch
    from inferwatch.ai import InferenceMetrics

    app = FastAPI()
    inferwatch.instrument_app(app)  # /metrics: every worker's values, compacted
    infer = InferenceMetrics()

    @app.get("/infer/{model}")
    async def infer_model(model: str) -> str:
        with infer.request(model):
            return "ok"

    return app


def build_prometheus_client_app() -> Any:
    """The same routes with prometheus_client's own metrics: HTTP duration by method,
    route and status, exceptions by type, inference requests and duration by model; the
    labels as they come, as a hand-written instrumentation would have them."""
    import prometheus_client as pc
    from fastapi import FastAPI, Response
    from prometheus_client.multiprocess import MultiProcessCollector

    duration = pc.Histogram(
        "http_request_duration_seconds", "HTTP requests.", ["method", "route", "status"]
    )
    exceptions = pc.Counter(
        "http_exceptions_total", "Unhandled exceptions.", ["method", "route", "error_type"]
    )
    requests = pc.Counter("inference_requests_total", "Inference requests.", ["model", "outcome"])
    latency = pc.Histogram("inference_request_duration_seconds", "Inference.", ["model"])

    class Middleware:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] in ("/metrics", "/healthz"):
                return await self.app(scope, receive, send)
            start, status = time.perf_counter(), [500]

            async def send_status(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            except Exception as exc:
                route = getattr(scope.get("route"), "path", "unknown")
                name = f"{type(exc).__module__}.{type(exc).__qualname__}"
                exceptions.labels(scope["method"], route, name).inc()
                raise
            finally:
                route = getattr(scope.get("route"), "path", "unknown")
                took = time.perf_counter() - start
                duration.labels(scope["method"], route, str(status[0])).observe(took)

    app = FastAPI()
    app.add_middleware(Middleware)

    @app.get("/infer/{model}")
    async def infer_model(model: str) -> str:
        start = time.perf_counter()
        requests.labels(model, "success").inc()
        latency.labels(model).observe(time.perf_counter() - start)
        return "ok"

    @app.get("/metrics")
    async def metrics() -> Response:
        registry = pc.CollectorRegistry()
        MultiProcessCollector(registry)
        return Response(pc.generate_latest(registry), media_type=pc.CONTENT_TYPE_LATEST)

    return app


def record_fixed_series(lib: Any) -> None:
    """Record one fixed set of series with ``lib`` (``inferwatch.metrics`` or
    ``prometheus_client``, whose metric classes take the same arguments): the HTTP
    histograms of 20 routes by two statuses, an in-flight gauge, and a counter and histogram
    for each of 50 models; about 2,800 samples in a scrape."""
    duration = lib.Histogram(
        "http_server_request_duration_seconds", "HTTP requests.", ["method", "route", "status"],
        buckets=FIXED_DURATION_BUCKETS, registry=None,
    )  # fmt: skip
    size = lib.Histogram(
        "http_server_response_body_size_bytes", "Responses.", ["method", "route", "status"],
        buckets=FIXED_SIZE_BUCKETS, registry=None,
    )  # fmt: skip
    active = lib.Gauge(
        "http_server_active_requests", "In flight.", ["method"], multiprocess_mode="livesum",
        registry=None,
    )  # fmt: skip
    requests = lib.Counter("inference_requests", "Inference.", ["model", "outcome"], registry=None)
    latency = lib.Histogram(
        "inference_request_duration_seconds", "Inference.", ["model", "outcome"],
        buckets=FIXED_DURATION_BUCKETS, registry=None,
    )  # fmt: skip
    for r in range(FIXED_ROUTES):
        for status in ("200", "500"):
            duration.labels("GET", f"/v1/route{r}", status).observe(0.05)
            size.labels("GET", f"/v1/route{r}", status).observe(512)
    active.labels("GET").set(0)
    for m in range(FIXED_MODELS):
        requests.labels(f"model-{m}", "success").inc()
        latency.labels(f"model-{m}", "success").observe(0.3)


def build_fixed_app(variant: str) -> Any:
    """A bare ASGI app: /healthz, and /metrics as each library serves a multiprocess
    directory (inferwatch: compaction, its reader, the workers' process metrics)."""
    if variant == INFERWATCH + FIXED:
        import inferwatch.metrics
        from inferwatch.exposition import MetricsApp

        record_fixed_series(inferwatch.metrics)
        metrics: Any = MetricsApp()
    else:
        import prometheus_client as pc
        from prometheus_client.multiprocess import MultiProcessCollector

        record_fixed_series(pc)

        async def metrics(scope: dict, receive: Any, send: Any) -> None:
            registry = pc.CollectorRegistry()
            MultiProcessCollector(registry)
            body = pc.generate_latest(registry)
            headers = [(b"content-type", pc.CONTENT_TYPE_LATEST.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics":
            # The worker's CPU time for the scrape, as a header: on a loaded machine the wall
            # time mostly says how long the worker waited for a core.
            started = time.process_time()

            async def timed_send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    spent = f"{time.process_time() - started:.6f}".encode()
                    message = {**message, "headers": [*message["headers"], (CPU_HEADER, spent)]}
                await send(message)

            await metrics(scope, receive, timed_send)
            return
        body = f'{{"pid": {os.getpid()}}}'.encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def build_app(variant: str) -> Any:
    import logging

    if variant.endswith(FIXED):
        return build_fixed_app(variant)
    app = build_inferwatch_app() if variant == INFERWATCH else build_prometheus_client_app()
    classes: dict[str, type[ChurnError]] = {}

    @app.get("/healthz")
    async def healthz() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.get("/raise/{name}")
    async def raise_error(name: str) -> None:
        cls = classes.get(name) or classes.setdefault(name, type(name, (ChurnError,), {}))
        raise cls(name)

    class Quiet(logging.Filter):  # a thousand tracebacks would only slow the server down
        def filter(self, record: logging.LogRecord) -> bool:
            return not (record.exc_info and isinstance(record.exc_info[1], ChurnError))

    logging.getLogger("uvicorn.error").addFilter(Quiet())
    return app


if os.environ.get(VARIANT_ENV):
    app = build_app(os.environ[VARIANT_ENV])


# -- the driver -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


def get(port: int, path: str) -> tuple[int, bytes]:
    """GET over a new connection, so that the kernel may hand it to any worker."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


@dataclass
class Round:
    series: int
    models: int
    scrape_seconds: float
    directory_bytes: int  # allocated (du), as on a tmpfs
    files: int


@dataclass
class Service:
    variant: str
    workers: int
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    rounds: list[Round] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.root / "multiproc"

    def start(self) -> None:
        self.directory.mkdir(parents=True)
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(self.directory),
            VARIANT_ENV: self.variant,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])
            ),
        }
        command = [
            sys.executable, "-m", "uvicorn", "worker_churn:app",
            "--app-dir", str(REPO / "benchmarks"), "--host", HOST, "--port", str(self.port),
            "--workers", str(self.workers), "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 (the server's, for its life)
        self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_all_serving()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def worker_pids(self) -> set[int]:
        import psutil

        assert self.proc is not None
        pids = set()
        for child in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "spawn_main" in " ".join(child.cmdline()) and (
                    child.status() != psutil.STATUS_ZOMBIE
                ):
                    pids.add(child.pid)
        return pids

    def wait_all_serving(self) -> None:
        seen: set[int] = set()

        def all_answered() -> bool:
            for _ in range(2 * self.workers):
                status, body = get(self.port, "/healthz")
                if status == 200:
                    seen.add(int(body.decode().split(":")[1].strip(" }")))
            live = self.worker_pids()
            return len(live) == self.workers and live <= seen

        wait_for(all_answered, 120, f"{self.workers} serving {self.variant} workers")

    def send(self, paths: Sequence[str]) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: get(self.port, p), paths))

    def churn(self, models: int, errors: int, round_no: int) -> None:
        self.send([f"/infer/{uuid.uuid4().hex}" for _ in range(models)])
        self.send([f"/raise/Churn{round_no}x{i}" for i in range(errors)])
        self.settle()
        self.restart_all()

    def restart_all(self) -> int:
        """SIGKILL every worker, wait until each replacement serves; how many were killed."""
        import psutil

        victims = self.worker_pids()
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

        def gone() -> bool:
            for pid in victims:
                with contextlib.suppress(psutil.NoSuchProcess):
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        return False
            return True

        wait_for(gone, 30, "the killed workers to exit")
        self.wait_all_serving()
        return len(victims)

    def settle(self) -> None:
        """Let the workers finish recording (a worker records just after responding): wait
        until two scrapes in a row agree."""
        last: list[bytes] = [b""]

        def stable() -> bool:
            body = self.scrape()
            same = body == last[0]
            last[0] = body
            return same

        wait_for(stable, 60, f"{self.variant}'s figures to settle")

    def scrape(self) -> bytes:
        status, body = get(self.port, "/metrics")
        if status != 200:
            raise RuntimeError(f"{self.variant}: /metrics answered {status}")
        return body

    def timed_scrape(self) -> tuple[float, bytes]:
        started = time.perf_counter()
        body = self.scrape()
        return time.perf_counter() - started, body

    def cpu_timed_scrape(self) -> tuple[float, float, bytes]:
        """One scrape: (wall seconds at the client, the worker's CPU seconds, body)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
        try:
            started = time.perf_counter()
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read()
            wall = time.perf_counter() - started
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"{self.variant}: /metrics answered {response.status}")
        return wall, float(response.getheader(CPU_HEADER.decode()) or "nan"), body

    def measure(self, scrapes: int) -> Round:
        times, body = [], b""
        for _ in range(scrapes):
            took, body = self.timed_scrape()
            times.append(took)
        return self.round_of(body, statistics.median(times))

    def round_of(self, body: bytes, scrape_seconds: float) -> Round:
        from prometheus_client.parser import text_string_to_metric_families

        families = list(text_string_to_metric_families(body.decode()))
        samples = [s for f in families for s in f.samples]
        models = {s.labels["model"] for s in samples if "model" in s.labels}
        files = [p for p in self.directory.iterdir() if p.is_file()]
        allocated = sum(p.stat().st_blocks * 512 for p in files)
        return Round(len(samples), len(models), scrape_seconds, allocated, len(files))


def table(services: Sequence[Service], markdown: bool) -> str:
    iw, pc = services
    lines = [
        "| round | series inferwatch | series prometheus_client | ratio | `model` values "
        "inferwatch / prometheus_client | scrape ms inferwatch | scrape ms prometheus_client "
        "| ratio | directory KiB inferwatch | directory KiB prometheus_client | files "
        "inferwatch / prometheus_client |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, (a, b) in enumerate(zip(iw.rounds, pc.rounds, strict=True), start=1):
        lines.append(
            f"| {n} | {a.series} | {b.series} | {b.series / a.series:.1f}x | {a.models} / "
            f"{b.models} | {a.scrape_seconds * 1e3:.1f} | {b.scrape_seconds * 1e3:.1f} | "
            f"{b.scrape_seconds / a.scrape_seconds:.1f}x | {a.directory_bytes / 1024:.0f} | "
            f"{b.directory_bytes / 1024:.0f} | {a.files} / {b.files} |"
        )
    first, last = (iw.rounds[0], pc.rounds[0]), (iw.rounds[-1], pc.rounds[-1])
    lines += [
        "",
        f"Round {len(iw.rounds)} against round 1: series x{last[0].series / first[0].series:.2f} "
        f"(inferwatch), x{last[1].series / first[1].series:.2f} (prometheus_client); "
        f"scrape time x{last[0].scrape_seconds / first[0].scrape_seconds:.2f}, "
        f"x{last[1].scrape_seconds / first[1].scrape_seconds:.2f}; directory "
        f"x{last[0].directory_bytes / first[0].directory_bytes:.2f}, "
        f"x{last[1].directory_bytes / first[1].directory_bytes:.2f}.",
    ]
    text = "\n".join(lines)
    return text if markdown else text.replace("|---:", "|----")


def environment() -> str:
    versions = []
    for p in ("prometheus-client", "uvicorn", "fastapi"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{p} {metadata.version(p)}")
    return f"Python {platform.python_version()}, {os.cpu_count()} CPUs; " + ", ".join(versions)


@contextlib.contextmanager
def running(services: Sequence[Service]) -> Iterator[None]:
    try:
        for s in services:
            s.start()
        yield
    finally:
        for s in services:
            s.stop()


@dataclass
class Checkpoint:
    restarts: int
    rounds: tuple[Round, Round]  # inferwatch, prometheus_client; scrape_seconds: wall time
    cpu: tuple[float, float]  # the median CPU seconds the answering worker spent
    ratio: tuple[float, float, float]  # CPU inferwatch / prometheus_client per pair: q1, median, q3


def scrape_checkpoint(services: Sequence[Service], restarts: int, scrapes: int) -> Checkpoint:
    """Time ``scrapes`` scrapes of each server, alternating between them scrape by scrape (who
    goes first alternates too), so that load from elsewhere lands on both. First a few
    untimed scrapes per worker: a worker's first scrape decodes every key (inferwatch keeps
    them for the next), and a server lives for far more scrapes than it has workers."""
    for service in services:
        for _ in range(WARM_UP_SCRAPES * service.workers):
            service.scrape()
    walls: list[list[float]] = [[], []]
    cpus: list[list[float]] = [[], []]
    bodies = [b"", b""]
    for i in range(scrapes):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            wall, cpu, bodies[k] = services[k].cpu_timed_scrape()
            walls[k].append(wall)
            cpus[k].append(cpu)
    ratios = [a / b for a, b in zip(cpus[0], cpus[1], strict=True)]
    q1, med, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    rounds = (
        services[0].round_of(bodies[0], statistics.median(walls[0])),
        services[1].round_of(bodies[1], statistics.median(walls[1])),
    )
    return Checkpoint(
        restarts, rounds, (statistics.median(cpus[0]), statistics.median(cpus[1])), (q1, med, q3)
    )


def scrape_table(checkpoints: Sequence[Checkpoint], markdown: bool) -> str:
    lines = [
        "| worker restarts | series inferwatch / prometheus_client | worker CPU ms inferwatch "
        "| worker CPU ms prometheus_client | CPU inferwatch / prometheus_client, median (IQR) "
        "| wall ms inferwatch / prometheus_client | files inferwatch / prometheus_client |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in checkpoints:
        iw, pc = c.rounds
        q1, med, q3 = c.ratio
        lines.append(
            f"| {c.restarts} | {iw.series} / {pc.series} | {c.cpu[0] * 1e3:.1f} | "
            f"{c.cpu[1] * 1e3:.1f} | {med:.2f}x ({q1:.2f} .. {q3:.2f}) | "
            f"{iw.scrape_seconds * 1e3:.1f} / {pc.scrape_seconds * 1e3:.1f} | "
            f"{iw.files} / {pc.files} |"
        )
    first, last = checkpoints[0], checkpoints[-1]
    lines += [
        "",
        f"After {last.restarts} restarts against none: worker CPU per scrape "
        f"x{last.cpu[0] / first.cpu[0]:.2f} (inferwatch), x{last.cpu[1] / first.cpu[1]:.2f} "
        "(prometheus_client).",
    ]
    text = "\n".join(lines)
    return text if markdown else text.replace("|---:", "|----")


def run_scrape_mode(args: argparse.Namespace, progress: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="iw-scrape-") as tmp:
        services = [
            Service(variant + FIXED, args.workers, Path(tmp, variant))
            for variant in (INFERWATCH, PROMETHEUS_CLIENT)
        ]
        checkpoints: list[Checkpoint] = []
        with running(services):
            restarts = 0
            # Checkpoints: all live, then about a quarter, half and all of the restarts.
            marks = sorted({0, *(args.restarts * k // 4 for k in (1, 2, 4))})
            while True:
                if restarts >= marks[0]:
                    marks = [m for m in marks if m > restarts]
                    checkpoints.append(scrape_checkpoint(services, restarts, args.scrapes))
                    c = checkpoints[-1]
                    print(
                        f"{restarts} restarts: scrape CPU {c.cpu[0] * 1e3:.1f} ms "
                        f"(inferwatch), {c.cpu[1] * 1e3:.1f} ms (prometheus_client)",
                        file=progress,
                        flush=True,
                    )
                    if not marks:
                        break
                killed = [s.restart_all() for s in services]
                restarts += min(killed)
    print(
        f"`{' '.join(['.venv/bin/python', 'benchmarks/worker_churn.py', *sys.argv[1:]])}`: "
        f"uvicorn --workers {args.workers}, every worker recording the same "
        f"{FIXED_ROUTES} routes x 2 statuses and {FIXED_MODELS} models through inferwatch's "
        "metric classes or prometheus_client's; /metrics as each serves a multiprocess "
        "directory (inferwatch: compaction, its reader and the workers' process metrics; "
        f"prometheus_client: `MultiProcessCollector`). {args.scrapes} scrapes per server at "
        "each checkpoint, a new connection each, alternating between the servers. Worker "
        f"CPU: after {WARM_UP_SCRAPES} untimed scrapes per worker, the process CPU time of the "
        "worker that answered, from the request to its "
        "response headers (the rendering included), median; the ratio is taken scrape pair "
        "by scrape pair. Wall: at the client, median. Restarts: all workers SIGKILLed and "
        "replaced at once, until the count is reached.\n"
    )
    print(scrape_table(checkpoints, args.markdown))
    print("\n" + environment())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="default %(default)s")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="default %(default)s")
    parser.add_argument(
        "--models",
        type=int,
        default=DEFAULT_MODELS,
        help="new model names per round (default %(default)s)",
    )
    parser.add_argument(
        "--errors",
        type=int,
        default=DEFAULT_ERRORS,
        help="new exception types per round (default %(default)s)",
    )
    parser.add_argument(
        "--scrapes",
        type=int,
        default=DEFAULT_SCRAPES,
        help="timed scrapes per round (default %(default)s)",
    )
    parser.add_argument(
        "--scrape",
        action="store_true",
        help="time scrapes of the same series in both libraries, live and after restarts",
    )
    parser.add_argument(
        "--restarts",
        type=int,
        default=DEFAULT_RESTARTS,
        help="--scrape: worker restarts to reach (default %(default)s)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="progress to stderr, only the Markdown table to stdout",
    )
    args = parser.parse_args(argv)
    if args.scrape and args.scrapes == DEFAULT_SCRAPES:
        args.scrapes = DEFAULT_SCRAPE_TIMES
    if min(args.rounds, args.workers, args.scrapes) < 1:
        parser.error("--rounds, --workers and --scrapes must be at least 1")
    progress = sys.stderr if args.markdown else sys.stdout
    if args.scrape:
        if args.scrapes < 4 or args.restarts < 0:
            parser.error("--scrape needs at least 4 scrapes and no negative restarts")
        run_scrape_mode(args, progress)
        return 0
    with tempfile.TemporaryDirectory(prefix="iw-churn-") as tmp:
        services = [
            Service(variant, args.workers, Path(tmp, variant))
            for variant in (INFERWATCH, PROMETHEUS_CLIENT)
        ]
        with running(services):
            for n in range(1, args.rounds + 1):
                # Turns alternate who goes first, so neither always runs on a machine the
                # other has just loaded.
                for s in services if n % 2 else services[::-1]:
                    s.churn(args.models, args.errors, n)
                    s.rounds.append(s.measure(args.scrapes))
                    r = s.rounds[-1]
                    print(
                        f"round {n} {s.variant}: {r.series} series, scrape "
                        f"{r.scrape_seconds * 1e3:.1f} ms, {r.directory_bytes / 1024:.0f} KiB",
                        file=progress,
                        flush=True,
                    )
    print(
        f"`{' '.join(['.venv/bin/python', 'benchmarks/worker_churn.py', *sys.argv[1:]])}`: "
        f"uvicorn --workers {args.workers}; per round {args.models} new model names and "
        f"{args.errors} new exception types, then every worker SIGKILLed and replaced. Scrape: "
        f"median of {args.scrapes}, new connection each. Directory: allocated bytes (du).\n"
    )
    print(table(services, args.markdown))
    print("\n" + environment())
    return 0


if __name__ == "__main__":
    sys.exit(main())
