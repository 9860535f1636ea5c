"""``inferwatch stack up``: the whole monitoring stack on this machine, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from inferwatch.cli.arguments import backend_url, port

PORT_FLAGS = ("prometheus", "alertmanager", "alert_sink", "demo", "exporter")
BACKEND_NAMES = {"redis": "Redis", "postgres": "PostgreSQL"}
HA_PORT_HELP = {
    "prometheus_2": "the second Prometheus replica",
    "alertmanager_2": "the second Alertmanager",
    "alertmanager_cluster": "the first Alertmanager's gossip (TCP and UDP)",
    "alertmanager_2_cluster": "the second Alertmanager's gossip (TCP and UDP)",
    "victoria_metrics": "VictoriaMetrics, the long-term store",
}
HA_PORT_FLAGS = tuple(HA_PORT_HELP)


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, where it has one worth reading (not for
    switches that are off, nor options that are unset unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, []):
            return action.help
        return super()._get_help_string(action)


def add_parser(subparsers: Any) -> None:
    stack = subparsers.add_parser("stack", help="run the local monitoring stack")
    actions = stack.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="start demo/service, Redis, PostgreSQL, exporter, Prometheus, Alertmanager and "
        "the alert sink",
        description="Start the stack in the foreground; Ctrl-C stops it and keeps its data.",
        formatter_class=_DefaultsHelp,
    )
    from inferwatch.stack.settings import Ports

    defaults = Ports()
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".inferwatch"),
        metavar="DIR",
        help="configs, logs, Prometheus's and PostgreSQL's data",
    )
    up.add_argument(
        "--host", default="127.0.0.1", metavar="ADDR", help="address every component binds"
    )
    for name in PORT_FLAGS:
        up.add_argument(
            f"--{name.replace('_', '-')}-port",
            type=port,
            default=getattr(defaults, name),
            metavar="N",
            help=f"port of {name.replace('_', ' ')}",
        )
    up.add_argument(
        "--ha",
        action="store_true",
        help="the HA topology: two Prometheus replicas, two clustered Alertmanagers, and "
        "VictoriaMetrics as the long-term store both replicas remote_write to",
    )
    from inferwatch.stack.settings import HAPorts

    ha_defaults = HAPorts()
    for name in HA_PORT_FLAGS:
        up.add_argument(
            f"--{name.replace('_', '-')}-port",
            type=port,
            default=getattr(ha_defaults, name),
            metavar="N",
            help=f"with --ha: port of {HA_PORT_HELP[name]}",
        )
    for kind, what in (("demo", "demo service"), ("exporter", "exporter")):
        up.add_argument(
            f"--{kind}s",
            type=int,
            default=1,
            metavar="N",
            help=f"run N {what} replicas, each its own instance, on consecutive ports from "
            f"--{kind}-port",
        )
    up.add_argument(
        "--peer-timeout",
        metavar="DURATION",
        help="with --ha: how long the second Alertmanager waits for the first to notify "
        "(Alertmanager's --cluster.peer-timeout, 15s by default)",
    )
    up.add_argument(
        "--long-term-retention",
        default="1d",
        metavar="PERIOD",
        help="with --ha: how long VictoriaMetrics keeps samples (months, or with h, d, w, y)",
    )
    up.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also scrape your own service's /metrics (repeatable)",
    )
    up.add_argument(
        "--service-job", default="ai-service", metavar="JOB", help="job label for --service"
    )
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
    up.add_argument(
        "--demo-time-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply the demo's simulated model delays (0.01 runs 100 times faster)",
    )
    up.add_argument(
        "--scrape-interval", default="15s", metavar="DURATION", help="how often Prometheus scrapes"
    )
    up.add_argument(
        "--evaluation-interval",
        default="15s",
        metavar="DURATION",
        help="how often Prometheus evaluates rules",
    )
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
        help="multiply every alert's for: (e.g. 0.1 for demonstrations); Alertmanager's "
        "group_wait, group_interval and repeat_interval are scaled by the smaller of "
        "--for-scale and --window-scale",
    )
    up.add_argument(
        "--window-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every rule's range window, [5m] -> [30s] at 0.1 (at least two scrape "
        "intervals), so alerts also resolve quickly in demonstrations",
    )
    for backend, what in BACKEND_NAMES.items():
        given = up.add_mutually_exclusive_group()
        given.add_argument(
            f"--{backend}-url",
            metavar="URL",
            help=f"your own {what} for the demo and the exporter, instead of the stack's "
            f"(prefer --{backend}-url-file: a password on the command line shows in "
            "process listings)",
        )
        given.add_argument(
            f"--{backend}-url-file", type=Path, metavar="FILE", help=f"the {what} URL from FILE"
        )
        given.add_argument(
            f"--no-{backend}",
            action="store_true",
            help=f"run no {what}: the demo keeps its "
            + ("cache in memory" if backend == "redis" else "database in SQLite"),
        )
    up.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds each component may take to become healthy (and --exit-when-up waits "
        "for every target)",
    )
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
        help="stop once every target is up and every backend reachable, exit status 1 if "
        "that takes longer than --startup-timeout (a smoke test of the set-up)",
    )
    up.set_defaults(func=run_up)


def _settings(args: argparse.Namespace) -> Any:
    from inferwatch.stack.settings import HAPorts, Ports, StackSettings

    return StackSettings(
        data_dir=args.data_dir,
        host=args.host,
        ports=Ports(**{name: getattr(args, f"{name}_port") for name in PORT_FLAGS}),
        ha=args.ha,
        ha_ports=HAPorts(**{name: getattr(args, f"{name}_port") for name in HA_PORT_FLAGS}),
        long_term_retention=args.long_term_retention,
        peer_timeout=args.peer_timeout,
        demos=args.demos,
        exporters=args.exporters,
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
        redis_url=backend_url(args, "redis"),
        postgres_url=backend_url(args, "postgres"),
        embedded_backends=tuple(b for b in BACKEND_NAMES if not getattr(args, f"no_{b}")),
    )


class _Output:
    """stdout that may go away: a pipe whose reader exits (``stack up | tee log``, and Ctrl-C
    ends ``tee`` too) must never keep the stack from stopping cleanly. After the first
    failed write, output goes to /dev/null, so that neither later messages nor the
    interpreter's own flush at exit fail again."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()

    def say(self, message: str = "", *, end: str = "\n") -> None:
        self._write(sys.stdout, message + end)

    def error(self, message: str) -> None:
        self._write(sys.stderr, f"inferwatch stack up: {message}\n")

    def _write(self, stream: Any, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # BrokenPipeError, EIO from a closed terminal
            self._silence(stream)

    @staticmethod
    def _silence(stream: Any) -> None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def run_up(args: argparse.Namespace) -> int:
    from inferwatch.stack import Stack, StackError

    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"inferwatch stack up: {exc}", file=sys.stderr)
        return 2
    out = _Output()
    stop = threading.Event()
    # SIGTERM (systemd, docker stop) shuts down as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = Stack(settings)
    try:
        stack.start(progress=out.say)
    except (StackError, OSError, ValueError) as exc:  # OSError: FileNotFoundError, initdb
        print(f"inferwatch stack up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # start() stopped what it had started
        return 130
    try:
        # From here on Ctrl-C asks for the stop as SIGTERM does, rather than raising wherever
        # the main thread happens to be: the stop below then runs once, to its end.
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        _banner(stack, out)
        return _watch(stack, stop, out, args.status_interval, args.exit_when_up)
    except KeyboardInterrupt:  # Ctrl-C before the handler above was in place
        return 0
    finally:
        out.say("\nstopping ...")
        stack.stop()
        out.say("stopped")


def _banner(stack: Any, out: _Output) -> None:
    from inferwatch.exporters.redact import redact_url

    settings = stack.settings
    rows = [*stack.urls(), ("data directory", str(settings.data_dir.resolve()))]
    own = {b.name for b in stack.backends}
    for backend, what in BACKEND_NAMES.items():
        url = settings.url_of(backend)
        if url is not None and backend not in own:  # yours, redacted: it may carry a password
            rows.append((f"{what} (yours)", redact_url(url)))
    width = max(len(what) for what, _ in rows)
    out.say()
    for what, where in rows:
        out.say(f"  {what:<{width}}  {where}")
    out.say("\nCtrl-C stops the stack; its data stays for the next start.\n")


def _watch(
    stack: Any, stop: threading.Event, out: _Output, interval: float, exit_when_up: bool
) -> int:
    deadline = time.monotonic() + stack.settings.startup_timeout
    last = ""
    while not stop.is_set():
        status = stack.status()
        line = status.line() if status else "Prometheus is not answering"
        if out.tty:
            out.say(f"\r\033[K{time.strftime('%H:%M:%S')} {line}", end="")
        elif line != last:
            out.say(f"{time.strftime('%H:%M:%S')} {line}")
        last = line
        if exit_when_up and status is not None and status.all_up:
            if out.tty:
                out.say()
            return 0
        if exit_when_up and time.monotonic() > deadline:
            out.error(f"not all up within {stack.settings.startup_timeout:g} s: {line}")
            return 1
        stop.wait(interval)
    return 0
