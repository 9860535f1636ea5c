"""``inferwatch demo``: run the demo generation service under uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferwatch.cli.arguments import (
    LOG_LEVELS,
    backend_url,
    non_negative_float,
    port,
    positive_float,
    positive_int,
)
from inferwatch.config import check_backend_url
from inferwatch.metrics.multiprocess import ENV_VAR as MULTIPROC_ENV

PROG = "inferwatch demo"
APP_FACTORY = "inferwatch.demo.app:create_app_from_env"


def _model_list(text: str) -> tuple[str, ...]:
    from inferwatch.demo.models import CATALOGUE
    from inferwatch.demo.settings import parse_names

    names = parse_names(text)
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        known = ", ".join(sorted(CATALOGUE))
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(unknown)}; known: {known}")
    return names


def _backend_url(backend: str) -> Any:
    """The argparse type of ``--BACKEND-url``: errors show the URL redacted, never a password."""

    def parse(text: str) -> str:
        try:
            return check_backend_url(backend, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


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
    parser.add_argument("--port", type=port, default=8000, help="port (0 picks a free one)")
    parser.add_argument(
        "--time-scale",
        type=positive_float,
        default=1.0,
        help="multiply every simulated model delay (0.01 runs 100 times faster); "
        "fault latencies and the request timeout stay in wall-clock seconds",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="uvicorn worker processes; more than one turns on Prometheus multiprocess mode",
    )
    parser.add_argument("--seed", type=int, help="seed the simulated latencies and fault draws")
    parser.add_argument(
        "--request-timeout",
        type=positive_float,
        default=30.0,
        help="seconds a generation may take before it fails with 504 (default 30)",
    )
    backends = parser.add_argument_group(
        "backends",
        "SQLite (a file in a temporary directory) and an in-process cache unless a URL is "
        "given. URLs may hold passwords: they are never printed or logged, and the "
        "--redis-url-file / --postgres-url-file options (or the INFERWATCH_DEMO_REDIS_URL / "
        "INFERWATCH_DEMO_POSTGRES_URL variables) keep them off the command line.",
    )
    for backend, what, used in (
        ("redis", "Redis", "keep the conditioning cache in Redis (redis://[:password@]host:port/db)"),
        ("postgres", "PostgreSQL", "keep the generations table in PostgreSQL "
         "(postgresql://user:pw@host/db)"),
    ):  # fmt: skip
        given = backends.add_mutually_exclusive_group()
        given.add_argument(
            f"--{backend}-url",
            type=_backend_url(backend),
            default=os.environ.get(f"INFERWATCH_DEMO_{backend.upper()}_URL") or None,
            help=used,
        )
        given.add_argument(
            f"--{backend}-url-file",
            type=Path,
            metavar="FILE",
            help=f"the {what} URL from FILE: a password in a file is in no process listing "
            "and no environment",
        )
    backends.add_argument(
        "--db-pool-size", type=positive_int, default=5, help="database connections (default 5)"
    )
    backends.add_argument(
        "--db-pool-timeout",
        type=positive_float,
        default=1.0,
        help="seconds a request waits for a database connection before a 503 (default 1)",
    )
    models = parser.add_argument_group("models and batching")
    models.add_argument(
        "--max-models",
        type=positive_int,
        default=2,
        help="models loaded at once; loading another unloads the least recently used",
    )
    models.add_argument(
        "--preload",
        type=_model_list,
        default=None,
        help="comma-separated models to load at start, or 'none' "
        "(default speech-small,musicgen-small)",
    )
    models.add_argument(
        "--max-batch-size", type=positive_int, default=4, help="requests per batch (default 4)"
    )
    models.add_argument(
        "--batch-window",
        type=non_negative_float,
        default=0.05,
        help="model seconds a batch waits to fill (scaled by --time-scale; default 0.05)",
    )
    models.add_argument(
        "--max-queue",
        type=positive_int,
        default=64,
        help="waiting requests beyond which new ones get 429 (default 64)",
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
    from inferwatch.demo.settings import to_env

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
    env = {MULTIPROC_ENV: os.path.abspath(path), **to_env(settings(args, state_dir))}
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


def settings(args: argparse.Namespace, state_dir: str | None = None) -> Any:
    from inferwatch.demo.models import DEFAULT_PRELOAD
    from inferwatch.demo.settings import Settings

    return Settings(
        time_scale=args.time_scale,
        seed=args.seed,
        request_timeout=args.request_timeout,
        state_dir=None if state_dir is None else Path(state_dir),
        redis_url=backend_url(args, "redis"),
        postgres_url=backend_url(args, "postgres"),
        max_models=args.max_models,
        preload=DEFAULT_PRELOAD if args.preload is None else args.preload,
        max_batch_size=args.max_batch_size,
        batch_window=args.batch_window,
        max_queue=args.max_queue,
        db_pool_size=args.db_pool_size,
        db_pool_timeout=args.db_pool_timeout,
    )


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
        demo_settings = settings(args)
    except ValueError as exc:  # an unreadable URL file, more models to preload than allowed
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
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

            app = create_app(settings=demo_settings, registry=REGISTRY)
            server = uvicorn.Server(uvicorn.Config(app, **options))
            _announce(base, args, demo_settings, None)
            server.run(sockets=[sock])
            return 0 if server.started else 1
        with contextlib.ExitStack() as stack:
            try:
                metrics_dir = stack.enter_context(multiprocess_environment(args))
            except OSError as exc:
                print(f"{PROG}: cannot prepare the multiprocess directory: {exc}", file=sys.stderr)
                return 1
            config = uvicorn.Config(APP_FACTORY, factory=True, workers=args.workers, **options)
            _announce(base, args, demo_settings, metrics_dir)
            Multiprocess(config, sockets=[sock]).run()
    return 0


def _announce(
    base: str, args: argparse.Namespace, demo_settings: Any, metrics_dir: str | None
) -> None:
    from inferwatch.exporters.redact import redact_url

    workers = f"{args.workers} worker" + ("s" if args.workers > 1 else "")
    extra = f", metric files in {metrics_dir}" if metrics_dir else ""
    print(
        f"{PROG}: listening on {base} (metrics at {base}/metrics; {workers}, "
        f"time scale {args.time_scale:g}{extra})",
        flush=True,
    )
    postgres, redis = demo_settings.postgres_url, demo_settings.redis_url
    database = redact_url(postgres) if postgres else "SQLite (embedded)"
    cache = redact_url(redis) if redis else "in memory"
    print(f"{PROG}: database {database}; cache {cache}", flush=True)
