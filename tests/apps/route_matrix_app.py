"""A service with many route templates, each answering every method with the status asked for:
the shape whose series count the cardinality budget (docs/series-budget.md) is written for.

``build(routes)`` gives an uninstrumented FastAPI app with ``routes`` templates
``/v1/resource{i}/{item_id}``, each serving ``METHODS``; a request answers with the status in
its ``status`` query parameter (a plain response, no exception) and, with
``background_ms=N``, leaves a background task that sleeps N milliseconds after the response.
``matrix(routes)`` lists one request per (method, route, status) of ``METHODS`` x ``STATUSES``:
what a test or benchmark sends before it counts series.
"""

from __future__ import annotations

import asyncio

from fastapi import BackgroundTasks, FastAPI, Response

METHODS = ("GET", "POST", "PUT", "DELETE")
STATUSES = (200, 201, 404, 422, 500)
BODY = b'{"ok":true}'


def template(i: int) -> str:
    """The route template of route ``i``, as ``http_route`` shows it."""
    return f"/v1/resource{i}/{{item_id}}"


def path(i: int, item: str = "42") -> str:
    return f"/v1/resource{i}/{item}"


def matrix(routes: int) -> list[tuple[str, str, int]]:
    """(method, path with query, status) for every method, route and status, in that order."""
    return [
        (method, f"{path(i)}?status={status}", status)
        for i in range(routes)
        for method in METHODS
        for status in STATUSES
    ]


async def _sleep_ms(milliseconds: int) -> None:
    await asyncio.sleep(milliseconds / 1000)


def build(routes: int = 20) -> FastAPI:
    app = FastAPI()

    async def handler(
        item_id: str, tasks: BackgroundTasks, status: int = 200, background_ms: int = 0
    ) -> Response:
        if background_ms > 0:
            tasks.add_task(_sleep_ms, background_ms)
        return Response(BODY, status_code=status, media_type="application/json")

    for i in range(routes):
        app.add_api_route(template(i), handler, methods=list(METHODS), name=f"resource{i}")
    return app
