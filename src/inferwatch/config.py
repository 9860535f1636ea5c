"""The settings every part of inferwatch checks alike: ports, backend URLs and http URLs.

The exporter's config file, the local stack's settings and every command's flags take ports
and Redis/PostgreSQL URLs. Each kind of setting has one rule here, so that a value one of
them accepts is accepted by all, and a rejected one is rejected in the same words: the
setting's name, what it must be, and what was given (a URL only redacted, never with its
password). Library code: it imports nothing of the tooling (stack, demo, CLI).
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

MAX_PORT = 65535
# The schemes each backend's clients (redis-py; libpq, psycopg and SQLAlchemy) connect with,
# most usual first: the demo, the exporter and the stack hand one URL to all of them.
BACKEND_SCHEMES = {
    "redis": ("redis", "rediss", "unix"),
    "postgres": ("postgresql", "postgres"),
}
HTTP_SCHEMES = ("http", "https")


def _subject(what: str) -> str:
    return f"{what} " if what else ""


def check_port(value: object, what: str = "", *, zero_allowed: bool = True) -> int:
    """``value`` as a TCP port. ``zero_allowed``: whether 0 (any free port, which the server
    then reports) will do; a port other components must be told in advance cannot be 0.

    ``what`` names the setting at the head of the message (``--demo-port``, ``'port'``);
    without it the message is what an argparse type error appends to the flag."""
    least = 0 if zero_allowed else 1
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_PORT:
        raise ValueError(f"{_subject(what)}must be a port {least}..{MAX_PORT}, got {value!r}")
    return value


def check_backend_url(backend: str, url: str, what: str = "") -> str:
    """``url`` as a URL of ``backend`` (``redis`` or ``postgres``, see
    :data:`BACKEND_SCHEMES`), with its userinfo percent-encoded (see
    :func:`~inferwatch.exporters.redact.quote_userinfo`), so that every client reads the
    host :func:`urllib.parse.urlsplit` reads. Errors show the URL only redacted."""
    # Imported here: importing the exporters package imports its config, which imports this.
    from inferwatch.exporters.redact import quote_userinfo

    schemes = BACKEND_SCHEMES[backend]
    shape = f"a {' or '.join(schemes)}:// URL"
    if isinstance(url, str) and "://" not in url:
        # Not shown: text that is no URL may be a password alone (read from a secret file).
        raise ValueError(f"{_subject(what)}must be {shape}, got no scheme://")
    _split_url(url, schemes, _subject(what), shape)
    return quote_userinfo(url)


def check_http_url(url: object, what: str = "", *, example: str = "") -> str:
    """``url`` as an http:// or https:// URL with a host, such as a Prometheus or
    Alertmanager base URL. ``example`` shows the expected form in the message (a bare
    ``host:port`` is the usual mistake, and urllib would read ``localhost`` as its scheme).
    Errors show the URL only redacted."""
    shape = "an http:// or https:// URL" + (f" such as {example}" if example else "")
    parts = _split_url(url, HTTP_SCHEMES, _subject(what), shape)
    if not parts.hostname:
        from inferwatch.exporters.redact import redact_url

        raise ValueError(f"{_subject(what)}must be {shape}, got no host in {redact_url(str(url))}")
    return url  # type: ignore[return-value]  # _split_url checked it is a str


def _split_url(url: object, schemes: tuple[str, ...], subject: str, shape: str) -> SplitResult:
    """``url`` split, if it is a string with a valid port and one of ``schemes`` followed by
    ``://``; a ValueError in the words of :func:`check_backend_url` otherwise."""
    from inferwatch.exporters.redact import redact_url  # deferred, as in check_backend_url

    if not isinstance(url, str):
        raise ValueError(f"{subject}must be a URL string")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"{subject}is not a valid URL: {redact_url(url)}") from None
    if parts.scheme not in schemes or not url.startswith(f"{parts.scheme}://"):
        found = f"scheme {parts.scheme!r}" if "://" in url else "no scheme://"
        raise ValueError(f"{subject}must be {shape}, got {found} in {redact_url(url)}")
    return parts
