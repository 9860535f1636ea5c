"""Optional protection of /metrics with a bearer token or HTTP basic auth.

Secrets are compared in constant time, never logged, and can be read from files (the way
Docker and Kubernetes mount secrets) so they stay out of process listings and shell history.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "INFERWATCH_METRICS_TOKEN"
TOKEN_FILE_ENV = "INFERWATCH_METRICS_TOKEN_FILE"
# The exit status uvicorn (STARTUP_FAILURE) and gunicorn (WORKER_BOOT_ERROR) both read as "this
# worker cannot start, and would fail the same way again": they stop instead of restarting it.
STARTUP_FAILURE = 3
_MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > {path}"

log = logging.getLogger("inferwatch.exposition")


class MetricsAuthError(ValueError, SystemExit):
    """The credentials :meth:`MetricsAuth.from_env` was told to use cannot be read.

    A :class:`ValueError` to code that handles it; left unhandled, as when the app module
    calls ``from_env()`` at import under uvicorn or gunicorn, it ends the process like
    ``sys.exit(3)``: no traceback of the server's import machinery, and a supervisor that
    stops rather than restarting the worker in a loop. The message is logged once when it is
    raised, since an exit status prints nothing.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = STARTUP_FAILURE


def read_secret_file(path: str | os.PathLike[str], what: str) -> str:
    """The secret in the file at ``path``: a token, a password or a URL holding one.

    inferwatch's one reader of secret files, for every command and for the library. Leading
    and trailing whitespace is dropped, the line break an editor or ``echo`` ends the file
    with included, as Prometheus drops it from the same ``credentials_file`` or
    ``password_file``, so one file means the same secret to both. An empty file is an error.
    Messages name ``what`` and the path, never the contents."""
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what} from file {str(path)!r}: {exc.strerror}") from None
    if not secret:
        raise ValueError(f"{what} file {str(path)!r} is empty")
    return secret


@dataclass(frozen=True)
class MetricsAuth:
    """Credentials a scrape must present. Build with :meth:`bearer` or :meth:`basic`."""

    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.bearer_token is not None and not self.bearer_token:
            raise ValueError("metrics bearer token must not be empty")
        if (self.username is None) != (self.password is None):
            raise ValueError("metrics basic auth needs both a username and a password")
        if self.password is not None and not self.password:
            raise ValueError("metrics basic-auth password must not be empty")
        if self.bearer_token is None and self.username is None:
            raise ValueError("MetricsAuth needs a bearer token or a username and password")

    @classmethod
    def bearer(cls, token: str) -> MetricsAuth:
        return cls(bearer_token=token)

    @classmethod
    def basic(cls, username: str, password: str) -> MetricsAuth:
        return cls(username=username, password=password)

    @classmethod
    def from_env(
        cls, token_env: str = TOKEN_ENV, file_env: str = TOKEN_FILE_ENV
    ) -> MetricsAuth | None:
        """A bearer token from the file named by ``$file_env`` or else from ``$token_env``
        ($INFERWATCH_METRICS_TOKEN_FILE and $INFERWATCH_METRICS_TOKEN by default), or None
        when neither is set.

        A token file that is missing, unreadable or empty raises :class:`MetricsAuthError`,
        whose one-line message names the file and says how to create it."""
        if path := os.environ.get(file_env):
            try:
                return cls.bearer(read_secret_file(path, f"token (${file_env})"))
            except ValueError as exc:
                quoted = shlex.quote(path)
                error = MetricsAuthError(
                    f"{exc}; create it with {_MAKE_TOKEN.format(path=quoted)} && chmod 600 "
                    f"{quoted}, or set ${file_env} to the file that holds the token"
                )
            log.error("%s", error)
            raise error
        if os.environ.get(token_env):
            return cls.bearer(os.environ[token_env])
        return None

    @property
    def challenge(self) -> str:
        return 'Bearer realm="metrics"' if self.bearer_token else 'Basic realm="metrics"'

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the right credentials."""
        if not authorization:
            return False
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if self.bearer_token is not None and scheme == "bearer":
            return hmac.compare_digest(credentials.encode(), self.bearer_token.encode())
        if self.username is not None and self.password is not None and scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            # evaluate both comparisons: no early exit that would time the username
            ok_user = hmac.compare_digest(user.encode(), self.username.encode())
            ok_password = hmac.compare_digest(password.encode(), self.password.encode())
            return bool(sep) and ok_user and ok_password
        return False
