"""The sink as a uvicorn server, with the limits :mod:`inferwatch.exposition.protocol` puts on
every inferwatch port: a request must arrive within a deadline, idle connections are closed,
and the connections held are bounded, so no number of slow or idle clients can take the sink
down while Alertmanager needs it."""

from __future__ import annotations

from typing import Any

import uvicorn

from inferwatch.exposition.limits import ServerLimits
from inferwatch.exposition.protocol import uvicorn_settings


def sink_server(
    app: Any,
    *,
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    log_level: str = "info",
    access_log: bool = True,
) -> uvicorn.Server:
    """A uvicorn server for the sink ``app``; ``.run()`` serves until SIGINT or SIGTERM."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=5,
            **uvicorn_settings(limits or ServerLimits()),
        )
    )
