"""uvicorn's h11 protocol with the limits a port open to untrusted clients needs.

uvicorn itself bounds neither the time a client may take to send a request (its keep-alive
timer is cancelled by the first byte of the next request, and a connection that never
completes its first request head is held forever) nor the number of connections it holds.
A few hundred clients that open a connection and send half a request head then pin every
file descriptor of the process, and the service that embeds the server stops answering on
its own port too. :class:`HardenedH11Protocol` adds, per server:

* a **request deadline**: a request, head and body, must arrive within
  ``request_timeout`` of the connection being accepted, or of the first byte of a next
  request on a kept-alive connection. Bytes dribbled in do not extend it. On expiry the
  client gets a 408 (when it had sent something) and the connection is closed;
* an **idle timeout** on kept-alive connections (uvicorn's own keep-alive timer);
* a **connection bound**: past ``max_connections``, a new connection closes the oldest one
  that is not being answered (idle, or still sending its request), so idle connections can
  never lock out a scraper; when every connection is being answered the new one is refused;
* a **send deadline**: a connection whose unsent output has not shrunk for
  ``send_timeout`` (a client that stopped reading) is aborted, so it cannot hold a
  response, and its descriptor, forever.

:func:`uvicorn_settings` gives the ``uvicorn.Config`` keywords that put it to work, on a
socket from :func:`listening_socket` (see :func:`deepen` for why the two backlogs differ).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import MutableMapping
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from inferwatch.exposition.limits import ServerLimits

log = logging.getLogger("inferwatch.exposition")

# Written by hand: h11 cannot send a response before it has parsed a request head.
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\n"
    b"connection: close\r\n\r\n"
    b"Request Timeout\n"
)
_SWEEP_INTERVAL = 1.0  # seconds between checks for stalled sends
# Connections the kernel may hold completed but not yet accepted (uvicorn's default).
LISTEN_BACKLOG = 2048


class _ClientNoiseAtDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """uvicorn warns about every malformed request or refused upgrade: from an open port
    that is a log line per packet a stranger chooses to send. Those go to debug; errors of
    the application itself stay errors."""

    @property
    def level(self) -> int:  # uvicorn reads ``logger.level`` to decide on trace output
        level: int = self.logger.level
        return level

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


class _Connections:
    """The open connections of one server, oldest first, and the sweep for stalled sends."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self._open: dict[HardenedH11Protocol, None] = {}  # insertion order: age
        self._sweep: asyncio.TimerHandle | None = None

    def admit(self, connection: HardenedH11Protocol) -> bool:
        """Make room for ``connection`` or refuse it."""
        if len(self._open) >= self.limits.max_connections:
            victim = next((c for c in self._open if not c.answering), None)
            if victim is None:
                return False
            victim.drop()
        self._open[connection] = None
        if self._sweep is None:
            self._schedule(connection.loop)
        return True

    def discard(self, connection: HardenedH11Protocol) -> None:
        self._open.pop(connection, None)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = loop.call_later(_SWEEP_INTERVAL, self._check_sends, loop)

    def _check_sends(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = time.monotonic()
        for connection in list(self._open):
            connection.check_send_progress(now, self.limits.send_timeout)
        if self._open:  # an idle server is not woken up every second
            self._schedule(loop)


class HardenedH11Protocol(H11Protocol):
    """uvicorn's :class:`H11Protocol` with the limits of one server (see the module docs).

    Built by :class:`HardenedProtocolFactory`. uvicorn's own state (``conn``, ``cycle``,
    ``transport``) is read, and changed only the way uvicorn changes it when a client hangs
    up, so every request still goes through uvicorn's code.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        connections: _Connections,
        quiet: bool = False,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._connections = connections
        self._limits = connections.limits
        self._deadline: asyncio.TimerHandle | None = None
        self._unsent = 0
        self._stalled_since: float | None = None
        if quiet:
            # Scrapes every few seconds would flood the host service's access log.
            self.access_log = False
            self.logger = _ClientNoiseAtDebug(log, {})  # type: ignore[assignment]

    # -- the asyncio protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._connections.admit(self):
            transport.abort()  # every connection held is being answered: no room
            return
        self._update_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined next request may have been waiting in the buffer.
        self._update_deadline()

    # -- state ----------------------------------------------------------------------------
    @property
    def answering(self) -> bool:
        """A whole request has arrived and its response is not finished: the one state in
        which closing the connection would throw away work the client is owed."""
        cycle = self.cycle
        return (
            cycle is not None
            and not cycle.response_complete
            and self.conn.their_state not in (h11.IDLE, h11.SEND_BODY)
            and not self.transport.is_closing()
        )

    def _receiving(self) -> bool:
        """Whether a request is on its way: its body is arriving, or the bytes of a next
        head are buffered, or nothing has arrived yet on a newly accepted connection."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return True
        if state is not h11.IDLE:
            return False
        return self.cycle is None or bool(self.conn.trailing_data[0])

    # -- the request deadline -------------------------------------------------------------
    def _update_deadline(self) -> None:
        if self.transport.is_closing() or not self._receiving():
            self._cancel_deadline()
        elif self._deadline is None:  # armed once per request: dribbling does not extend it
            self._deadline = self.loop.call_later(
                self._limits.request_timeout, self._request_timed_out
            )

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        current = None if self.conn.their_state is h11.IDLE else self.cycle
        started = current is not None or bool(self.conn.trailing_data[0])
        if started and (current is None or not current.response_started):
            self.transport.write(_REQUEST_TIMEOUT)
        self.drop()

    # -- closing --------------------------------------------------------------------------
    def drop(self) -> None:
        """Close now: evicted, or the request took too long. Never used on a connection
        that is being answered."""
        self._connections.discard(self)
        self._cancel_deadline()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The application's next send is dropped and its receive() sees a disconnect,
            # as uvicorn does when the client hangs up.
            cycle.disconnected = True
            cycle.message_event.set()
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # close() would wait for a client that may never read
        else:
            self.transport.close()

    def check_send_progress(self, now: float, timeout: float) -> None:
        """Abort the connection when its unsent output has not shrunk for ``timeout``."""
        unsent = self.transport.get_write_buffer_size()
        if not unsent:
            self._stalled_since = None
        elif self._stalled_since is None or unsent < self._unsent:
            self._stalled_since = now
        elif now - self._stalled_since >= timeout:
            self._connections.discard(self)
            self.transport.abort()
        self._unsent = unsent


class HardenedProtocolFactory:
    """What ``uvicorn.Config(http=...)`` takes: builds the protocol of each connection of
    one server. Each server needs its own factory: it holds that server's connections."""

    def __init__(self, limits: ServerLimits, *, quiet: bool = False) -> None:
        self.limits = limits
        self.quiet = quiet
        self.connections = _Connections(limits)

    def __call__(self, **kwargs: Any) -> HardenedH11Protocol:
        return HardenedH11Protocol(connections=self.connections, quiet=self.quiet, **kwargs)


def uvicorn_settings(limits: ServerLimits, *, quiet: bool = False) -> MutableMapping[str, Any]:
    """``uvicorn.Config`` keywords for a server with ``limits``. ``quiet``: no access log,
    and client misbehaviour logged at debug (for a server inside someone else's service).

    Serve from a socket made by :func:`listening_socket`, and call :func:`deepen` on it once
    the server listens: the ``backlog`` given here is asyncio's accept batch (see there).
    """
    return {
        "http": HardenedProtocolFactory(limits, quiet=quiet),
        "ws": "none",
        "timeout_keep_alive": limits.idle_timeout,
        "backlog": max(1, limits.max_connections // 8),
    }


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A socket listening on ``host:port`` with a queue of :data:`LISTEN_BACKLOG`, shared
    with other processes that bind it with ``reuse_port`` too (``SO_REUSEPORT``). Raises
    OSError with the bare reason (``socket.create_server`` appends the address to it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server(
            (host, port), family=family, backlog=LISTEN_BACKLOG, reuse_port=reuse_port
        )
    except OSError as exc:
        if not exc.errno:
            raise
        raise OSError(exc.errno, os.strerror(exc.errno)) from None


def deepen(sock: socket.socket) -> None:
    """Give ``sock`` back its deep kernel queue after asyncio started serving it.

    asyncio takes its listen backlog as the number of connections to accept in one go,
    before any of them is read, and passes it to ``listen()`` too. The batch must be small:
    a batch of thousands would take thousands of descriptors at once, and push out as
    "oldest not answered" connections whose request has arrived but not been read yet. The
    kernel queue must be deep: connections waiting there cost the process no descriptor,
    and a shallow queue drops a scraper's handshake behind a flood, so it retries seconds
    later. Calling ``listen()`` again on a listening socket only changes its queue length.
    """
    sock.listen(LISTEN_BACKLOG)
