"""Redaction of hostile URLs and error text: unencoded `@` and `:` in passwords, `%40`, IPv6
hosts, no scheme, libpq keyword strings with quoted values, URLs inside exception text, and
the errors the real clients raise when handed such URLs."""

from __future__ import annotations

import psycopg
import pytest
import redis

from inferwatch.exporters.redact import quote_userinfo, redact_text, redact_url, url_secrets
from tests.support import free_port

PASSWORD = "Kw3-first@Zq7-second:x9-third@Lm4-fourth"
# Every piece a parser could cut the password into, and the whole: none may ever show.
PIECES = (PASSWORD, "Kw3-first", "Zq7-second", "x9-third", "Lm4-fourth")


def assert_hidden(text: str) -> None:
    for piece in PIECES:
        assert piece not in text, f"{piece!r} shows in {text!r}"


URLS = [
    # (what is given, what redact_url shows)
    (f"postgresql://app:{PASSWORD}@db.internal:5432/app", "postgresql://db.internal:5432/app"),
    (f"postgresql://ap@p:{PASSWORD}@db:5432/app", "postgresql://db:5432/app"),
    (f"redis://:{PASSWORD}@cache:6379/0", "redis://cache:6379/0"),
    ("redis://:Kw3-first%40Zq7-second@cache/0", "redis://cache/0"),
    (f"postgresql://u:{PASSWORD}@[::1]:5432/db", "postgresql://[::1]:5432/db"),
    (
        f"postgresql://u:{PASSWORD}@[2001:db8::1]/db?sslpassword=Lm4-fourth&sslmode=require",
        "postgresql://[2001:db8::1]/db?sslpassword=REDACTED&sslmode=require",
    ),
    (f"app:{PASSWORD}@db:5432/app", "db:5432/app"),  # no scheme
    (
        f"host=db user=app password='{PASSWORD} x9-third\\'s' sslmode=require",
        "host=db user=app password=REDACTED sslmode=require",
    ),
    # An unencoded `/` or `#` ends the host for urlsplit: the rest would show as a path.
    ("postgresql://u:Kw3-first/Zq7-second@db/app", "<unparseable URL>"),
    ("postgresql://u:5432/Zq7-second@db/app", "<unparseable URL>"),  # even when it reads
    ("postgresql://u:Kw3-first#Zq7-second@db/app", "<unparseable URL>"),
    ("redis://cache:6379/0", "redis://cache:6379/0"),  # nothing to hide: unchanged
]


@pytest.mark.parametrize(("url", "shown"), URLS)
def test_redact_url_hides_the_whole_userinfo(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert_hidden(shown)


TEXTS = [
    # (free text, what redact_text shows without being told any secret)
    (
        f'connection to "postgresql://app:{PASSWORD}@db:5432/app" failed',
        'connection to "postgresql://db:5432/app" failed',
    ),
    (
        f"Error connecting to redis://:{PASSWORD}@[::1]:6379/0. Refused.",
        "Error connecting to redis://[::1]:6379/0. Refused.",
    ),
    (
        f"dsn='host=db password=\"{PASSWORD}\"' invalid",
        "dsn='host=db password=REDACTED' invalid",
    ),
    (f"kwargs {{'password': '{PASSWORD}', 'db': 0}}", "kwargs {'password':REDACTED, 'db': 0}"),
    ("token=Kw3-first, next", "token=REDACTED, next"),
]


@pytest.mark.parametrize(("text", "shown"), TEXTS)
def test_redact_text_hides_urls_and_keywords_in_free_text(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert_hidden(shown)


def test_known_secrets_and_the_pieces_a_first_at_parser_echoes() -> None:
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:5432/app"
    secrets = url_secrets(url)
    # libpq ends the userinfo at the first `@` and reports the rest as a host it cannot find.
    echoed = "failed to resolve host 'Zq7-second:x9-third@Lm4-fourth@127.0.0.1': no such host"
    assert redact_text(echoed, secrets) == (
        "failed to resolve host 'REDACTED:REDACTED@REDACTED@127.0.0.1': no such host"
    )
    # A piece is removed where it stands alone, never from inside a word.
    short = url_secrets("postgresql://u:p@ss@db/app")
    assert redact_text("no address for 'ss@db'", short) == "no address for 'REDACTED@db'"
    # Without a scheme the URL is not recognisable in text, but the password is known.
    assert redact_text(f"no route to app:{PASSWORD}@db", secrets) == "no route to app:REDACTED@db"
    # %40 in the URL: a client may echo the password decoded.
    encoded = url_secrets("redis://:Kw3-first%40Zq7-second@cache/0")
    assert redact_text("bad password Kw3-first@Zq7-second", encoded) == "bad password REDACTED"
    # A libpq keyword string: the quoted value as written and as libpq reads it.
    dsn = "host=db password='Kw3-first x9-third\\'s'"
    assert redact_text("password Kw3-first x9-third's rejected", url_secrets(dsn)) == (
        "password REDACTED rejected"
    )


def test_quote_userinfo_makes_every_client_read_the_same_host() -> None:
    url = f"postgresql://ap@p:{PASSWORD}@db:5432/app?sslmode=require"
    quoted = quote_userinfo(url)
    assert quoted == (
        "postgresql://ap%40p:Kw3-first%40Zq7-second%3Ax9-third%40Lm4-fourth@db:5432/app"
        "?sslmode=require"
    )
    assert psycopg.conninfo.conninfo_to_dict(quoted)["host"] == "db"
    assert psycopg.conninfo.conninfo_to_dict(quoted)["password"] == PASSWORD
    assert quote_userinfo(quoted) == quoted  # encoded once, never twice
    for unchanged in ("redis://cache:6379/0", "redis://:plain@cache/0", "not a url"):
        assert quote_userinfo(unchanged) == unchanged


def real_client_errors(url: str) -> list[str]:
    """What psycopg and redis-py raise when handed ``url`` as it is, the server refusing."""
    messages = []
    try:
        psycopg.connect(url.replace("redis://", "postgresql://"), connect_timeout=2).close()
    except psycopg.Error as exc:
        messages.append(f"{type(exc).__name__}: {exc}")
    try:
        redis.Redis.from_url(url.replace("postgresql://", "redis://"), socket_timeout=2).ping()
    except redis.RedisError as exc:
        messages.append(f"{type(exc).__name__}: {exc}")
    return messages


def test_errors_of_the_real_clients_are_clean() -> None:
    port = free_port()  # nothing listens: connections are refused
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/app"
    raw = real_client_errors(url)
    assert len(raw) == 2
    assert any("Zq7-second" in message for message in raw)  # libpq echoes part of it
    for message in raw:
        assert_hidden(redact_text(message, url_secrets(url)))
    # Handed the quoted URL, libpq tries the right host and echoes nothing of the password.
    fixed = real_client_errors(quote_userinfo(url))
    assert all("Zq7-second" not in message for message in fixed)
    assert f'connection to server at "127.0.0.1", port {port} failed' in fixed[0]
