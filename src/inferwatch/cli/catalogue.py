"""``inferwatch catalogue``: print the metric catalogue, or check/update a Markdown file's copy."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

from inferwatch import catalogue

_WRITE_HINT = "inferwatch catalogue --write {path}"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "catalogue",
        help="print the table of every metric inferwatch defines",
        description=(
            "Print every metric inferwatch defines as a Markdown table, generated from the "
            "metric definitions. With --check or --write, work on the section of FILE between "
            f"{catalogue.START_MARKER} and {catalogue.END_MARKER}."
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        metavar="FILE",
        type=Path,
        help="exit 1 if FILE's catalogue section differs from the generated one",
    )
    mode.add_argument(
        "--write",
        metavar="FILE",
        type=Path,
        help="replace FILE's catalogue section with the generated one",
    )
    parser.set_defaults(func=run)
    return parser


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"inferwatch catalogue: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    generated = catalogue.render()
    path: Path | None = args.check or args.write
    if path is None:
        sys.stdout.write(generated)
        return 0
    document = _read(path)
    if document is None:
        return 1
    try:
        current = catalogue.section(document)
    except catalogue.MarkersNotFound as exc:
        print(f"inferwatch catalogue: {path}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if current == generated:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            fromfile=f"{path} (catalogue section)",
            tofile="generated from the metric definitions",
        )
        sys.stderr.writelines(diff)
        print(
            f"inferwatch catalogue: {path}: the metric catalogue is stale; "
            f"regenerate it with: {_WRITE_HINT.format(path=path)}",
            file=sys.stderr,
        )
        return 1
    if current != generated:
        path.write_text(catalogue.replace_section(document, generated), encoding="utf-8")
        print(f"inferwatch catalogue: updated {path}", file=sys.stderr)
    return 0
