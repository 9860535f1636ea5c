"""Series, scrape time and directory size of multiprocess mode under worker churn, inferwatch
next to prometheus_client's own multiprocess mode.

Each variant is a real ``uvicorn --workers N`` server with a fresh ``PROMETHEUS_MULTIPROC_DIR``.
Every round sends requests with new random model names and raises new exception types, then
SIGKILLs every worker and waits until uvicorn's supervisor has replaced them all; then it
counts the series of one scrape, times several scrapes and measures the directory. The two
servers run side by side and take turns round by round.

    .venv/bin/python benchmarks/worker_churn.py [--rounds N] [--workers N] [--markdown]
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


def build_app(variant: str) -> Any:
    import logging

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

    def measure(self, scrapes: int) -> Round:
        from prometheus_client.parser import text_string_to_metric_families

        times, body = [], b""
        for _ in range(scrapes):
            started = time.perf_counter()
            body = self.scrape()
            times.append(time.perf_counter() - started)
        families = list(text_string_to_metric_families(body.decode()))
        samples = [s for f in families for s in f.samples]
        models = {s.labels["model"] for s in samples if "model" in s.labels}
        files = [p for p in self.directory.iterdir() if p.is_file()]
        allocated = sum(p.stat().st_blocks * 512 for p in files)
        return Round(len(samples), len(models), statistics.median(times), allocated, len(files))


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
        "--markdown",
        action="store_true",
        help="progress to stderr, only the Markdown table to stdout",
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.workers, args.scrapes) < 1:
        parser.error("--rounds, --workers and --scrapes must be at least 1")
    progress = sys.stderr if args.markdown else sys.stdout
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
