"""``inferwatch exporter``: the standalone exporter (host, GPU, later Redis/PostgreSQL)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from inferwatch.cli.arguments import port

_EPILOG = (
    "Settings come from defaults, then --config FILE (.toml, .yaml or .json, keys named like "
    "the long options with '_' for '-'), then the flags. Set INFERWATCH_METRICS_TOKEN(_FILE) "
    "to require a bearer token on every request."
)


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "exporter",
        help="run the standalone exporter (host and GPU metrics) in the style of node_exporter",
        description=(
            "Serve host, GPU and backend metrics on /metrics, each collector reporting its own "
            "duration and success, with a per-collector timeout and a short result cache."
        ),
        epilog=_EPILOG,
    )
    # Defaults are None so a flag overrides the config file only when it is given.
    parser.add_argument("--port", type=port, help="port to listen on (default 9841; 0: any)")
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--config", metavar="FILE", help="config file (.toml, .yaml, .json)")
    parser.add_argument(
        "--collectors",
        metavar="LIST",
        help="comma-separated collectors to enable (default: host,gpu plus those with a URL)",
    )
    parser.add_argument(
        "--collector-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="longest a collector may take before it is reported failed (default 5)",
    )
    parser.add_argument(
        "--scrape-timeout-offset",
        type=_seconds,
        metavar="SECONDS",
        help="finish the collectors this long before the scraper's own timeout, from its "
        "X-Prometheus-Scrape-Timeout-Seconds header (default 0.5)",
    )
    parser.add_argument(
        "--request-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="close a connection whose request has not fully arrived after this long (default 5)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="close a kept-alive connection idle this long (default 60)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="connections held at once; past it the oldest idle one is closed (default 64)",
    )
    parser.add_argument(
        "--cache-ttl",
        type=_seconds,
        metavar="SECONDS",
        help="reuse a collector's result for this long across scrapes (default 1; 0: never)",
    )
    parser.add_argument("--redis-url", metavar="URL", help="Redis server to report on")
    parser.add_argument("--postgres-url", metavar="URL", help="PostgreSQL server to report on")
    parser.add_argument(
        "--redis-url-file",
        metavar="FILE",
        help="read the Redis URL from FILE (keeps a password out of the process list)",
    )
    parser.add_argument(
        "--postgres-url-file",
        metavar="FILE",
        help="read the PostgreSQL URL from FILE",
    )
    parser.add_argument(
        "--pid",
        dest="pids",
        type=int,
        action="append",
        metavar="PID",
        help="a process of the watched service (with its children); repeatable",
    )
    parser.add_argument(
        "--memory-growth-window",
        type=_seconds,
        metavar="SECONDS",
        help="window of the RSS growth slope (default 600)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from inferwatch.exporters.config import ConfigError, build_config
    from inferwatch.exporters.server import start_exporter
    from inferwatch.exposition.auth import MetricsAuth

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides = {
        key: getattr(args, key)
        for key in (
            "host",
            "port",
            "collectors",
            "collector_timeout",
            "scrape_timeout_offset",
            "request_timeout",
            "idle_timeout",
            "max_connections",
            "cache_ttl",
            "redis_url",
            "postgres_url",
            "redis_url_file",
            "postgres_url_file",
            "memory_growth_window",
        )
    }
    overrides["pids"] = args.pids
    try:
        config = build_config(args.config, overrides)
        auth = MetricsAuth.from_env()
        exporter = start_exporter(config, auth=auth)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"inferwatch exporter: {exc}", file=sys.stderr)
        return 2
    print(
        f"inferwatch exporter listening on {exporter.url} "
        f"(collectors: {','.join(exporter.runner.names)}; auth: {'on' if auth else 'off'})",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    exporter.close()
    return 0
