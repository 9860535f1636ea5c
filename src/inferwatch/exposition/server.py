"""/metrics on a port of its own, for services that must not expose it on the public port.

The port is served by uvicorn with :mod:`inferwatch.exposition.protocol`'s limits, in a
daemon thread running an event loop of its own: no signal handlers, no logging set-up, no
lifespan, nothing the host application would notice. The same server carries the standalone
exporter (:mod:`inferwatch.exporters.server`).

Under several workers (``uvicorn --workers N``, gunicorn) every worker runs the app module
and so calls :func:`start_metrics_server` with the same port. In multiprocess mode each
worker can answer for all of them, so every worker binds the port with ``SO_REUSEPORT`` and
the kernel hands each scrape to one of them. Without it a worker answers for itself only,
and a port shared that way would give each scrape one worker's numbers: the first worker
serves the port, and the others say once why they do not and carry on serving requests.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import threading
from types import ModuleType
from typing import Any

from prometheus_client.registry import REGISTRY, Collector

from inferwatch.exposition.asgi import MetricsApp, respond
from inferwatch.exposition.auth import MetricsAuth
from inferwatch.exposition.limits import ServerLimits
from inferwatch.exposition.render import Scrape
from inferwatch.metrics import multiprocess

METRICS_PATHS = ("/metrics", "/")
NOT_FOUND = Scrape(404, [("Content-Type", "text/plain; charset=utf-8")], b"Not Found\n")
_START_TIMEOUT = 10.0  # seconds for the server thread to start listening
_SHUTDOWN_GRACE = 2.0  # seconds for responses under way to finish on shutdown

log = logging.getLogger("inferwatch.exposition")


def _protocol() -> ModuleType:
    """The hardened protocol module, or an error that says what to install."""
    try:
        from inferwatch.exposition import protocol
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("uvicorn", "h11"):
            raise
        raise ImportError(
            "inferwatch's metrics server needs uvicorn, a dependency of inferwatch that is "
            f"missing here ({exc}): pip install 'uvicorn>=0.29'"
        ) from None
    return protocol


class MetricsServer:
    """An ASGI app on ``host:port`` under uvicorn, in a daemon thread with its own loop.

    ``.port`` and ``.server_address`` tell where it listens; ``.shutdown()`` stops it
    (responses under way get a moment to finish) and ``.server_close()`` also releases the
    port, as on :class:`socketserver.BaseServer`. ``reuse_port`` lets other processes
    listen on the same port (``SO_REUSEPORT``), each taking a share of the connections.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        limits: ServerLimits | None = None,
        what: str = "metrics",
        thread_name: str = "inferwatch-metrics",
        reuse_port: bool = False,
    ) -> None:
        self._protocol = _protocol()
        self.app = app
        self.limits = limits or ServerLimits()
        self._settings = self._protocol.uvicorn_settings(self.limits, quiet=True)
        try:
            # Bound here, not in the thread: a port in use is the caller's error to handle.
            self.socket = self._protocol.listening_socket(host, port, reuse_port=reuse_port)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot serve {what} on {host}:{port}: {exc.strerror}"
            ) from None
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT) or self._error is not None:
            self.server_close()
            why = repr(self._error) if self._error is not None else "no answer from its thread"
            raise RuntimeError(f"cannot serve {what} on {host}:{port}: {why}")

    @property
    def port(self) -> int:
        return self.server_address[1]

    def shutdown(self) -> None:
        """Stop serving and wait for the server thread to end."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            self._thread.join(_SHUTDOWN_GRACE + 5.0)

    def server_close(self) -> None:
        """Stop serving (if still serving) and release the port."""
        self.shutdown()
        self.socket.close()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if self._ready.is_set():  # after the start there is nobody to raise it to
                log.exception("the %s server thread failed", self._thread.name)
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        import uvicorn
        from uvicorn.server import ServerState

        settings = self._settings
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            interface="asgi3",
            log_config=None,  # the host application's logging is not ours to configure
            proxy_headers=False,
            server_header=False,
            date_header=False,
            **settings,
        )
        config.load()
        state = ServerState()
        factory = settings["http"]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: factory(config=config, server_state=state, app_state={}),
            sock=self.socket,
            backlog=settings["backlog"],
        )
        self._protocol.deepen(self.socket)
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        server.close()
        for connection in list(state.connections):
            connection.shutdown()  # idle ones close now, busy ones after their response
        try:
            await asyncio.wait_for(_settled(state), _SHUTDOWN_GRACE)
        except asyncio.TimeoutError:
            for connection in list(state.connections):
                connection.transport.abort()
            for task in list(state.tasks):
                task.cancel()


async def _settled(state: Any) -> None:
    while state.connections or state.tasks:
        await asyncio.sleep(0.02)


class MetricsPort:
    """The ASGI app of a port of its own: ``/metrics`` (and ``/``, for scrapers configured
    with a bare address), 404 for any other path."""

    def __init__(self, metrics: MetricsApp) -> None:
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] not in METRICS_PATHS:
            await respond(send, NOT_FOUND, head=scope["method"] == "HEAD")
            return
        await self.metrics(scope, receive, send)


def start_metrics_server(
    port: int,
    *,
    host: str = "0.0.0.0",
    registry: Collector = REGISTRY,
    auth: MetricsAuth | None = None,
    limits: ServerLimits | None = None,
) -> MetricsServer | None:
    """Serve /metrics on ``host:port`` in a daemon thread. ``host="127.0.0.1"`` keeps it
    reachable from this machine only (a sidecar or node agent scrapes it). Port 0 picks a
    free port: read it back from ``.port``.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) every worker of the service binds
    the port (``SO_REUSEPORT``) and any of them answers a scrape with every worker's values.
    Otherwise a port in use is not the service's failure: it is logged once, as a warning
    that says what to do, and None is returned; the app keeps serving requests. Other bind
    errors (a host that is not this machine's, a privileged port) raise :class:`OSError`.

    ``limits`` bounds what clients may cost (see :class:`ServerLimits`: 5 s to send a
    request, 60 s idle, 64 connections by default), so no number of slow or idle clients
    can take descriptors or threads from the service.
    """
    shared = multiprocess.configured() and hasattr(socket, "SO_REUSEPORT")
    app = MetricsPort(MetricsApp(registry, auth=auth))
    try:
        return MetricsServer(app, host, port, limits=limits, reuse_port=shared)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
    if shared:
        why = "held by a process that does not share it (SO_REUSEPORT)"
        todo = "stop that process or choose another port"
    else:
        why = "in use"
        todo = (
            f"with several workers set {multiprocess.ENV_VAR} to an empty directory before "
            "starting them, so that every worker shares the port and answers for all of them"
        )
    log.warning(
        "metrics port %s:%d is %s, so process %d serves requests but not /metrics: %s",
        host,
        port,
        why,
        os.getpid(),
        todo,
    )
    return None
