"""/metrics on a port of its own, for services that must not expose it on the public port."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client.registry import REGISTRY, Collector

from inferwatch.exposition.auth import MetricsAuth
from inferwatch.exposition.render import Scrape, render, unauthorized
from inferwatch.exposition.source import scrape_registry


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: Collector, auth: MetricsAuth | None
    ) -> None:
        self.registry = registry
        self.auth = auth
        super().__init__(address, MetricsHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A scraper that hangs up mid-request is routine, not a traceback in the service log.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def port(self) -> int:
        return self.server_address[1]


class MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive scraper's delayed ACK
    # holds the body back ~40 ms on every scrape.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path not in ("/metrics", "/"):
            self._send(Scrape(404, [("Content-Type", "text/plain")], b"Not Found\n"))
            return
        auth = self.server.auth
        if auth is not None and not auth.allows(self.headers.get("Authorization")):
            self._send(unauthorized(auth))
            return
        self._send(
            render(
                self.server.registry,
                accept=self.headers.get("Accept", ""),
                accept_encoding=self.headers.get("Accept-Encoding", ""),
                query=url.query,
            )
        )

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, result: Scrape) -> None:
        self.send_response(result.status)
        for name, value in result.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(result.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(result.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # scrapes every few seconds would flood the service's log


def start_metrics_server(
    port: int,
    *,
    host: str = "0.0.0.0",
    registry: Collector = REGISTRY,
    auth: MetricsAuth | None = None,
) -> MetricsServer:
    """Serve /metrics on ``host:port`` in a daemon thread. ``host="127.0.0.1"`` keeps it
    reachable from this machine only (a sidecar or node agent scrapes it). Port 0 picks a
    free port: read it back from ``.port``."""
    try:
        server = MetricsServer((host, port), scrape_registry(registry), auth)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="inferwatch-metrics", daemon=True).start()
    return server
