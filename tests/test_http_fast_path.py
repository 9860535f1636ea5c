"""The middleware finds a success's children again by (route object, method, status); that
shortcut must give up as soon as the route templates it stands for change."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

import inferwatch

DURATION = "http_server_request_duration_seconds_count"


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("item")


def counts(registry: CollectorRegistry, *routes: str) -> dict[str, float | None]:
    labels = {"http_request_method": "GET", "http_response_status_code": "200"}
    return {
        route: registry.get_sample_value(
            DURATION, {**labels, "http_route": route, "error_type": ""}
        )
        for route in routes
    }


def test_a_route_mounted_again_later_is_counted_under_each_of_its_templates() -> None:
    registry = CollectorRegistry()
    shared = Route("/items/{item_id}", item)
    app = Starlette(routes=[shared])
    inferwatch.instrument_app(app, registry=registry, metrics_path=None)
    with TestClient(app) as client:
        for _ in range(2):  # the second one takes the shortcut
            assert client.get("/items/1").status_code == 200
        # The same route object, now also under a mount, beside a route never seen before:
        # the first request to that one walks the route tree again.
        app.router.routes.append(Mount("/v2", routes=[shared, Route("/other", item)]))
        assert client.get("/v2/other").status_code == 200
        assert client.get("/v2/items/1").status_code == 200
        assert client.get("/items/2").status_code == 200
    assert counts(registry, "/items/{item_id}", "/v2/items/{item_id}", "/v2/other") == {
        "/items/{item_id}": 3,
        "/v2/items/{item_id}": 1,
        "/v2/other": 1,
    }
