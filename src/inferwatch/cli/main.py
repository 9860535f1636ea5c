"""``inferwatch <command> ...``: dispatch to the subcommand modules in ``COMMANDS``.

Each module under ``inferwatch.cli`` named here exposes ``add_parser(subparsers)``, which
registers its subparser and sets ``func`` (parsed args -> exit code). Subcommands import their
heavy dependencies inside ``func``, so one missing extra never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from inferwatch import __version__

COMMANDS = ["demo", "catalogue", "exporter", "alert_sink", "stack", "generate", "report"]
PROG = "inferwatch"
_PACKAGE = "inferwatch.cli"


def _unavailable(name: str, error: ImportError) -> Any:
    def run(args: argparse.Namespace) -> int:
        print(f"{PROG} {name}: unavailable: {error}", file=sys.stderr)
        return 1

    return run


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Prometheus/Grafana observability for AI model-serving backends."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if commands is None else commands:
        module_name = f"{_PACKAGE}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # listed but not written yet: simply not offered
            sub = subparsers.add_parser(name, help=f"(unavailable: {exc})")
            sub.set_defaults(func=_unavailable(name, exc))
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.error(f"command {args.command!r} did not register a handler")
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
