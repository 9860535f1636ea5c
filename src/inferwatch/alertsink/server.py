"""The sink as a uvicorn server, with the limits :mod:`inferwatch.exposition.protocol` puts on
every inferwatch port: a request must arrive within a deadline, idle connections are closed,
and the connections held are bounded, so no number of slow or idle clients can take the sink
down while Alertmanager needs it."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from inferwatch.exposition.limits import ServerLimits
from inferwatch.exposition.protocol import deepen, listening_socket, uvicorn_settings


class SinkServer(uvicorn.Server):
    """``uvicorn.Server`` on a socket of its own making (see :func:`deepen` for why)."""

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until SIGINT or SIGTERM. Raises OSError when the port cannot be had."""
        if sockets is None:
            sockets = [listening_socket(self.config.host, self.config.port)]
        super().run(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        for sock in sockets or ():
            deepen(sock)


def sink_server(
    app: Any,
    *,
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    log_level: str = "info",
    access_log: bool = True,
) -> SinkServer:
    """A uvicorn server for the sink ``app``; ``.run()`` serves until SIGINT or SIGTERM."""
    return SinkServer(
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
