"""A FastAPI service whose /metrics needs credentials, as the README tells users to set up.

By default the bearer token comes from ``MetricsAuth.from_env()`` (so from the file named by
``$INFERWATCH_METRICS_TOKEN_FILE``); with ``$PROTECTED_APP_USERNAME`` set it wants basic auth
instead, the password read from the file named by ``$PROTECTED_APP_PASSWORD_FILE``.
``/healthz`` stays open, for readiness checks.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from inferwatch import MetricsAuth, instrument_app
from inferwatch.exposition.auth import read_secret_file

USERNAME_ENV = "PROTECTED_APP_USERNAME"
PASSWORD_FILE_ENV = "PROTECTED_APP_PASSWORD_FILE"


def _auth() -> MetricsAuth:
    username = os.environ.get(USERNAME_ENV)
    if username:
        return MetricsAuth.basic(
            username, read_secret_file(os.environ[PASSWORD_FILE_ENV], "metrics password")
        )
    auth = MetricsAuth.from_env()
    if auth is None:
        raise RuntimeError("set INFERWATCH_METRICS_TOKEN_FILE or PROTECTED_APP_USERNAME")
    return auth


app = FastAPI()
instrument_app(app, registry=CollectorRegistry(), metrics_auth=_auth())


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
