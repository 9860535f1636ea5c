"""/metrics as an ASGI app: mount it on the service, or let ``instrument_app`` do it."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client.registry import REGISTRY, Collector

from inferwatch.exposition.auth import MetricsAuth
from inferwatch.exposition.render import Scrape, render, unauthorized
from inferwatch.exposition.source import scrape_registry

# Rendering walks every metric and is CPU-bound; doing it on the event loop would stall the
# inference requests that loop is serving. One thread also keeps concurrent scrapes from
# piling up CPU work.
_RENDER_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inferwatch-scrape")
GC_PAUSE_LIMIT = 1.0  # seconds a render may keep the garbage collector paused


class GcPause:
    """The cyclic garbage collector, paused while a render runs.

    A render creates a few short-lived containers per series. With the collector running,
    a large exposition triggers collections halfway through, which promote the containers
    still in use to older generations, until a full collection runs: of the application's
    whole heap, on whichever thread allocates next (the event loop, as often as not), and
    for as long as that heap takes to traverse, however small the metrics are. Paused, the
    containers are freed by reference counting before any collection sees them: 100
    scrapes of 48,000 series caused 191 young, 17 middle and 2 full collections, and none
    paused (benchmarks/scrape_under_load.py has the effect on request latency).

    The pause ends with the render, or after ``limit`` seconds if the render takes longer
    (a collector stuck on I/O must not stop garbage collection), and is never taken when
    the application has disabled the collector itself.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._paused = False  # by us, and not resumed yet

    def run(self, render: Callable[[], Scrape]) -> Scrape:
        with self._lock:
            pause = not self._paused and gc.isenabled()
            if pause:
                gc.disable()
                self._paused = True
        if not pause:
            return render()
        watchdog = threading.Timer(self.limit, self.resume)
        watchdog.daemon = True
        watchdog.start()
        try:
            return render()
        finally:
            watchdog.cancel()
            self.resume()

    def resume(self) -> None:
        with self._lock:
            if self._paused:
                self._paused = False
                gc.enable()


_GC_PAUSE = GcPause(GC_PAUSE_LIMIT)


class MetricsApp:
    def __init__(
        self,
        registry: Collector = REGISTRY,
        *,
        auth: MetricsAuth | None = None,
        compress: bool = True,
    ) -> None:
        self.registry = scrape_registry(registry)
        self.auth = auth
        self.compress = compress

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await respond(
                send, Scrape(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b"")
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.auth is not None and not self.auth.allows(headers.get("authorization")):
            await respond(send, unauthorized(self.auth))
            return
        query = scope.get("query_string", b"").decode("latin-1")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            _RENDER_POOL, _GC_PAUSE.run, self.renderer(headers, query)
        )
        await respond(send, result, head=scope["method"] == "HEAD")

    def renderer(self, headers: Mapping[str, str], query: str) -> Callable[[], Scrape]:
        """The rendering of one scrape, built on the event loop and run on the render
        thread; ``headers`` are the request's, lower-cased. A subclass may wrap it."""
        return functools.partial(
            render,
            self.registry,
            accept=headers.get("accept", ""),
            accept_encoding=headers.get("accept-encoding", ""),
            query=query,
            compress=self.compress,
        )


async def respond(send: Any, result: Scrape, *, head: bool = False) -> None:
    """Send ``result`` as the whole response (no body for a HEAD request)."""
    headers = [(k.encode(), v.encode()) for k, v in result.headers]
    headers.append((b"content-length", str(len(result.body)).encode()))
    await send({"type": "http.response.start", "status": result.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else result.body})


def metrics_app(
    registry: Collector = REGISTRY, *, auth: MetricsAuth | None = None, compress: bool = True
) -> MetricsApp:
    """An ASGI app serving ``registry`` (every worker's values in multiprocess mode)."""
    return MetricsApp(registry, auth=auth, compress=compress)
