"""``inferwatch stack up``: the whole monitoring stack on this machine, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

PORT_FLAGS = ("prometheus", "alertmanager", "alert_sink", "demo", "exporter")


def add_parser(subparsers: Any) -> None:
    stack = subparsers.add_parser("stack", help="run the local monitoring stack")
    actions = stack.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="start demo/service, exporter, Prometheus, Alertmanager and the alert sink",
        description="Start the stack in the foreground; Ctrl-C stops it and keeps its data.",
    )
    from inferwatch.stack.settings import Ports

    defaults = Ports()
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".inferwatch"),
        help="configs, logs and Prometheus data (default .inferwatch)",
    )
    up.add_argument("--host", default="127.0.0.1", help="address every component binds")
    for name in PORT_FLAGS:
        up.add_argument(
            f"--{name.replace('_', '-')}-port",
            type=int,
            default=getattr(defaults, name),
            metavar="N",
        )
    up.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also scrape your own service's /metrics (repeatable)",
    )
    up.add_argument("--service-job", default="ai-service", help="job label for --service")
    up.add_argument(
        "--service-token-file",
        type=Path,
        metavar="FILE",
        help="scrape --service with the bearer token in FILE (as MetricsAuth.from_env reads "
        "it from INFERWATCH_METRICS_TOKEN_FILE); Prometheus reads the file itself",
    )
    up.add_argument("--service-username", metavar="USER", help="basic auth for --service")
    up.add_argument(
        "--service-password-file", type=Path, metavar="FILE", help="its password, from FILE"
    )
    up.add_argument(
        "--grafana-url",
        metavar="URL",
        help="a Grafana with inferwatch's dashboards: the alerts link to URL/d/<uid> (the stack "
        "runs no Grafana, so without it they carry no dashboard link)",
    )
    up.add_argument("--no-demo", action="store_true", help="do not run the demo service")
    up.add_argument("--demo-time-scale", type=float, default=1.0, metavar="F")
    up.add_argument("--scrape-interval", default="15s")
    up.add_argument("--evaluation-interval", default="15s")
    up.add_argument(
        "--thresholds",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="thresholds overlay merged over the defaults (repeatable)",
    )
    up.add_argument(
        "--for-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every alert's for: (e.g. 0.1 for demonstrations)",
    )
    up.add_argument(
        "--window-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every rule's range window, [5m] -> [30s] at 0.1 (at least two scrape "
        "intervals), so alerts also resolve quickly in demonstrations",
    )
    for backend, what in (("redis", "Redis"), ("postgres", "PostgreSQL")):
        given = up.add_mutually_exclusive_group()
        given.add_argument(
            f"--{backend}-url",
            metavar="URL",
            help=f"a real {what} for the demo and the exporter (prefer --{backend}-url-file: "
            "a password on the command line shows in process listings)",
        )
        given.add_argument(
            f"--{backend}-url-file", type=Path, metavar="FILE", help=f"the {what} URL from FILE"
        )
    up.add_argument("--startup-timeout", type=float, default=60.0, metavar="S")
    up.add_argument(
        "--status-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="how often the live status line refreshes",
    )
    up.add_argument(
        "--exit-when-up",
        action="store_true",
        help="stop once every target is up (a smoke test of the set-up)",
    )
    up.set_defaults(func=run_up)  # fmt: skip


def _backend_url(args: argparse.Namespace, backend: str) -> str | None:
    """``--BACKEND-url`` or the content of ``--BACKEND-url-file`` (ValueError when unreadable)."""
    from inferwatch.exposition.auth import read_secret_file

    path = getattr(args, f"{backend}_url_file", None)
    if path is not None:
        return read_secret_file(path, f"--{backend}-url")
    url: str | None = getattr(args, f"{backend}_url", None)
    return url


def _settings(args: argparse.Namespace) -> Any:
    from inferwatch.stack.settings import Ports, StackSettings

    return StackSettings(
        data_dir=args.data_dir,
        host=args.host,
        ports=Ports(**{name: getattr(args, f"{name}_port") for name in PORT_FLAGS}),
        service_targets=tuple(args.service),
        service_job=args.service_job,
        service_token_file=args.service_token_file,
        service_username=args.service_username,
        service_password_file=args.service_password_file,
        grafana_url=args.grafana_url,
        run_demo=not args.no_demo,
        demo_time_scale=args.demo_time_scale,
        scrape_interval=args.scrape_interval,
        evaluation_interval=args.evaluation_interval,
        thresholds=tuple(args.thresholds),
        for_scale=args.for_scale,
        window_scale=args.window_scale,
        startup_timeout=args.startup_timeout,
        redis_url=_backend_url(args, "redis"),
        postgres_url=_backend_url(args, "postgres"),
    )


def _say(message: str) -> None:
    print(message, flush=True)


def run_up(args: argparse.Namespace) -> int:
    from inferwatch.exporters.redact import redact_url
    from inferwatch.stack import Stack, StackError

    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"inferwatch stack up: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    # SIGTERM (systemd, docker stop) shuts down as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = Stack(settings)
    try:
        stack.start(progress=_say)
    except (StackError, FileNotFoundError, ValueError) as exc:
        print(f"inferwatch stack up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        _say("")
        for description, url in stack.urls():
            _say(f"  {description:<34} {url}")
        _say(f"  {'data directory':<34} {settings.data_dir.resolve()}")
        for what, backend in (("Redis", settings.redis_url), ("PostgreSQL", settings.postgres_url)):
            if backend is not None:  # redacted: the URL may carry a password
                _say(f"  {what:<34} {redact_url(backend)}")
        _say("\nCtrl-C stops the stack; its data stays for the next start.\n")
        return _watch(stack, stop, args.status_interval, args.exit_when_up)
    except KeyboardInterrupt:
        return 0
    finally:
        _say("\nstopping ...")
        stack.stop()
        _say("stopped")


def _watch(stack: Any, stop: threading.Event, interval: float, exit_when_up: bool) -> int:
    tty = sys.stdout.isatty()
    last = ""
    while not stop.is_set():
        status = stack.status()
        line = status.line() if status else "Prometheus is not answering"
        if tty:
            print(f"\r\033[K{time.strftime('%H:%M:%S')} {line}", end="", flush=True)
        elif line != last:
            _say(f"{time.strftime('%H:%M:%S')} {line}")
        last = line
        if exit_when_up and status and status.targets_total and not status.down:
            if tty:
                print()
            return 0
        stop.wait(interval)
    return 0
