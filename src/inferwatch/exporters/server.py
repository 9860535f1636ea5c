"""The standalone exporter: enabled collectors behind a :class:`CollectorRunner`, served on
``/metrics`` by :mod:`inferwatch.exposition` (same formats, gzip and auth as the in-app
endpoint, the same hardened server as a separate metrics port), with a landing page on ``/``
listing the collectors. Each scrape's collectors finish within the scraper's own timeout
(``X-Prometheus-Scrape-Timeout-Seconds`` less ``scrape_timeout_offset``) or the configured
``collector_timeout``, whichever is shorter.
"""

from __future__ import annotations

import html
import importlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.registry import CollectorRegistry

from inferwatch.exporters.collector import (
    SCRAPE_TIMEOUT_HEADER,
    Collector,
    CollectorRunner,
    scrape_deadline,
    timeout_from_header,
)
from inferwatch.exporters.config import (
    COLLECTOR_MODULES,
    URL_COLLECTORS,
    ConfigError,
    ExporterConfig,
)
from inferwatch.exporters.redact import redact_url
from inferwatch.exposition.asgi import MetricsApp, respond
from inferwatch.exposition.auth import MetricsAuth
from inferwatch.exposition.render import Scrape, unauthorized
from inferwatch.exposition.server import NOT_FOUND, MetricsServer

log = logging.getLogger(__name__)


def build_collectors(config: ExporterConfig) -> list[Collector]:
    """One collector per enabled name, each built by its module's ``build(config)``."""
    collectors: list[Collector] = []
    for name in config.enabled:
        module_name = COLLECTOR_MODULES[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            if config.collectors is not None:  # asked for by name: a hard error
                raise ConfigError(f"collector {name!r} is not available in this version") from None
            url = getattr(config, URL_COLLECTORS[name])
            log.warning(
                "collector %s is not available in this version; ignoring %s",
                name,
                redact_url(url),
            )
            continue
        collectors.append(module.build(config))
    return collectors


def build_registry(
    config: ExporterConfig, collectors: Sequence[Collector] | None = None
) -> tuple[CollectorRegistry, CollectorRunner]:
    runner = CollectorRunner(
        build_collectors(config) if collectors is None else collectors,
        timeout=config.collector_timeout,
        cache_ttl=config.cache_ttl,
        secrets=config.secrets,
    )
    # auto_describe off: registering must not run the collectors (and hit the backends).
    registry = CollectorRegistry(auto_describe=False)
    registry.register(runner)
    return registry, runner


class _ExporterMetrics(MetricsApp):
    """/metrics of the exporter: the collectors finish within the scraper's own timeout."""

    def __init__(self, registry: CollectorRegistry, config: ExporterConfig, **kwargs: Any) -> None:
        super().__init__(registry, **kwargs)
        # The exporter's registry as it is: the multiprocess directory that
        # PROMETHEUS_MULTIPROC_DIR may name is the service's business, not the exporter's.
        self.registry = registry
        self.offset = config.scrape_timeout_offset

    def renderer(self, headers: Mapping[str, str], query: str) -> Callable[[], Scrape]:
        render = super().renderer(headers, query)
        budget = timeout_from_header(headers.get(SCRAPE_TIMEOUT_HEADER.lower()), offset=self.offset)
        # Counted from now, on the event loop: a scrape queued behind another on the render
        # thread must not get its whole budget again once its turn comes.
        deadline = None if budget is None else time.monotonic() + budget

        def bounded() -> Scrape:
            with scrape_deadline(deadline):
                return render()

        return bounded


class ExporterApp:
    """The exporter's ASGI app: the landing page on ``/``, the metrics on ``/metrics``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        config: ExporterConfig,
        landing: bytes,
        auth: MetricsAuth | None,
    ) -> None:
        self.metrics = _ExporterMetrics(registry, config, auth=auth)
        self.auth = auth
        self.landing = Scrape(200, [("Content-Type", "text/html; charset=utf-8")], landing)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, head = scope["path"], scope["method"] == "HEAD"
        if path == "/metrics":
            await self.metrics(scope, receive, send)
        elif path != "/":
            await respond(send, NOT_FOUND, head=head)
        elif scope["method"] not in ("GET", "HEAD"):
            await respond(send, Scrape(405, [("Allow", "GET, HEAD")], b""))
        elif self.auth is not None and not self.auth.allows(_authorization(scope)):
            await respond(send, unauthorized(self.auth), head=head)
        else:
            await respond(send, self.landing, head=head)


def _authorization(scope: dict[str, Any]) -> str | None:
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            return str(value.decode("latin-1"))
    return None


def landing_page(config: ExporterConfig, names: Sequence[str]) -> bytes:
    rows = "".join(f"<li>{html.escape(n)}</li>" for n in names)
    settings = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in config.describe().items()
        if v
    )
    return (
        "<!doctype html><html><head><title>inferwatch exporter</title></head><body>"
        "<h1>inferwatch exporter</h1><p><a href='/metrics'>Metrics</a></p>"
        f"<h2>Collectors</h2><ul>{rows}</ul><h2>Settings</h2><table>{settings}</table>"
        "</body></html>\n"
    ).encode()


@dataclass
class Exporter:
    server: MetricsServer
    runner: CollectorRunner
    config: ExporterConfig

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        host = self.server.server_address[0]
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self.server.server_close()
        for slot in self.runner.slots:
            close = getattr(slot.collector, "close", None)
            if close is not None and slot.running is None:  # never under a running collect
                close()


def start_exporter(
    config: ExporterConfig,
    *,
    auth: MetricsAuth | None = None,
    collectors: Sequence[Collector] | None = None,
) -> Exporter:
    """Serve the exporter in a daemon thread; ``collectors`` replaces the configured ones."""
    registry, runner = build_registry(config, collectors)
    app = ExporterApp(registry, config, landing_page(config, runner.names), auth)
    server = MetricsServer(
        app,
        config.host,
        config.port,
        limits=config.limits,
        what="the exporter",
        thread_name="inferwatch-exporter",
    )
    return Exporter(server, runner, config)
