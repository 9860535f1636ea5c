"""``python -m inferwatch.deploy.healthcheck URL``: exit 0 if URL answers 2xx within 4 s.

The container image has no curl or wget; Python is there anyway. When the container's
/metrics is protected (``INFERWATCH_METRICS_TOKEN_FILE``, as ``MetricsAuth.from_env`` reads
it), the check presents the same token, read from the file: it is on no command line.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence

from inferwatch.exposition.auth import TOKEN_FILE_ENV, read_secret_file


def request(url: str, environ: Mapping[str, str]) -> urllib.request.Request:
    """A GET of ``url``, with the container's metrics token when it has one."""
    headers = {}
    token_file = environ.get(TOKEN_FILE_ENV)
    if token_file:
        headers["Authorization"] = f"Bearer {read_secret_file(token_file, 'metrics token')}"
    return urllib.request.Request(url, headers=headers)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m inferwatch.deploy.healthcheck URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(
            request(args[0], os.environ if environ is None else environ), timeout=4
        ) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts; an unreadable token
        print(f"unhealthy: {args[0]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
