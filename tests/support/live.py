"""The local stack tuned for live dashboard data within a minute: 1 s scrapes, rule groups
evaluated every second (a thresholds overlay), alerts' ``for:`` scaled down, free ports.

Optionally with real Redis and PostgreSQL (``redis_url``, ``postgres_url``: the demo's cache
and database, and the exporter's server views) and extra exporters to scrape."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferwatch.stack import Ports, Stack, StackSettings

INTERVAL = "1s"
# The host's CPU and memory belong to the machine, not to a test run: other work beside the
# test fires their alerts and fails their criteria, rightly. An overlay that switches them
# off lets a test judge only what it controls.
HOST_OFF = "signals:\n  cpu_usage: {warning: null}\n  memory_usage: {warning: null}\n"


def host_off_overlay(directory: Path) -> Path:
    """A thresholds overlay, written into ``directory``, without the host's CPU and memory."""
    path = directory / "host-off.yaml"
    path.write_text(HOST_OFF, encoding="utf-8")
    return path


def free_ports(host: str = "127.0.0.1") -> Ports:
    sockets = []
    try:
        for _ in Ports.__dataclass_fields__:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return Ports(*(s.getsockname()[1] for s in sockets))
    finally:
        for sock in sockets:
            sock.close()


def settings(
    data_dir: Path,
    *,
    for_scale: float = 0.05,
    time_scale: float = 0.01,
    redis_url: str | None = None,
    postgres_url: str | None = None,
    extra_targets: tuple[str, ...] = (),
    extra_job: str = "ai-service",
) -> StackSettings:
    """``extra_targets`` (host:port) are scraped as job ``extra_job``, e.g. a second exporter."""
    # The rule groups' interval comes from the thresholds file (1m by default): without the
    # overlay every recorded series would appear up to a minute late.
    overlay = data_dir / "fast-rules.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    overlay.write_text(f"settings:\n  evaluation_interval: {INTERVAL}\n", encoding="utf-8")
    return StackSettings(
        data_dir=data_dir,
        ports=free_ports(),
        scrape_interval=INTERVAL,
        evaluation_interval=INTERVAL,
        demo_time_scale=time_scale,
        thresholds=(overlay,),
        for_scale=for_scale,
        memory_growth_window=10.0,  # the growth slope appears after seconds, not a minute
        redis_url=redis_url,
        postgres_url=postgres_url,
        service_targets=extra_targets,
        service_job=extra_job,
    )


@contextlib.contextmanager
def live_stack(data_dir: Path, **kwargs: Any) -> Iterator[Stack]:
    """The stack of :func:`settings` (``kwargs`` are its options), stopped on exit."""
    stack = Stack(settings(data_dir, **kwargs))
    with stack:
        yield stack
