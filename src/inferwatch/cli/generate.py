"""``inferwatch generate``: write the Prometheus rules, runbooks and promtool tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PROG = "inferwatch generate"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "generate",
        help="generate alerting/recording rules, runbooks and promtool tests",
        description=(
            "Generate alerts/recording_rules.yaml, alerts/alert_rules.yaml, alerts/runbooks/ "
            "and alerts/tests/ from the shipped thresholds, with FILE merged on top."
        ),
    )
    parser.add_argument(
        "--thresholds",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="thresholds overlay merged over the defaults (repeatable; later files win)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=Path("."),
        help="project root to write under (default: the current directory)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and name the stale files if the output is out of date",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        from inferwatch.alerts import generate
        from inferwatch.alerts.source import ThresholdsError
        from inferwatch.alerts.thresholds import load_thresholds
    except ImportError as exc:  # PyYAML comes with the `alerts` extra
        print(f"{PROG}: unavailable: {exc}; install inferwatch[alerts]", file=sys.stderr)
        return 1
    try:
        thresholds = load_thresholds(*args.thresholds)
    except ThresholdsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    result = generate.plan(args.out, thresholds, [*generate.PRODUCERS, *_dashboards()])
    if args.check:
        if not result.stale:
            return 0
        for rel in result.changed:
            print(f"{PROG}: stale: {rel}", file=sys.stderr)
        for rel in result.removed:
            print(f"{PROG}: no longer generated: {rel}", file=sys.stderr)
        print(f"{PROG}: regenerate with: inferwatch generate", file=sys.stderr)
        return 1
    generate.write(args.out, result)
    for rel in result.stale:
        print(f"{PROG}: {'removed' if rel in result.removed else 'wrote'} {rel}", file=sys.stderr)
    return 0


def _dashboards() -> list[Any]:
    """The Grafana dashboards, when grafanalib (the `dashboards` extra) is installed."""
    try:
        from inferwatch.dashboards.producer import PRODUCER
    except ImportError as exc:
        print(f"{PROG}: skipping dashboards: {exc}; install inferwatch[dashboards]",
              file=sys.stderr)  # fmt: skip
        return []
    return [PRODUCER]
