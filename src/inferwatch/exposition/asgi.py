"""/metrics as an ASGI app: mount it on the service, or let ``instrument_app`` do it."""

from __future__ import annotations

import asyncio
import functools
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
        result = await loop.run_in_executor(_RENDER_POOL, self.renderer(headers, query))
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
