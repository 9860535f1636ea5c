"""``inferwatch report``: a performance report over a Prometheus time window.

    inferwatch report --prometheus http://127.0.0.1:9090 --start 2024-05-01T10:00:00Z \
        --end 2024-05-01T10:15:00Z --out report/ --format json,md,html --check

Exit codes: 0 written (and, with --check, every criterion passed); 1 a criterion failed;
2 bad arguments or Prometheus unreachable.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

EXAMPLE_PROMETHEUS = "http://127.0.0.1:9090"


def _time(text: str) -> float:
    """Unix seconds or an ISO 8601 time (UTC when no offset is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected Unix seconds or ISO 8601, got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def _http_url(text: str) -> str:
    """A Prometheus base URL, checked before anything is queried: a bare ``host:port`` would
    otherwise read as a stopped Prometheus ("is not ready")."""
    from inferwatch.config import check_http_url

    try:
        return check_http_url(text, example=EXAMPLE_PROMETHEUS)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _formats(text: str) -> tuple[str, ...]:
    from inferwatch.reports.output import FORMATS

    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"formats are {','.join(FORMATS)}, got {text!r}")
    return chosen


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="performance report (and readiness check) over a Prometheus time window",
        description="Query Prometheus over [--start, --end] and write a performance report: "
        "latency percentiles per route, throughput, errors, models, resources, pools, caches, "
        "WebSocket, fired alerts and a bottleneck analysis.",
    )
    parser.add_argument(
        "--prometheus", required=True, type=_http_url, metavar="URL",
        help=f"Prometheus's base URL, such as {EXAMPLE_PROMETHEUS}",
    )  # fmt: skip
    parser.add_argument("--start", required=True, type=_time, help="Unix seconds or ISO 8601")
    parser.add_argument("--end", required=True, type=_time, help="Unix seconds or ISO 8601")
    parser.add_argument(
        "--job", metavar="REGEX",
        help="regex over the job label (default: every job scraped in the window but "
        "inferwatch's own: Prometheus, Alertmanager, the exporter and the alert sink)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("report"), metavar="DIR")
    parser.add_argument("--format", type=_formats, default=("json", "md", "html"))
    parser.add_argument(
        "--thresholds", type=Path, action="append", default=[], metavar="FILE",
        help="thresholds overlay: its production_readiness and warning levels set the criteria",
    )  # fmt: skip
    parser.add_argument(
        "--check", action="store_true", help="exit 1 naming each failed readiness criterion"
    )
    parser.add_argument(
        "--calibrate", type=Path, metavar="FILE",
        help="write thresholds proposed from this window as an overlay for `generate`",
    )  # fmt: skip
    parser.add_argument("--no-charts", action="store_true", help="skip the dashboard PNGs")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inferwatch.alerts.source import ThresholdsError
    from inferwatch.alerts.thresholds import load_thresholds
    from inferwatch.reports.build import build_report
    from inferwatch.stack.prometheus_api import Prometheus

    if args.end <= args.start:
        print("inferwatch report: --end must be after --start", file=sys.stderr)
        return 2
    if not Prometheus(args.prometheus).ready():
        print(f"inferwatch report: Prometheus at {args.prometheus} is not ready", file=sys.stderr)
        return 2
    try:
        thresholds = load_thresholds(*args.thresholds)
    except ThresholdsError as exc:
        print(f"inferwatch report: {exc}", file=sys.stderr)
        return 2
    report, paths = build_report(args, thresholds)
    for path in paths:
        print(path)
    if args.calibrate:
        print(args.calibrate)
    if not args.check:
        return 0
    failed = [r for r in report["check"] if not r["passed"]]
    for r in report["check"]:
        print(r["line"], file=sys.stderr if not r["passed"] else sys.stdout)
    if failed:
        names = ", ".join(sorted({r["criterion"] for r in failed}))
        print(f"inferwatch report: not production-ready: {names}", file=sys.stderr)
        return 1
    return 0
