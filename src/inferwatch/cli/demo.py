"""``inferwatch demo``: run the demo generation service under uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from inferwatch.metrics.multiprocess import ENV_VAR as MULTIPROC_ENV

PROG = "inferwatch demo"
APP_FACTORY = "inferwatch.demo.app:create_app_from_env"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not an integer") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: must be 0..65535")
    return port


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the demo AI generation service, instrumented, with /metrics",
        description=(
            "Run an example audio/music/video generation service instrumented with inferwatch: "
            "generation endpoints, a job API, a streamed response, a WebSocket stream and "
            "faults switchable at run time through /admin/faults."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=_port, default=8000, help="port (0 picks a free one)")
    parser.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        help="multiply every simulated model delay (0.01 runs 100 times faster); "
        "fault latencies and the request timeout stay in wall-clock seconds",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="uvicorn worker processes; more than one turns on Prometheus multiprocess mode",
    )
    parser.add_argument("--seed", type=int, help="seed the simulated latencies and fault draws")
    parser.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=30.0,
        help="seconds a generation may take before it fails with 504 (default 30)",
    )
    parser.add_argument(
        "--multiproc-dir",
        help=f"directory for the workers' metric files (default ${MULTIPROC_ENV}, else a "
        "temporary directory); its *.db files are removed at start",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    parser.set_defaults(func=run)


def bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a busy port is one clear error instead of a log line
    from deep inside the server (and so --port 0 can report the port it got)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)  # worker processes serve on this very socket
    return sock


@contextlib.contextmanager
def multiprocess_environment(args: argparse.Namespace) -> Iterator[str]:
    """Set up the directories and environment the worker processes read at start.

    prometheus_client picks multiprocess mode when it is imported, so PROMETHEUS_MULTIPROC_DIR
    must be in the environment before any worker starts.
    """
    temporary: list[str] = []
    path = args.multiproc_dir or os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):  # an earlier run's totals
            os.unlink(stale)
    else:
        path = tempfile.mkdtemp(prefix="inferwatch-demo-metrics-")
        temporary.append(path)
    state_dir = tempfile.mkdtemp(prefix="inferwatch-demo-state-")
    temporary.append(state_dir)
    env = {
        MULTIPROC_ENV: os.path.abspath(path),
        "INFERWATCH_DEMO_TIME_SCALE": repr(args.time_scale),
        "INFERWATCH_DEMO_REQUEST_TIMEOUT": repr(args.request_timeout),
        "INFERWATCH_DEMO_STATE_DIR": state_dir,
        "INFERWATCH_DEMO_SEED": "" if args.seed is None else str(args.seed),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield path
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for directory in temporary:
            shutil.rmtree(directory, ignore_errors=True)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from uvicorn.supervisors import Multiprocess

        from inferwatch.demo.app import create_app
    except ImportError as exc:
        print(
            f"{PROG}: needs the demo extra (pip install 'inferwatch[demo]'): {exc}", file=sys.stderr
        )
        return 1
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"{PROG}: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1

    options: dict[str, Any] = {
        "log_level": args.log_level,
        "access_log": not args.no_access_log,
        "timeout_graceful_shutdown": 5,  # don't wait forever for long jobs on shutdown
    }
    base = _url(args.host, sock.getsockname()[1])
    with sock:
        if args.workers == 1:
            from prometheus_client import REGISTRY

            app = create_app(
                time_scale=args.time_scale,
                seed=args.seed,
                request_timeout=args.request_timeout,
                registry=REGISTRY,
            )
            server = uvicorn.Server(uvicorn.Config(app, **options))
            _announce(base, args, None)
            server.run(sockets=[sock])
            return 0 if server.started else 1
        with contextlib.ExitStack() as stack:
            try:
                metrics_dir = stack.enter_context(multiprocess_environment(args))
            except OSError as exc:
                print(f"{PROG}: cannot prepare the multiprocess directory: {exc}", file=sys.stderr)
                return 1
            config = uvicorn.Config(APP_FACTORY, factory=True, workers=args.workers, **options)
            _announce(base, args, metrics_dir)
            Multiprocess(config, sockets=[sock]).run()
    return 0


def _announce(base: str, args: argparse.Namespace, metrics_dir: str | None) -> None:
    workers = f"{args.workers} worker" + ("s" if args.workers > 1 else "")
    extra = f", metric files in {metrics_dir}" if metrics_dir else ""
    print(
        f"{PROG}: listening on {base} (metrics at {base}/metrics; {workers}, "
        f"time scale {args.time_scale:g}{extra})",
        flush=True,
    )
