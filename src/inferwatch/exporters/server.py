"""The standalone exporter: enabled collectors behind a :class:`CollectorRunner`, served on
``/metrics`` by :mod:`inferwatch.exposition` (same formats, gzip and auth as the in-app
endpoint), with a landing page on ``/`` listing the collectors.
"""

from __future__ import annotations

import html
import importlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.registry import CollectorRegistry

from inferwatch.exporters.collector import Collector, CollectorRunner
from inferwatch.exporters.config import (
    COLLECTOR_MODULES,
    URL_COLLECTORS,
    ConfigError,
    ExporterConfig,
)
from inferwatch.exporters.redact import redact_url
from inferwatch.exposition.auth import MetricsAuth
from inferwatch.exposition.render import Scrape, unauthorized
from inferwatch.exposition.server import MetricsHandler, MetricsServer

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


class _ExporterServer(MetricsServer):
    landing: bytes


class _ExporterHandler(MetricsHandler):
    server: _ExporterServer

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/":
            super().do_GET()
            return
        auth = self.server.auth
        if auth is not None and not auth.allows(self.headers.get("Authorization")):
            self._send(unauthorized(auth))
            return
        self._send(Scrape(200, [("Content-Type", "text/html; charset=utf-8")], self.server.landing))


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
        self.server.shutdown()
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
    # MetricsServer directly rather than start_metrics_server: the latter swaps in the
    # multiprocess registry when PROMETHEUS_MULTIPROC_DIR is set, which is the service's
    # business, not the exporter's.
    try:
        server = _ExporterServer((config.host, config.port), registry, auth)
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot serve on {config.host}:{config.port}: {exc.strerror}"
        ) from None
    server.RequestHandlerClass = _ExporterHandler
    server.landing = landing_page(config, runner.names)
    threading.Thread(
        # a short poll interval makes close() prompt; the idle cost is negligible
        target=lambda: server.serve_forever(poll_interval=0.1),
        name="inferwatch-exporter",
        daemon=True,
    ).start()
    return Exporter(server, runner, config)
