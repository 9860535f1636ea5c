"""Keeping credentials out of metrics, labels and log lines.

Backend URLs (``redis://:secret@host``, ``postgresql://user:secret@host/db?sslpassword=x``)
carry passwords. Anything derived from a URL for display goes through :func:`redact_url`,
and error text from a backend client goes through :func:`redact_text` before it is logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"
# Query parameters (libpq, redis-py and friends) whose value is a credential.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|credential", re.IGNORECASE)
# userinfo of any URL embedded in free text: scheme://user:password@
_URL_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*@")
# libpq keyword/value connection strings: password=secret or password='se cret'
_KEYWORD_SECRET = re.compile(
    r"\b(\w*(?:pass|pwd|secret|token)\w*)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """``url`` without user name, password or secret query parameters, safe to show.

    ``redis://user:pw@cache:6379/0`` becomes ``redis://cache:6379/0``. Strings that are not
    parseable URLs are returned with anything that looks like a credential removed.
    """
    if "://" not in url:
        return _KEYWORD_SECRET.sub(rf"\1={REDACTED}", url)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    netloc = f"{host}:{port}" if port is not None else host
    query = urlencode(
        [
            (k, REDACTED if _SECRET_PARAM.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe=REDACTED,
    )
    # The fragment never matters for a connection and could hold anything.
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The credential strings in ``url``, for scrubbing them from free text."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    found += [
        v
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if v and _SECRET_PARAM.search(k)
    ]
    return found


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (an error message, say) with URL credentials and known ``secrets`` removed."""
    text = _URL_USERINFO.sub(r"\1", text)
    text = _KEYWORD_SECRET.sub(rf"\1={REDACTED}", text)
    # Longest first, so a secret containing another is not left half-replaced.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
