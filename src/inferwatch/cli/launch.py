"""Run an inferwatch command with backend URLs whose passwords come from secret files.

Containers receive passwords as files (compose and Kubernetes secrets), but the inferwatch
CLI takes backend URLs only as ``--redis-url``/``--postgres-url``. A password on the command
line shows in ``ps`` and ``/proc/<pid>/cmdline``; one in the container's environment shows
in ``docker inspect``. Here the URL is built from the file and handed to the command in the
same process, so it never leaves this process's memory::

    INFERWATCH_POSTGRES_URL=postgresql://inferwatch@postgres:5432/inferwatch
    INFERWATCH_POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password
    python -m inferwatch.cli.launch exporter --host 0.0.0.0

``INFERWATCH_<BACKEND>_URL`` holds no secret; ``INFERWATCH_<BACKEND>_PASSWORD_FILE`` names
the file whose content becomes the URL's (percent-encoded) password, read as every secret
file of inferwatch is (:func:`inferwatch.exposition.auth.read_secret_file`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from inferwatch.exposition.auth import read_secret_file

PROG = "inferwatch-launch"
# backend -> the CLI option that takes its URL
OPTIONS = {"redis": "--redis-url", "postgres": "--postgres-url"}


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` set; any character is allowed (``/``, ``@``, ``:``...)."""
    parts = urlsplit(url)
    if parts.password is not None:
        raise ValueError("the URL already carries a password; keep it in the file only")
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def backend_urls(environ: Mapping[str, str]) -> dict[str, str]:
    """Backend -> URL (with its password) for every INFERWATCH_<BACKEND>_URL set."""
    urls = {}
    for backend in OPTIONS:
        url = environ.get(f"INFERWATCH_{backend.upper()}_URL", "")
        if not url:
            continue
        variable = f"INFERWATCH_{backend.upper()}_PASSWORD_FILE"
        if secret_file := environ.get(variable, ""):
            url = with_password(
                url, read_secret_file(secret_file, f"{backend} password (${variable})")
            )
        urls[backend] = url
    return urls


def accepted_options(command: str) -> set[str]:
    """The option strings ``inferwatch <command>`` accepts."""
    from inferwatch.cli.main import build_parser

    parser = build_parser([command.replace("-", "_")])
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        sub = getattr(action, "choices", {}).get(command)
        if sub is not None:
            return set(sub._option_string_actions)
    raise ValueError(f"unknown inferwatch command {command!r}")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print(f"usage: {PROG} COMMAND [OPTIONS...]  (an inferwatch command)", file=sys.stderr)
        return 2
    try:
        urls = backend_urls(os.environ if environ is None else environ)
        accepted = accepted_options(args[0]) if urls else set()
    except (OSError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    for backend, url in urls.items():
        option = OPTIONS[backend]
        if option in accepted:
            args += [option, url]
        else:  # e.g. a build of the demo without backends: run without, visibly
            print(f"{PROG}: inferwatch {args[0]} has no {option}; not using {backend}",
                  file=sys.stderr)  # fmt: skip
    from inferwatch.cli.main import main as inferwatch

    return inferwatch(args)


if __name__ == "__main__":
    sys.exit(main())
