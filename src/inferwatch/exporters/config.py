"""Exporter configuration: defaults < config file < command-line flags.

The config file is TOML (``.toml``), YAML (``.yaml``/``.yml``, needs PyYAML) or JSON
(``.json``), a flat table of the keys in :data:`KEYS`::

    port = 9841
    collectors = ["host", "gpu"]
    collector_timeout = 3.0
    max_connections = 64
    redis_url = "redis://:secret@cache:6379/0"
    pids = [1234]

Unknown keys and wrong types are errors naming the key. Backend URLs may carry passwords:
they are kept out of ``repr`` and only ever shown through :func:`redact_url`.

Collectors: each is a module named in :data:`COLLECTOR_MODULES` that exposes
``build(config) -> Collector``. Adding one (say ``redis``) is a one-file job: write
``inferwatch/exporters/redis.py`` with a ``build`` that reads ``config.redis_url``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from inferwatch.config import check_backend_url, check_port
from inferwatch.exporters.collector import (
    DEFAULT_CACHE_TTL,
    DEFAULT_SCRAPE_TIMEOUT_OFFSET,
    DEFAULT_TIMEOUT,
)
from inferwatch.exporters.redact import redact_text, redact_url, url_secrets
from inferwatch.exposition.auth import read_secret_file
from inferwatch.exposition.limits import ServerLimits

_LIMITS = ServerLimits()

DEFAULT_PORT = 9841
COLLECTOR_MODULES = {
    "host": "inferwatch.exporters.host",
    "gpu": "inferwatch.exporters.gpu",
    "redis": "inferwatch.exporters.redis",
    "postgres": "inferwatch.exporters.postgres",
}
DEFAULT_COLLECTORS = ("host", "gpu")
# Collectors switched on by giving their backend's URL.
URL_COLLECTORS = {"redis": "redis_url", "postgres": "postgres_url"}


class ConfigError(ValueError):
    """A bad setting; the message names the key and where it came from."""


@dataclass(frozen=True)
class ExporterConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    collectors: tuple[str, ...] | None = None  # None: the defaults plus URL-enabled ones
    collector_timeout: float = DEFAULT_TIMEOUT
    # Taken off the scraper's X-Prometheus-Scrape-Timeout-Seconds for the collectors' deadline.
    scrape_timeout_offset: float = DEFAULT_SCRAPE_TIMEOUT_OFFSET
    cache_ttl: float = DEFAULT_CACHE_TTL
    redis_url: str | None = field(default=None, repr=False)
    postgres_url: str | None = field(default=None, repr=False)
    pids: tuple[int, ...] = ()
    memory_growth_window: float = 600.0
    # What a client may cost the server (see ServerLimits).
    request_timeout: float = _LIMITS.request_timeout
    idle_timeout: float = _LIMITS.idle_timeout
    max_connections: int = _LIMITS.max_connections

    @property
    def limits(self) -> ServerLimits:
        return ServerLimits(
            request_timeout=self.request_timeout,
            idle_timeout=self.idle_timeout,
            max_connections=self.max_connections,
        )

    @property
    def enabled(self) -> tuple[str, ...]:
        if self.collectors is not None:
            return self.collectors
        urls = tuple(c for c, key in URL_COLLECTORS.items() if getattr(self, key))
        return (*DEFAULT_COLLECTORS, *urls)

    @property
    def secrets(self) -> list[str]:
        """Credential strings in the configured URLs, scrubbed from any logged error text."""
        return [s for key in URL_COLLECTORS.values() for s in url_secrets(getattr(self, key) or "")]

    def describe(self) -> dict[str, str]:
        """Settings safe to display: URLs redacted."""
        shown = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in URL_COLLECTORS.values():
                shown[f.name] = redact_url(value) if value else ""
            else:
                shown[f.name] = (
                    ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                )
        shown["collectors"] = ",".join(self.enabled)
        return shown


def _number(key: str, value: Any, *, minimum: float, inclusive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key!r} must be a number of seconds, got {value!r}")
    if value < minimum or (not inclusive and value == minimum):
        op = ">=" if inclusive else ">"
        raise ConfigError(f"{key!r} must be {op} {minimum:g}, got {value!r}")
    return float(value)


def _port(key: str, value: Any) -> int:
    try:
        return check_port(value, repr(key))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _host(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _collectors(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key!r} must be a list of collector names, got {value!r}")
    if not value:  # an exporter that serves nothing would look up and report nothing
        raise ConfigError(
            f"{key!r} needs at least one collector (known: {', '.join(COLLECTOR_MODULES)})"
        )
    unknown = [v for v in value if v not in COLLECTOR_MODULES]
    if unknown:
        raise ConfigError(
            f"{key!r}: unknown collector(s) {', '.join(unknown)} "
            f"(known: {', '.join(COLLECTOR_MODULES)})"
        )
    return tuple(dict.fromkeys(value))


def _url(key: str, value: Any) -> str:
    # Errors show the URL only redacted: a typo must not print the password. An unencoded
    # `@` in a password comes back encoded: libpq would connect to (and log) the rest as a host.
    try:
        return check_backend_url(key.removesuffix("_url"), value, repr(key))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key!r} must be a positive integer, got {value!r}")
    return value


def _pids(key: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ConfigError(f"{key!r} must be a list of positive process ids, got {value!r}")
    return tuple(value)


KEYS: dict[str, Callable[[str, Any], Any]] = {
    "host": _host,
    "port": _port,
    "collectors": _collectors,
    "collector_timeout": lambda k, v: _number(k, v, minimum=0, inclusive=False),
    "scrape_timeout_offset": lambda k, v: _number(k, v, minimum=0, inclusive=True),
    "cache_ttl": lambda k, v: _number(k, v, minimum=0, inclusive=True),
    "redis_url": _url,
    "postgres_url": _url,
    "pids": _pids,
    "memory_growth_window": lambda k, v: _number(k, v, minimum=0, inclusive=False),
    "request_timeout": lambda k, v: _number(k, v, minimum=0, inclusive=False),
    "idle_timeout": lambda k, v: _number(k, v, minimum=0, inclusive=False),
    "max_connections": _count,
}


# A URL with a password belongs in a file (a mounted secret), not on a command line that
# every user of the machine can read in the process list.
FILE_KEYS = {"redis_url_file": "redis_url", "postgres_url_file": "postgres_url"}


def _url_from_file(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key!r} must be a file path")
    try:
        return read_secret_file(value, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def validate(settings: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check ``settings``; every error names the key and ``source``."""
    clean = {}
    for key, value in settings.items():
        if key in FILE_KEYS:
            base = FILE_KEYS[key]
            try:
                clean[base] = _url(base, _url_from_file(key, value))
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
            continue
        check = KEYS.get(key)
        if check is None:
            known = ", ".join([*KEYS, *FILE_KEYS])
            raise ConfigError(f"{source}: unknown key {key!r} (known: {known})")
        try:
            clean[key] = check(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return clean


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ConfigError(f"{path}: TOML needs Python 3.11+ or tomli") from None
        return tomllib.loads(text)
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: YAML config needs PyYAML (pip install pyyaml)") from None
        return yaml.safe_load(text) or {}
    if suffix == ".json":
        return json.loads(text)
    raise ConfigError(f"{path}: config file must end in .toml, .yaml, .yml or .json")


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = _parse(path, text)
    except ConfigError:
        raise
    except Exception as exc:  # tomllib/yaml/json syntax errors: report, don't trace
        # YAML errors quote the offending line, which may hold a URL with a password.
        message = redact_text(str(exc))
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.')}: {message}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings at the top level")
    return validate(data, str(path))


def build_config(
    file: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> ExporterConfig:
    """Defaults, then ``file``, then ``overrides`` (flags; None values mean "not given")."""
    settings = load_file(file) if file is not None else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    settings.update(validate(given, "command line"))
    config = replace(ExporterConfig(), **settings)
    for name, key in URL_COLLECTORS.items():
        if config.collectors is not None and name in config.collectors and not getattr(config, key):
            raise ConfigError(f"collector {name!r} is enabled but {key!r} is not set")
    return config
