"""``inferwatch alert-sink``: receive Alertmanager's webhook notifications and record them."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from inferwatch.alertsink.metrics import DEFAULT_MAX_RECEIVERS
from inferwatch.cli.arguments import LOG_LEVELS, port, positive_float, positive_int
from inferwatch.config import check_http_url
from inferwatch.exposition.limits import ServerLimits

PROG = "inferwatch alert-sink"
TOKEN_ENV = "INFERWATCH_ALERT_SINK_TOKEN"
TOKEN_FILE_ENV = "INFERWATCH_ALERT_SINK_TOKEN_FILE"
LIMITS = ServerLimits()


def _url(text: str) -> str:
    try:
        return check_http_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "alert-sink",
        help="receive and record Alertmanager webhook notifications",
        description=(
            "A webhook receiver for Alertmanager: validates and de-duplicates notifications, "
            "records them (in memory and optionally in a JSON-lines file), forwards them, and "
            "lists them at GET /notifications. Alertmanager posts to /alerts/<receiver>."
        ),
        epilog=(
            f"Set {TOKEN_ENV} or {TOKEN_FILE_ENV} (a file holding it) to require a bearer "
            "token on every endpoint but /healthz."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=port, default=9095, help="port (default 9095)")
    parser.add_argument(
        "--store", type=Path, metavar="FILE", help="append records to this JSON-lines file"
    )
    parser.add_argument(
        "--forward",
        dest="forward_urls",
        type=_url,
        action="append",
        default=[],
        metavar="URL",
        help="also post every notification here (repeatable; never delays the answer)",
    )
    parser.add_argument(
        "--forward-timeout",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="give up a forward after this long (default 5)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=1024 * 1024,
        metavar="BYTES",
        help="refuse larger requests with 413 (default 1 MiB)",
    )
    parser.add_argument(
        "--max-records",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="records kept in memory, oldest dropped first (default 10000)",
    )
    parser.add_argument(
        "--max-receivers",
        type=positive_int,
        default=DEFAULT_MAX_RECEIVERS,
        metavar="N",
        help="receiver names kept as metric labels, later ones counted as _OTHER "
        f"(default {DEFAULT_MAX_RECEIVERS})",
    )
    parser.add_argument(
        "--request-timeout",
        type=positive_float,
        default=LIMITS.request_timeout,
        metavar="SECONDS",
        help="close a connection whose request has not fully arrived after this long "
        f"(default {LIMITS.request_timeout:g})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=positive_float,
        default=LIMITS.idle_timeout,
        metavar="SECONDS",
        help=f"close a kept-alive connection idle this long (default {LIMITS.idle_timeout:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=LIMITS.max_connections,
        metavar="N",
        help="connections held at once; past it the oldest idle one is closed "
        f"(default {LIMITS.max_connections})",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--no-access-log", action="store_true", help="don't log each request")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        from inferwatch.alertsink.app import SinkSettings, create_app
        from inferwatch.alertsink.server import sink_server
        from inferwatch.exposition.protocol import listening_socket
    except ImportError as exc:
        hint = "pip install 'inferwatch[fastapi]'"
        print(f"{PROG}: needs the fastapi extra ({hint}): {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from inferwatch.exposition.auth import MetricsAuth

    try:
        settings = SinkSettings(
            store_path=args.store,
            max_records=args.max_records,
            max_body_bytes=args.max_body_bytes,
            forward_urls=tuple(args.forward_urls),
            forward_timeout=args.forward_timeout,
            max_receivers=args.max_receivers,
            auth=MetricsAuth.from_env(TOKEN_ENV, TOKEN_FILE_ENV),
        )
        app = create_app(settings)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    server = sink_server(
        app,
        host=args.host,
        port=args.port,
        limits=ServerLimits(
            request_timeout=args.request_timeout,
            idle_timeout=args.idle_timeout,
            max_connections=args.max_connections,
        ),
        log_level=args.log_level,
        access_log=not args.no_access_log,
    )
    try:
        sockets = [listening_socket(args.host, args.port)]
    except OSError as exc:
        print(f"{PROG}: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(
        f"{PROG}: listening on {args.host}:{args.port} "
        f"(store: {args.store or 'memory only'}; "
        f"forwarding to {len(settings.forward_urls)} URL(s); "
        f"auth: {'on' if settings.auth else 'off'})",
        flush=True,
    )
    server.run(sockets=sockets)
    return 0 if server.started else 1
