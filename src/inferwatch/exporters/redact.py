"""Keeping credentials out of metrics, labels and log lines.

Backend URLs (``redis://:secret@host``, ``postgresql://user:secret@host/db?sslpassword=x``)
carry passwords. Anything derived from a URL for display goes through :func:`redact_url`,
and error text from a backend client goes through :func:`redact_text` before it is logged.

Malformed URLs are the hard case. A password with an unencoded ``@``
(``postgresql://user:p@ss@host/db``) is read three ways: :func:`urllib.parse.urlsplit` ends
the userinfo at the *last* ``@`` before the host, libpq and SQLAlchemy at the *first*, and
then report ``ss@host`` as a host they cannot resolve. Here the userinfo always ends at the
last ``@`` (hiding too much rather than too little), :func:`quote_userinfo` re-encodes it
so that every client reads the host urlsplit reads, and :func:`redact_text` also removes the
pieces of a known password that a first-``@`` parser echoes as a host or a port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"
UNPARSEABLE = "<unparseable URL>"
# Query parameters (libpq, redis-py and friends) whose value is a credential.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|credential", re.IGNORECASE)
# The userinfo of any URL in free text: from `scheme://` to the last `@` before the URL ends
# (whitespace, a quote or an angle bracket), so an unencoded `@`, `:` or `/` in a password
# is hidden with the rest. An `@` later in a path or query hides a little too much.
_URL_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s\"'<>`]*@")
# Credentials as key/value text: libpq keyword strings (password=secret, password='se cret'),
# and the `"password": "x"` of a JSON or dict repr.
_KEYWORD_SECRET = re.compile(
    r"""\b(\w*(?:pass|pwd|secret|token)\w*)(["']?)\s*([:=])\s*"""
    r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s,}]+)""",
    re.IGNORECASE,
)
# The start of a libpq keyword/value connection string (`host=db password=...`).
_KEYWORD_DSN = re.compile(r"\s*\w+\s*=")
_ESCAPE = re.compile(r"\\(.)")
# Where a client that ends the userinfo early cuts a password, reading the rest as host:port.
_CUTS = re.compile(r"[@:]")


def _hide_keywords(text: str) -> str:
    return _KEYWORD_SECRET.sub(rf"\1\2\3{REDACTED}", text)


def redact_url(url: str) -> str:
    """``url`` without user name, password or secret query parameters, safe to show.

    ``redis://user:pw@cache:6379/0`` becomes ``redis://cache:6379/0``, and so does
    ``redis://user:p@ss:w@rd@cache:6379/0``. Without a scheme, ``user:pw@db:5432/app``
    becomes ``db:5432/app`` and a libpq keyword string keeps its keys with the secret values
    replaced. A URL that cannot be read unambiguously shows as ``<unparseable URL>``.
    """
    if "://" in url:
        return _redact_authority(url)
    if _KEYWORD_DSN.match(url) or "@" not in url:
        return _hide_keywords(url)
    return _redact_authority("//" + url).removeprefix("//")


def _redact_authority(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return UNPARSEABLE
    if "@" in url[url.index("//") + 2 + len(parts.netloc) :]:
        # An `@` after the host: a password with an unencoded `/`, `?` or `#` (urlsplit ends
        # the host there), whose rest would show as the path.
        return UNPARSEABLE
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


def quote_userinfo(url: str) -> str:
    """``url`` with its user name and password percent-encoded, so that libpq, SQLAlchemy
    and redis-py all connect to the host :func:`urllib.parse.urlsplit` sees (the userinfo
    ends at the last ``@``), and none of them reports part of a password as a host name.

    ``postgresql://u:p@ss@db/app`` becomes ``postgresql://u:p%40ss@db/app``; a well-formed
    URL, one without userinfo and one urlsplit cannot read are returned as they are.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, password = userinfo.partition(":")
    # Decoded first, so that what is already encoded is not encoded twice.
    quoted = quote(unquote(user), safe="") + colon + quote(unquote(password), safe="")
    if quoted == userinfo:
        return url
    return urlunsplit(parts._replace(netloc=f"{quoted}@{hostport}"))


def url_secrets(url: str) -> list[str]:
    """The credential strings in ``url`` (a URL or a libpq keyword string), for scrubbing
    them from free text: each password as written and as decoded, and the values of secret
    query parameters (or of a keyword string's secret keys, as written and unquoted)."""
    if "://" not in url and _KEYWORD_DSN.match(url):
        keyed = [m.group(4) for m in _KEYWORD_SECRET.finditer(url)]
        # A quoted value as written, and as the client reads it: unquoted, unescaped.
        keyed += [_ESCAPE.sub(r"\1", v[1:-1]) for v in keyed if v[:1] in "'\"" and len(v) > 1]
        return [value for value in dict.fromkeys(keyed) if value]
    try:
        parts = urlsplit(url if "://" in url else "//" + url)
    except ValueError:
        parts = None
    passwords = [parts.password] if parts is not None and parts.password else []
    # Where urlsplit ends the host early (an unencoded `/`, `?` or `#` in the password), the
    # userinfo as this module reads it: up to the last `@`.
    authority = url.partition("://")[2] or url
    if "@" in authority:
        userinfo = authority.rpartition("@")[0]
        if ":" in userinfo:
            passwords.append(userinfo.partition(":")[2])
    found: list[str] = []
    for password in passwords:
        found += [password, unquote(password)]
    if parts is not None:
        found += [
            v
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if v and _SECRET_PARAM.search(k)
        ]
    return [value for value in dict.fromkeys(found) if value]


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (an error message, say) with URL credentials and known ``secrets`` removed
    (give it :func:`url_secrets` of the URLs involved).

    A secret is removed wherever it occurs; so is each piece of it between ``@`` and ``:``
    where it stands alone, not inside a longer word: a client that ends the userinfo at the
    first ``@`` echoes those pieces as hosts and ports (libpq's ``failed to resolve host
    'ss@db'`` for the password ``p@ss``).
    """
    text = _URL_USERINFO.sub(r"\1", text)
    text = _hide_keywords(text)
    known = {s for s in secrets if s}
    # Longest first, so a secret containing another is not left half-replaced.
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    pieces = {piece for s in known if _CUTS.search(s) for piece in _CUTS.split(s) if piece}
    for piece in sorted(pieces - {REDACTED}, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(piece)}(?![A-Za-z0-9])", REDACTED, text)
    return text
