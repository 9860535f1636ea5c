"""``inferwatch generate``: write, or check, every generated file of the project.

Without a target it runs every producer of :mod:`inferwatch.generation.registry` over the
project root: the alert rules, runbooks and promtool tests, the dashboards, the compose,
Alertmanager and Kubernetes files, and the generated sections of the docs. ``--check`` writes
nothing and fails naming each stale or orphaned file: it is the one staleness check.

A target renders one domain for another deployment, outside the project's files::

    inferwatch generate kubernetes --namespace ml --release prom -o manifests/
    inferwatch generate alertmanager --sink-url http://alert-sink:9095 -o alertmanager.yml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PROG = "inferwatch generate"


def _thresholds_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--thresholds",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="thresholds overlay merged over the defaults (repeatable; later files win)",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "generate",
        help="write (or --check) every generated file: rules, dashboards, deploy files",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    _thresholds_option(parser)
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
    targets = parser.add_subparsers(dest="target", metavar="TARGET")
    try:
        _add_kubernetes(targets)
    except ImportError as exc:  # its defaults come with PyYAML (the `alerts` extra)
        _add_unavailable(targets, "kubernetes", exc)
    _add_alertmanager(targets)
    return parser


def _add_unavailable(targets: Any, name: str, error: ImportError) -> None:
    """A target whose module cannot be imported here: every other command still parses."""

    def unavailable(args: argparse.Namespace) -> int:
        print(f"{PROG} {name}: unavailable: {error}; install inferwatch[alerts]", file=sys.stderr)
        return 1

    sub = targets.add_parser(name, help=f"(unavailable: {error})")
    sub.set_defaults(func=unavailable)


def _add_kubernetes(targets: Any) -> None:
    from inferwatch.deploy.kubernetes import PASSWORD_KEY, TOKEN_KEY, USERNAME_KEY, Settings

    defaults = Settings()
    parser = targets.add_parser(
        "kubernetes",
        help="the kube-prometheus-stack manifests for another namespace or release",
        description="Render the kube-prometheus-stack manifests for another deployment.",
    )
    parser.add_argument(
        "--namespace", default=defaults.namespace, help="of every resource and every alert"
    )
    parser.add_argument("--release", default=defaults.release, help="Helm release name")
    parser.add_argument("--sink-url", help="alert-sink base URL (default: its Service)")
    parser.add_argument("--image", default=defaults.image, help="of the exporter and alert sink")
    parser.add_argument(
        "--api-auth",
        choices=("none", "bearer", "basic"),
        default=defaults.api_auth,
        help="how Prometheus authenticates to the API's /metrics",
    )
    parser.add_argument(
        "--api-secret",
        default=defaults.api_secret,
        metavar="NAME",
        help=f"Secret with key {TOKEN_KEY!r} (bearer) or {USERNAME_KEY!r} and {PASSWORD_KEY!r}",
    )
    parser.add_argument("--grafana-url", metavar="URL", help="dashboard_url = URL/d/<uid>")
    parser.add_argument(
        "--remote-write-url",
        metavar="URL",
        help="a long-term store's remote_write endpoint: the chart values then run Prometheus "
        "and Alertmanager in pairs, both Prometheus replicas writing to URL (docs/deploy.md)",
    )
    _thresholds_option(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    parser.set_defaults(func=run_kubernetes)


def _add_alertmanager(targets: Any) -> None:
    from inferwatch.alertmanager import DEFAULT_SINK_URL

    parser = targets.add_parser(
        "alertmanager",
        help="the Alertmanager configuration for another alert-sink URL",
        description="Render the Alertmanager configuration for an alert-sink base URL.",
    )
    parser.add_argument("--sink-url", default=DEFAULT_SINK_URL, help="alert-sink base URL")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(func=run_alertmanager)


def _load(paths: list[Path]) -> Any:
    """The thresholds, or None after printing why not (a missing extra, a bad file)."""
    try:
        from inferwatch.alerts.source import ThresholdsError
        from inferwatch.alerts.thresholds import load_thresholds
    except ImportError as exc:  # PyYAML comes with the `alerts` extra
        print(f"{PROG}: unavailable: {exc}; install inferwatch[alerts]", file=sys.stderr)
        return None
    try:
        return load_thresholds(*paths)
    except ThresholdsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    thresholds = _load(args.thresholds)  # first: it names the extra PyYAML comes with
    if thresholds is None:
        return 2
    from inferwatch.generation import driver

    try:
        result = driver.plan(args.out, thresholds)
    except driver.RegionNotFound as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    for name in result.skipped:
        print(f"{PROG}: skipping {name}: its optional packages are not installed",
              file=sys.stderr)  # fmt: skip
    if args.check:
        if not result.stale:
            return 0
        for rel in sorted(result.changed):
            print(f"{PROG}: stale: {rel}", file=sys.stderr)
        for rel in result.removed:
            print(f"{PROG}: no longer generated: {rel}", file=sys.stderr)
        print(f"{PROG}: regenerate with: inferwatch generate", file=sys.stderr)
        return 1
    driver.write(args.out, result)
    for rel in result.stale:
        print(f"{PROG}: {'removed' if rel in result.removed else 'wrote'} {rel}", file=sys.stderr)
    return 0


def run_kubernetes(args: argparse.Namespace) -> int:
    from inferwatch import dashboards
    from inferwatch.deploy import kubernetes

    try:
        settings = kubernetes.Settings(
            namespace=args.namespace,
            release=args.release,
            sink_url=args.sink_url,
            image=args.image,
            api_auth=args.api_auth,
            api_secret=args.api_secret,
            grafana_url=args.grafana_url,
            remote_write_url=args.remote_write_url,
        )
    except ValueError as exc:
        print(f"{PROG} kubernetes: {exc}", file=sys.stderr)
        return 2
    thresholds = _load(args.thresholds)
    if thresholds is None:
        return 2
    rendered = kubernetes.files(thresholds, settings)
    rendered.update(kubernetes.dashboard_files(dashboards.files(thresholds), settings))
    for rel, text in rendered.items():
        path = args.output / Path(rel).relative_to(kubernetes.OUT_DIR)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"{PROG}: wrote {len(rendered)} files under {args.output}", file=sys.stderr)
    return 0


def run_alertmanager(args: argparse.Namespace) -> int:
    from inferwatch.alertmanager import render_alertmanager_config

    try:
        text = render_alertmanager_config(args.sink_url)
    except ValueError as exc:
        print(f"{PROG} alertmanager: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
