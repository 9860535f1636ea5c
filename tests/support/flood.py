"""A flood of idle connections, as a hostile client holds them: for the server-hardening
tests and ``benchmarks/idle_connections.py``. Linux only (``TCP_INFO``, ``SIOCOUTQ``)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import resource
import socket
import struct
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .polling import wait_until
from .server import LOOPBACK

NOFILE = 1024  # a service's descriptor limit in these tests, a common default
HALF_HEAD = b"GET /metrics HTTP/1.1\r\n"  # half a request head, never finished
WINDOW = 32  # connection attempts under way at once
PATIENCE = 1.0  # seconds an attempt may take before it is given up and made afresh
TCP_SYN_SENT, TCP_ESTABLISHED = 2, 1  # tcpi_state, the first byte of Linux's struct tcp_info


def limited(command: list[str], nofile: int = NOFILE) -> list[str]:
    """``command`` run with at most ``nofile`` open descriptors."""
    return ["bash", "-c", f'ulimit -n {nofile} && exec "$@"', "limited", *command]


def allow_descriptors(count: int) -> None:
    """Raise this process's soft descriptor limit to at least ``count``; RuntimeError when
    the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            raise RuntimeError(f"holding {count} sockets needs a descriptor limit of {count}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


@dataclass
class Flood:
    wanted: int
    held: int = 0  # connections the server was offered (see offered())
    replaced: int = 0  # attempts given up on after PATIENCE seconds, and made afresh

    def __str__(self) -> str:
        return (
            f"while {self.held} of {self.wanted} half-sent connections were held "
            f"({self.replaced} attempts replaced)"
        )


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def offered(sock: socket.socket) -> bool:
    """Whether the server has this half-sent connection: it closed it, or its kernel has
    acknowledged the half head (nothing left unacknowledged in SIOCOUTQ)."""
    state = tcp_state(sock)
    if state != TCP_ESTABLISHED:
        return state != TCP_SYN_SENT
    unacknowledged = fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0" * 4)
    return int(struct.unpack("i", unacknowledged)[0]) == 0


@contextlib.contextmanager
def half_sent(port: int, count: int, *, settle: float = 30.0) -> Iterator[Flood]:
    """Hold ``count`` connections to ``port`` for the ``with`` block, each having sent half a
    request head and nothing more.

    A patient attacker: :data:`WINDOW` attempts at a time, each replaced by a fresh one when
    the server has not been offered it within :data:`PATIENCE` (its kernel dropped the
    handshake for want of queue room), for up to ``settle`` seconds. A server that keeps
    taking connections is offered all of them, however short its listen queue.
    """
    allow_descriptors(count + 512)
    held: list[socket.socket] = []
    trying: dict[socket.socket, float] = {}  # attempt -> when it was made
    sent: set[socket.socket] = set()
    flood = Flood(count)

    def step() -> bool:
        now = time.monotonic()
        for sock, started in list(trying.items()):
            if sock not in sent and tcp_state(sock) == TCP_ESTABLISHED:
                with contextlib.suppress(OSError):  # closed by the server already
                    sock.send(HALF_HEAD)
                sent.add(sock)
            if sock in sent and offered(sock):
                del trying[sock]
                held.append(sock)
            elif now - started > PATIENCE:
                del trying[sock]
                sock.close()
                flood.replaced += 1
        while len(trying) < WINDOW and len(held) + len(trying) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            if sock.connect_ex((LOOPBACK, port)) in (0, errno.EINPROGRESS):
                trying[sock] = now
            else:
                sock.close()
        flood.held = len(held)
        return len(held) == count

    try:
        # A server that stops taking connections is never offered them all: the caller's
        # checks tell what that did to it.
        with contextlib.suppress(AssertionError):
            wait_until(step, settle, interval=0.002)
        yield flood
    finally:
        for sock in [*held, *trying]:
            sock.close()
