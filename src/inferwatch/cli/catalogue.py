"""``inferwatch catalogue``: print the metric catalogue.

``inferwatch generate`` writes the same text into docs/metrics.md's catalogue section (and
``--check`` fails when it is stale); this prints it, for another document or a look.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "catalogue",
        help="print the table of every metric inferwatch defines",
        description=(
            "Print every metric inferwatch defines as a Markdown table, generated from the "
            "metric definitions. `inferwatch generate` keeps the copy in docs/metrics.md current."
        ),
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from inferwatch import catalogue

    sys.stdout.write(catalogue.render())
    return 0
