"""The demo's settings, from ``create_app()`` arguments or from the environment.

``create_app_from_env()`` (``uvicorn --factory``, multi-worker mode) reads the
``INFERWATCH_DEMO_*`` variables below. Backend URLs may carry passwords: they are only ever
shown through :func:`inferwatch.exporters.redact.redact_url`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from inferwatch.demo.database import DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT
from inferwatch.demo.jobs import MAX_JOBS
from inferwatch.demo.models import DEFAULT_MAX_MODELS, DEFAULT_PRELOAD, check_preload
from inferwatch.demo.scheduler import (
    DEFAULT_BATCH_WINDOW,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE,
)

ENV_PREFIX = "INFERWATCH_DEMO_"


@dataclass(frozen=True)
class Settings:
    time_scale: float = 1.0
    seed: int | None = None
    request_timeout: float = 30.0
    state_dir: Path | None = None  # faults (and the SQLite file) shared by workers
    max_jobs: int = MAX_JOBS
    max_concurrent_jobs: int = 4
    redis_url: str | None = None
    postgres_url: str | None = None
    max_models: int = DEFAULT_MAX_MODELS
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_window: float = DEFAULT_BATCH_WINDOW  # model seconds, scaled by time_scale
    max_queue: int = DEFAULT_MAX_QUEUE
    db_pool_size: int = DEFAULT_POOL_SIZE
    db_pool_timeout: float = DEFAULT_POOL_TIMEOUT  # wall-clock seconds
    upstream_url: str | None = None  # the model service jobs call; None: start one

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError(f"time_scale must be a finite number > 0, got {self.time_scale!r}")
        for name in ("max_models", "max_batch_size", "max_queue", "db_pool_size", "max_jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not self.db_pool_timeout > 0 or not self.batch_window >= 0:
            raise ValueError("db_pool_timeout must be > 0 and batch_window >= 0")
        object.__setattr__(self, "preload", check_preload(self.preload, self.max_models))
        if self.state_dir is not None:
            object.__setattr__(self, "state_dir", Path(self.state_dir))


def parse_names(text: str) -> tuple[str, ...]:
    """``"a,b"`` -> ("a", "b"); ``"none"`` -> () (preload nothing)."""
    if text.strip().lower() == "none":
        return ()
    return tuple(n.strip() for n in text.split(",") if n.strip())


# What each variable is parsed with; INFERWATCH_DEMO_<FIELD NAME IN CAPITALS>.
PARSERS: dict[str, Callable[[str], Any]] = {
    "time_scale": float,
    "seed": int,
    "request_timeout": float,
    "state_dir": Path,
    "redis_url": str,
    "postgres_url": str,
    "max_models": int,
    "preload": parse_names,
    "max_batch_size": int,
    "batch_window": float,
    "max_queue": int,
    "db_pool_size": int,
    "db_pool_timeout": float,
    "upstream_url": str,
}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; unset or empty variables keep the defaults."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for field in fields(Settings):
        parse = PARSERS.get(field.name)
        raw = environ.get(env_name(field.name), "")
        if parse is None or raw == "":
            continue
        try:
            values[field.name] = parse(raw)
        except ValueError:
            shown = "<hidden>" if field.name.endswith("_url") else repr(raw)
            raise ValueError(f"{env_name(field.name)}={shown} is not valid") from None
    return Settings(**values)


def to_env(settings: Settings) -> dict[str, str]:
    """The environment that makes :func:`from_env` rebuild ``settings`` (for workers)."""
    env: dict[str, str] = {}
    for field in fields(Settings):
        if field.name not in PARSERS:
            continue
        value = getattr(settings, field.name)
        if value is None:
            env[env_name(field.name)] = ""
        elif field.name == "preload":
            env[env_name(field.name)] = ",".join(value) or "none"
        else:
            env[env_name(field.name)] = repr(value) if isinstance(value, float) else str(value)
    return env
