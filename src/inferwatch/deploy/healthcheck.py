"""``python -m inferwatch.deploy.healthcheck URL``: exit 0 if URL answers 2xx within 4 s.

The container image has no curl or wget; Python is there anyway.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m inferwatch.deploy.healthcheck URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(args[0], timeout=4) as response:
            return 0 if 200 <= response.status < 300 else 1
    except OSError as exc:  # URLError, HTTPError and timeouts are all OSErrors
        print(f"unhealthy: {args[0]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
