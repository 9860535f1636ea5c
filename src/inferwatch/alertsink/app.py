"""The alert-sink web application: ``create_app(SinkSettings(...))``.

Endpoints: ``POST /alerts`` and ``POST /alerts/{receiver}`` (Alertmanager's webhook; the path
names the receiver configured to post there), ``GET /notifications`` (filter by receiver,
alertname, status), ``DELETE /notifications``, ``GET /healthz`` and ``GET /metrics``.

With ``SinkSettings.auth`` every endpoint but ``/healthz`` needs its credentials: reading,
clearing and feeding the record alike (Alertmanager sends them with ``http_config``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client.registry import CollectorRegistry
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from inferwatch.alertsink.forward import Forwarder
from inferwatch.alertsink.metrics import DEFAULT_MAX_RECEIVERS, SinkMetrics
from inferwatch.alertsink.models import WebhookPayload
from inferwatch.alertsink.store import DEFAULT_MAX_RECORDS, NotificationStore
from inferwatch.exposition.auth import MetricsAuth
from inferwatch.http import instrument_app

log = logging.getLogger("inferwatch.alertsink")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # Alertmanager's payloads are a few KiB per alert


@dataclass(frozen=True)
class SinkSettings:
    store_path: Path | None = None
    max_records: int = DEFAULT_MAX_RECORDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    forward_urls: tuple[str, ...] = field(default_factory=tuple)
    forward_timeout: float = 5.0
    # Receiver names the metrics keep as label values; later ones are counted as "_OTHER".
    max_receivers: int = DEFAULT_MAX_RECEIVERS
    auth: MetricsAuth | None = None  # credentials every endpoint but /healthz requires


class Rejected(Exception):
    def __init__(self, status: int, reason: str, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes.

    Content-Length is checked before reading anything; a chunked body (no length) is
    counted while it streams in, so an endless body never sits in memory whole.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Rejected(400, "malformed", "invalid Content-Length")
        if int(declared) > limit:
            raise Rejected(413, "too_large", f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejected(413, "too_large", f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Hung up, or cut off by the server's request deadline: nobody reads the answer,
        # but the request is counted, not logged as a server error.
        raise Rejected(400, "malformed", "the request body did not arrive whole") from None
    return b"".join(chunks)


def parse_payload(body: bytes) -> WebhookPayload:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise Rejected(400, "malformed", f"body is not JSON: {exc}") from None
    except RecursionError:  # e.g. [[[[...]]]] a few thousand deep
        raise Rejected(400, "malformed", "body is JSON nested too deeply") from None
    try:
        return WebhookPayload.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise Rejected(422, "invalid", errors) from None


def create_app(
    settings: SinkSettings | None = None, *, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build the sink; ``registry=None`` gives it a registry of its own."""
    settings = settings or SinkSettings()
    if settings.max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be at least 1, got {settings.max_body_bytes}")
    registry = CollectorRegistry() if registry is None else registry
    metrics = SinkMetrics.create(registry, max_receivers=settings.max_receivers)
    auth = settings.auth
    store = NotificationStore(settings.max_records, settings.store_path)
    forwarder = Forwarder(
        settings.forward_urls,
        timeout=settings.forward_timeout,
        on_result=lambda result: metrics.forwards.labels(result).inc(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        forwarder.close()
        store.close()

    def authorized(request: Request) -> None:
        if auth is not None and not auth.allows(request.headers.get("authorization")):
            raise HTTPException(401, "Unauthorized", headers={"WWW-Authenticate": auth.challenge})

    guarded = [Depends(authorized)]
    app = FastAPI(title="inferwatch alert sink", lifespan=lifespan)
    app.state.store = store
    app.state.forwarder = forwarder

    async def receive(request: Request, endpoint: str | None) -> JSONResponse:
        try:
            body = await read_limited(request, settings.max_body_bytes)
            payload = parse_payload(body)
        except Rejected as exc:
            metrics.rejected.labels(exc.reason).inc()
            # After a 413 the rest of the body is unread: the connection cannot be reused.
            headers = {"Connection": "close"} if exc.status == 413 else None
            return JSONResponse({"detail": exc.detail}, exc.status, headers=headers)
        added, duplicates = store.add(payload, endpoint)
        receiver = metrics.receiver(payload.receiver)
        metrics.notifications.labels(receiver, payload.status).inc()
        for record in added:
            metrics.alerts.labels(receiver, record["status"]).inc()
        if duplicates:
            metrics.duplicates.inc(duplicates)
        forwarder.submit(body)
        return JSONResponse({"recorded": len(added), "duplicates": duplicates})

    @app.post("/alerts", dependencies=guarded)
    async def alerts(request: Request) -> JSONResponse:
        return await receive(request, None)

    @app.post("/alerts/{receiver}", dependencies=guarded)
    async def alerts_for(receiver: str, request: Request) -> JSONResponse:
        return await receive(request, receiver)

    @app.get("/notifications", dependencies=guarded)
    async def notifications(
        receiver: str | None = None, alertname: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        return store.query(receiver=receiver, alertname=alertname, status=status)

    @app.delete("/notifications", dependencies=guarded)
    async def clear() -> dict[str, int]:
        return {"cleared": store.clear()}

    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "records": len(store)}

    instrument_app(app, registry=registry, metrics_auth=auth)
    return app
